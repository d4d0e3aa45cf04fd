// The Vercel AI SDK's default OpenAI provider against the gateway: `createOpenAI({baseURL,
// apiKey})(model)` speaks the Responses API (POST {baseURL}/responses). Run by
// tests/frontends/test_vercel_ai_sdk.py with node, from the directory holding the pinned
// node_modules; prints one JSON object: what generateText and streamText gave back.
import { createOpenAI } from '@ai-sdk/openai';
import { generateText, streamText } from 'ai';

const [baseURL, apiKey, model] = process.argv.slice(2);
const openai = createOpenAI({ baseURL, apiKey });

const generated = await generateText({ model: openai(model), prompt: 'Say hi.', maxRetries: 0 });
const streamed = streamText({ model: openai(model), prompt: 'Count.', maxRetries: 0 });
const deltas = [];
for await (const delta of streamed.textStream) deltas.push(delta);
const streamedResponse = await streamed.response;

// A second turn with the first answer in the history: by default the SDK refers to stored items
// (OpenAI's default is to store); with store: false it sends them.
async function followUp(providerOptions) {
  try {
    const messages = [{ role: 'user', content: 'Say hi.' }, ...generated.response.messages,
      { role: 'user', content: 'Again.' }];
    const r = await generateText({ model: openai(model), messages, providerOptions, maxRetries: 0 });
    return { text: r.text };
  } catch (e) {
    return { error: e.message, status: e.statusCode };
  }
}
const followUpDefault = await followUp(undefined);
const followUpUnstored = await followUp({ openai: { store: false } });

console.log(JSON.stringify({
  followUpDefault,
  followUpUnstored,
  generate: {
    text: generated.text,
    finishReason: generated.finishReason,
    usage: generated.usage,
    responseId: generated.response.id,
    headers: generated.response.headers,
  },
  stream: {
    deltas,
    text: await streamed.text,
    finishReason: await streamed.finishReason,
    usage: await streamed.usage,
    responseId: streamedResponse.id,
    headers: streamedResponse.headers,
  },
}));
