"""Amazon Bedrock end to end: the official SDKs through the gateway to a Bedrock fake that checks
every request's SigV4 signature with botocore's signer (tests/fakes/bedrock_fake.py).

The conformance suite runs the aws-bedrock row through the common cases (plain, stream, tools,
JSON, errors, usage); these add what is Bedrock's own: the signature itself (a wrong secret, an
unsigned session token, no signature are refused by the fake, so a passing call proves the
gateway signed correctly), the event-stream decoder, cache tokens billed exactly in a stream,
images as bytes, Claude's thinking, the Anthropic Messages front end, failover from Anthropic to
Bedrock, and the cold start that must not import botocore.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.error
import urllib.request
from decimal import Decimal
from typing import Any

import pytest

from shared.config import Settings
from shared.transport.aws_sigv4 import AwsSigner
from shared.transport.errors import UpstreamError
from shared.transport.eventstream import EventStreamParser
from tests.fakes.anthropic_fake import AnthropicFake
from tests.fakes.bedrock_fake import (
    ACCESS_KEY,
    SECRET_KEY,
    SESSION_TOKEN,
    BedrockFake,
    event,
    exception_frame,
)
from tests.fakes.server import Reply

MODEL = "anthropic/claude-sonnet-4.5"
NATIVE = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
PIN = f"aws-bedrock:{MODEL}"
MARKUP = Settings().markup
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


def _post(url: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, {
            "message": json.loads(err.read())["message"],
            "type": err.headers["x-amzn-ErrorType"],
        }


def _signed(env: dict[str, str], url: str, body: bytes) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    asyncio.run(AwsSigner(env).sign(url, headers, body, "us-east-1"))
    return headers


def test_the_fake_verifies_sigv4_and_the_signer_passes(bedrock_fake: BedrockFake) -> None:
    url = f"{bedrock_fake.url}/model/{NATIVE.replace(':', '%3A')}/converse"
    body = json.dumps({"messages": [{"role": "user", "content": [{"text": "hi"}]}]}).encode()
    good = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    status, answer = _post(url, _signed(good, url, body), body)
    assert status == 200 and answer["output"]["message"]["content"][0]["text"]
    # A session token (a role's credentials) is signed too.
    role = {**good, "AWS_SESSION_TOKEN": SESSION_TOKEN}
    headers = _signed(role, url, body)
    assert headers["x-amz-security-token"] == SESSION_TOKEN
    assert _post(url, headers, body)[0] == 200
    # The same request refused: another secret, a tampered body, an unsigned x-amz header, none.
    wrong = _signed({**good, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}, url, body)
    status, err = _post(url, wrong, body)
    assert status == 403 and err["type"].startswith("InvalidSignatureException")
    status, err = _post(url, _signed(good, url, body), body.replace(b"hi", b"ho"))
    assert status == 403 and err["type"].startswith("InvalidSignatureException")
    status, err = _post(url, {**_signed(good, url, body), "x-amz-security-token": SESSION_TOKEN}, body)
    assert status == 403 and "must be signed" in err["message"]
    status, err = _post(url, {"content-type": "application/json"}, body)
    assert status == 403 and err["type"].startswith("MissingAuthenticationToken")


def test_event_stream_decoder_handles_any_split_and_rejects_bad_crc() -> None:
    frames = event("messageStart", {"role": "assistant"}) + event(
        "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "hé"}}
    )
    frames += exception_frame("throttlingException", "slow down")
    parser = EventStreamParser()
    got: list[tuple[str | None, bytes]] = []
    for i in range(len(frames)):  # one byte at a time: every boundary falls somewhere
        got += parser.feed(frames[i : i + 1])
    assert [e for e, _ in got] == ["messageStart", "contentBlockDelta", "exception:throttlingException"]
    assert json.loads(got[1][1])["delta"]["text"] == "hé"
    corrupt = bytearray(event("messageStop", {"stopReason": "end_turn"}))
    corrupt[-6] ^= 0xFF  # a payload byte: the message CRC no longer matches
    with pytest.raises(UpstreamError) as info:
        EventStreamParser().feed(bytes(corrupt))
    assert info.value.kind == "protocol"


def test_stream_bills_cache_tokens_exactly(client: Any, bedrock_fake: BedrockFake) -> None:
    reply = Reply(text="cached answer", chunks=3, input=1000, cached=4000, cache_write=500, output=40)
    bedrock_fake.script(NATIVE, reply)
    raw = client.chat.completions.with_raw_response.create(
        model=PIN,
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(raw.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "cached answer"
    usage = chunks[-1].usage
    assert usage.prompt_tokens == 5500 and usage.prompt_tokens_details.cached_tokens == 4000
    per_million = 1000 * Decimal(3) + 4000 * Decimal("0.3") + 500 * Decimal("3.75") + 40 * Decimal(15)
    expected = (per_million / Decimal(1_000_000) * MARKUP).quantize(Decimal("1e-12"))
    assert Decimal(str(usage.model_extra["cost"])) == expected
    assert bedrock_fake.requests[-1].path.endswith("/converse-stream")


def test_images_thinking_and_sampling_reach_converse(client: Any, bedrock_fake: BedrockFake) -> None:
    bedrock_fake.script(NATIVE, Reply(text="a red pixel", reasoning="Looking at it."))
    completion = client.chat.completions.create(
        model=PIN,
        reasoning_effort="low",
        max_tokens=1000,
        stop=["END"],
        messages=[
            {"role": "system", "content": "be brief"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                ],
            },
        ],
    )
    message = completion.choices[0].message
    assert message.content == "a red pixel"
    assert message.model_extra["reasoning_content"] == "Looking at it."
    sent = bedrock_fake.requests[-1].body
    assert sent["system"] == [{"text": "be brief"}]
    assert sent["messages"][0]["content"][1] == {"image": {"format": "png", "source": {"bytes": PNG}}}
    assert sent["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 2048}}
    assert sent["inferenceConfig"] == {"maxTokens": 3048, "stopSequences": ["END"]}


def test_bedrock_errors_are_classified(client: Any, bedrock_fake: BedrockFake) -> None:
    import openai

    bedrock_fake.script(NATIVE, Reply(status=400, error_message="messages.0: bad"))
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=PIN, messages=[{"role": "user", "content": "hi"}])
    assert "messages.0: bad" in bad.value.message
    bedrock_fake.script(NATIVE, Reply(stream_error_after=2))
    stream = client.chat.completions.create(
        model=PIN, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    with pytest.raises(openai.APIError):
        list(stream)  # a throttlingException frame after content ends the stream with an error


def test_anthropic_sdk_messages_to_bedrock_claude(
    gateway: Any, account: Any, bedrock_fake: BedrockFake
) -> None:
    import anthropic

    with anthropic.Anthropic(base_url=gateway.url, api_key=account.key, max_retries=0) as sdk:
        _messages_round_trip(sdk, bedrock_fake)


def _messages_round_trip(sdk: Any, bedrock_fake: BedrockFake) -> None:
    bedrock_fake.script(NATIVE, Reply(text="Bonjour", input=12, output=3))
    message = sdk.messages.create(
        model=PIN, max_tokens=200, system="answer in French", messages=[{"role": "user", "content": "Hello"}]
    )
    assert message.content[0].text == "Bonjour" and message.usage.output_tokens == 3
    assert bedrock_fake.requests[-1].body["system"] == [{"text": "answer in French"}]
    bedrock_fake.script(NATIVE, Reply(text="Salut tout le monde", chunks=3))
    with sdk.messages.stream(
        model=PIN, max_tokens=200, messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        text = "".join(stream.text_stream)
    assert text == "Salut tout le monde"


def test_failover_from_anthropic_to_bedrock(
    client: Any, anthropic_fake: AnthropicFake, bedrock_fake: BedrockFake
) -> None:
    anthropic_fake.script("claude-sonnet-4-5-20250929", Reply(status=529))
    bedrock_fake.script(NATIVE, Reply(text="served by Bedrock"))
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hi"}],
        extra_body={"provider": {"order": ["anthropic", "aws-bedrock"]}},
    )
    assert raw.parse().choices[0].message.content == "served by Bedrock"
    assert raw.headers["x-gatewayz-provider"] == "aws-bedrock"
    assert raw.headers["x-gatewayz-attempts"].startswith("anthropic:529")


def test_cold_start_imports_no_cloud_sdk() -> None:
    code = (
        "import sys, functions.chat, functions.messages\n"
        "heavy = [m for m in ('botocore', 'boto3', 'google.auth', 'google.oauth2', 'jwt') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("model", "native"),
    [
        ("meta-llama/llama-3.3-70b-instruct", "us.meta.llama3-3-70b-instruct-v1:0"),
        ("deepseek/deepseek-chat-v3.1", "deepseek.v3-v1:0"),
        ("openai/gpt-oss-120b", "openai.gpt-oss-120b-1:0"),
        ("qwen/qwen3-coder", "qwen.qwen3-coder-480b-a35b-v1:0"),
    ],
)
def test_other_model_families_on_bedrock(
    client: Any, bedrock_fake: BedrockFake, model: str, native: str
) -> None:
    """Converse is one shape for every family: plain, tools and a stream through the openai SDK."""
    from tests.fakes.server import ToolCall

    pinned = f"aws-bedrock:{model}"
    bedrock_fake.script(native, Reply(text=f"hi from {native}", input=5, output=2))
    done = client.chat.completions.create(
        model=pinned, messages=[{"role": "user", "content": "hi"}], temperature=0.3
    )
    assert done.choices[0].message.content == f"hi from {native}" and done.usage.total_tokens == 7
    assert bedrock_fake.requests[-1].body["inferenceConfig"] == {"temperature": 0.3}
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    bedrock_fake.script(native, Reply(tool_calls=[ToolCall("lookup", {"q": "x"})]))
    called = client.chat.completions.create(
        model=pinned, messages=[{"role": "user", "content": "?"}], tools=tools
    )
    assert called.choices[0].message.tool_calls[0].function.name == "lookup"
    bedrock_fake.script(native, Reply(text="one two three", chunks=3))
    stream = client.chat.completions.create(
        model=pinned, messages=[{"role": "user", "content": "go"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "one two three"
