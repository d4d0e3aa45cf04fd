"""A fake OpenAI-compatible upstream: POST {prefix}/chat/completions, {prefix}/completions,
{prefix}/responses, {prefix}/embeddings, {prefix}/images/generations, GET {prefix}/models —
https://platform.openai.com/docs/api-reference/chat (answers and streams in OpenAI's format). The
Responses API lives in tests.fakes.openai_responses, embeddings and images in their own fakes.

One server stands in for every OpenAI-dialect provider: each provider's base URL gets its own
path prefix (`/groq/v1`, `/mistral/v1`, ...), and a prefix may carry a vendor profile: the auth
header that vendor requires and the fields it rejects with a 400 (from the vendor's docs). So a
provider row that forgets a quirk fails its conformance test, as it would fail in production.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.server import FakeServer, Reply, split_text, write_sse

# https://platform.openai.com/docs/api-reference/chat/create
CHAT_FIELDS = frozenset(
    {
        "messages",
        "model",
        "audio",
        "frequency_penalty",
        "function_call",
        "functions",
        "logit_bias",
        "logprobs",
        "max_completion_tokens",
        "max_tokens",
        "metadata",
        "modalities",
        "n",
        "parallel_tool_calls",
        "prediction",
        "presence_penalty",
        "prompt_cache_key",
        "reasoning_effort",
        "response_format",
        "safety_identifier",
        "seed",
        "service_tier",
        "stop",
        "store",
        "stream",
        "stream_options",
        "temperature",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "user",
        "verbosity",
        "web_search_options",
    }
)
COMPLETION_FIELDS = frozenset(
    {
        "model",
        "prompt",
        "best_of",
        "echo",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "max_tokens",
        "n",
        "presence_penalty",
        "seed",
        "stop",
        "stream",
        "stream_options",
        "suffix",
        "temperature",
        "top_p",
        "user",
    }
)
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


@dataclass
class VendorProfile:
    """How one OpenAI-compatible vendor differs from OpenAI, as its docs state."""

    auth_header: str = "authorization"  # must be present and non-empty
    rejects: frozenset[str] = frozenset()  # top-level fields answered with 400
    max_n: int | None = None
    developer_role: bool = True
    extra_fields: frozenset[str] = frozenset()  # vendor-only fields it accepts
    stream_usage: bool = True  # honours stream_options; False: rejects it
    required_headers: dict[str, str] = field(default_factory=dict)


PROFILES: dict[str, VendorProfile] = {
    "openai": VendorProfile(),
    # https://console.groq.com/docs/openai
    "groq": VendorProfile(rejects=frozenset({"logprobs", "logit_bias", "top_logprobs"}), max_n=1),
    # https://inference-docs.cerebras.ai/resources/openai
    "cerebras": VendorProfile(
        rejects=frozenset(
            {"frequency_penalty", "presence_penalty", "logit_bias", "parallel_tool_calls", "service_tier"}
        ),
        developer_role=False,
    ),
    # https://docs.mistral.ai/api/ — random_seed instead of seed, no logprobs/logit_bias
    "mistral": VendorProfile(
        rejects=frozenset(
            {"seed", "logit_bias", "logprobs", "top_logprobs", "service_tier", "stream_options"}
        ),
        extra_fields=frozenset({"random_seed", "safe_prompt"}),
        developer_role=False,
        stream_usage=False,
    ),
    "portkey": VendorProfile(auth_header="x-portkey-api-key"),
    # Hosts of open models that document top_k (OpenRouter, Together, Fireworks, DeepInfra, Novita,
    # vLLM/llama.cpp behind `local`); OpenAI itself rejects it.
    **{
        vendor: VendorProfile(extra_fields=frozenset({"top_k"}))
        for vendor in ("openrouter", "together", "fireworks", "deepinfra", "novita", "local")
    },
    "anthropic-compat": VendorProfile(),
}


def openai_error(
    status: int, message: str, *, param: str | None = None, retry_after: int | None = None
) -> web.Response:
    etype, code = {
        400: ("invalid_request_error", None),
        401: ("invalid_request_error", "invalid_api_key"),
        403: ("invalid_request_error", "unsupported_country_region_territory"),
        404: ("invalid_request_error", "model_not_found"),
        429: ("requests", "rate_limit_exceeded"),
    }.get(status, ("server_error", None))
    headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
    body = {"error": {"message": message, "type": etype, "param": param, "code": code}}
    return web.json_response(body, status=status, headers=headers, dumps=lambda o: orjson.dumps(o).decode())


class OpenAIFake(FakeServer):
    def __init__(self) -> None:
        super().__init__()
        self.profiles: dict[str, VendorProfile] = dict(PROFILES)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/{prefix:.*}/chat/completions", self.chat),
            web.post("/{prefix:.*}/completions", self.completions),
            web.post("/{prefix:.*}/responses", self.responses),
            web.post("/{prefix:.*}/embeddings", self.embeddings),
            web.post("/{prefix:.*}/images/generations", self.images),
            web.get("/{prefix:.*}/models", self.models),
        ]

    async def embeddings(self, request: web.Request) -> web.Response:
        from tests.fakes.embeddings_fake import openai_embeddings

        return await openai_embeddings(self, request)

    async def responses(self, request: web.Request) -> web.StreamResponse:
        from tests.fakes.openai_responses import responses

        return await responses(self, request)

    async def images(self, request: web.Request) -> web.Response:
        from tests.fakes.images_fake import images_generations

        return await images_generations(self, request)

    def profile_for(self, request: web.Request) -> VendorProfile:
        vendor = request.match_info.get("prefix", "").strip("/").split("/")[0]
        return self.profiles.get(vendor, PROFILES["openai"])

    def base_for(self, provider: str) -> str:
        return f"{self.url}/{provider}/v1"

    async def _validated(
        self, request: web.Request, fields: frozenset[str]
    ) -> tuple[dict[str, Any], Any, VendorProfile] | web.Response:
        profile = self.profile_for(request)
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        rec = self.record(request, body)
        auth = request.headers.get(profile.auth_header, "")
        if not auth or (profile.auth_header == "authorization" and not auth.startswith("Bearer ")):
            return openai_error(401, "You didn't provide an API key.")
        for name, value in profile.required_headers.items():
            if request.headers.get(name) != value:
                return openai_error(400, f"missing header {name}")
        if not isinstance(body, dict):
            return openai_error(400, "We could not parse the JSON body of your request.")
        for key in body:
            if key in profile.rejects:
                return openai_error(400, f"'{key}' is not supported with this model", param=key)
            if key not in fields and key not in profile.extra_fields:
                return openai_error(400, f"Unrecognized request argument supplied: {key}", param=key)
        if not isinstance(body.get("model"), str) or not body["model"]:
            return openai_error(400, "you must provide a model parameter", param="model")
        n = body.get("n", 1)
        if profile.max_n is not None and n > profile.max_n:
            return openai_error(400, "'n' : number must be at most 1", param="n")
        if "stream_options" in body and not body.get("stream"):
            return openai_error(
                400, "stream_options is only allowed when stream is true", param="stream_options"
            )
        return body, rec, profile

    async def chat(self, request: web.Request) -> web.StreamResponse:
        checked = await self._validated(request, CHAT_FIELDS)
        if isinstance(checked, web.Response):
            return checked
        body, rec, profile = checked
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return openai_error(400, "messages must be a non-empty array", param="messages")
        for i, m in enumerate(messages):
            role = m.get("role") if isinstance(m, dict) else None
            if role not in ROLES or (role == "developer" and not profile.developer_role):
                return openai_error(
                    400, f"Invalid value for messages[{i}].role: {role!r}", param=f"messages[{i}].role"
                )
            if role == "tool" and not m.get("tool_call_id"):
                return openai_error(
                    400, "tool messages need tool_call_id", param=f"messages[{i}].tool_call_id"
                )
        reply = self.next_reply(body["model"])
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.status != 200:
            return openai_error(reply.status, reply.error_message, retry_after=reply.retry_after)
        n = reply.choices or int(body.get("n") or 1)
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            events = self.chat_stream_events(body, reply, n, include_usage or not profile.stream_usage)
            error = (
                b'data: {"error":{"message":"fake mid-stream failure","type":"server_error","code":502}}\n\n'
            )
            return await write_sse(request, rec, self, events, reply, error)
        rec.completed = True
        return web.json_response(
            self.chat_completion(body, reply, n), dumps=lambda o: orjson.dumps(o).decode()
        )

    @staticmethod
    def usage(reply: Reply) -> dict[str, Any]:
        prompt = reply.input + reply.cached
        return {
            "prompt_tokens": prompt,
            "completion_tokens": reply.output,
            "total_tokens": prompt + reply.output,
            "prompt_tokens_details": {"cached_tokens": reply.cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": reply.reasoning_tokens, "audio_tokens": 0},
        }

    def chat_completion(self, body: dict[str, Any], reply: Reply, n: int) -> dict[str, Any]:
        choices = []
        for i in range(n):
            message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
            finish = reply.finish_reason or "stop"
            if reply.tool_calls:
                message["tool_calls"] = [
                    {
                        "id": tc.id or f"call_fake{i}{j}",
                        "type": "function",
                        "function": {"name": tc.name, "arguments": orjson.dumps(tc.arguments).decode()},
                    }
                    for j, tc in enumerate(reply.tool_calls)
                ]
                finish = reply.finish_reason or "tool_calls"
            else:
                message["content"] = reply.text if n == 1 else f"{reply.text} [{i}]"
            if reply.reasoning:
                message["reasoning_content"] = reply.reasoning
            choice: dict[str, Any] = {
                "index": i,
                "message": message,
                "logprobs": None,
                "finish_reason": finish,
            }
            if body.get("logprobs"):
                choice["logprobs"] = {
                    "content": [
                        {
                            "token": "Hello",
                            "logprob": -0.01,
                            "bytes": [72, 101, 108, 108, 111],
                            "top_logprobs": [],
                        }
                    ],
                    "refusal": None,
                }
            choices.append(choice)
        out = {
            "id": "chatcmpl-fake123",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "system_fingerprint": "fp_fake",
            "service_tier": "default",
            "choices": choices,
        }
        if not reply.omit_usage:
            out["usage"] = self.usage(reply)
        return out

    def chat_stream_events(
        self, body: dict[str, Any], reply: Reply, n: int, include_usage: bool
    ) -> list[bytes]:
        base = {
            "id": "chatcmpl-fake123",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body["model"],
            "system_fingerprint": "fp_fake",
        }

        def ev(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            return b"data: " + orjson.dumps({**base, "choices": choices, **extra}) + b"\n\n"

        events: list[bytes] = []
        for i in range(n):
            events.append(
                ev(
                    [
                        {
                            "index": i,
                            "delta": {"role": "assistant", "content": ""},
                            "logprobs": None,
                            "finish_reason": None,
                        }
                    ]
                )
            )
            if reply.reasoning:
                for piece in split_text(reply.reasoning, 2):
                    events.append(
                        ev(
                            [
                                {
                                    "index": i,
                                    "delta": {"reasoning_content": piece},
                                    "logprobs": None,
                                    "finish_reason": None,
                                }
                            ]
                        )
                    )
            if reply.tool_calls:
                for j, tc in enumerate(reply.tool_calls):
                    args = orjson.dumps(tc.arguments).decode()
                    events.append(
                        ev(
                            [
                                {
                                    "index": i,
                                    "delta": {
                                        "tool_calls": [
                                            {
                                                "index": j,
                                                "id": tc.id or f"call_fake{i}{j}",
                                                "type": "function",
                                                "function": {"name": tc.name, "arguments": ""},
                                            }
                                        ]
                                    },
                                    "logprobs": None,
                                    "finish_reason": None,
                                }
                            ]
                        )
                    )
                    for piece in split_text(args, reply.chunks):
                        events.append(
                            ev(
                                [
                                    {
                                        "index": i,
                                        "delta": {
                                            "tool_calls": [{"index": j, "function": {"arguments": piece}}]
                                        },
                                        "logprobs": None,
                                        "finish_reason": None,
                                    }
                                ]
                            )
                        )
                finish = reply.finish_reason or "tool_calls"
            else:
                text = reply.text if n == 1 else f"{reply.text} [{i}]"
                for piece in split_text(text, reply.chunks):
                    events.append(
                        ev(
                            [
                                {
                                    "index": i,
                                    "delta": {"content": piece},
                                    "logprobs": None,
                                    "finish_reason": None,
                                }
                            ]
                        )
                    )
                finish = reply.finish_reason or "stop"
            events.append(ev([{"index": i, "delta": {}, "logprobs": None, "finish_reason": finish}]))
        if include_usage and not reply.omit_usage:
            events.append(ev([], usage=self.usage(reply)))
        events.append(b"data: [DONE]\n\n")
        return events

    async def completions(self, request: web.Request) -> web.StreamResponse:
        checked = await self._validated(request, COMPLETION_FIELDS)
        if isinstance(checked, web.Response):
            return checked
        body, rec, _profile = checked
        if "prompt" not in body:
            return openai_error(400, "prompt is required", param="prompt")
        reply = self.next_reply(body["model"])
        if reply.status != 200:
            return openai_error(reply.status, reply.error_message, retry_after=reply.retry_after)
        base = {
            "id": "cmpl-fake123",
            "object": "text_completion",
            "created": int(time.time()),
            "model": body["model"],
        }
        if body.get("stream"):
            events = [
                b"data: "
                + orjson.dumps(
                    {
                        **base,
                        "choices": [{"index": 0, "text": piece, "logprobs": None, "finish_reason": None}],
                    }
                )
                + b"\n\n"
                for piece in split_text(reply.text, reply.chunks)
            ]
            events.append(
                b"data: "
                + orjson.dumps(
                    {**base, "choices": [{"index": 0, "text": "", "logprobs": None, "finish_reason": "stop"}]}
                )
                + b"\n\n"
            )
            if (body.get("stream_options") or {}).get("include_usage"):
                events.append(
                    b"data: " + orjson.dumps({**base, "choices": [], "usage": self.usage(reply)}) + b"\n\n"
                )
            events.append(b"data: [DONE]\n\n")
            return await write_sse(request, rec, self, events, reply)
        rec.completed = True
        out = {
            **base,
            "choices": [{"index": 0, "text": reply.text, "logprobs": None, "finish_reason": "stop"}],
            "usage": self.usage(reply),
        }
        return web.json_response(out, dumps=lambda o: orjson.dumps(o).decode())

    async def models(self, request: web.Request) -> web.Response:
        vendor = request.match_info.get("prefix", "").strip("/").split("/")[0]
        if vendor in self.listings:
            from tests.fakes.model_lists import openai_models

            self.record(request, None)
            return openai_models(request, self.listings[vendor], self.profile_for(request).auth_header)
        return web.json_response(
            {
                "object": "list",
                "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake"}],
            }
        )
