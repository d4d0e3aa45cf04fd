"""What the bench's callers send, as data: the API shapes (`Api`) and the rows of points (`ROUTES`).

An `Api` is a wire shape a caller speaks: its path, a realistic request body, its headers, and
how to tell a whole answer and a whole stream. A `Route` is one row of points in the report: an
`Api` sent through a target to one of the fake upstream's APIs (`upstream`), the direct call that
is its floor, and the route whose figures it must stay within 10 % of (issue 12: a new endpoint
costs about what chat costs). Every target names its own model for each upstream
(`TargetSpec.models`) and lists the routes it serves (`TargetSpec.routes`).

Adding an endpoint (`/v1/responses`, `/v1/embeddings`) is one `Api` and one `Route` row here, and
its key in the `routes` of the targets that serve it; the fake upstream needs an answer for it
only when the endpoint reaches an upstream API the fake does not serve yet.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

SYSTEM = "You are a concise, helpful assistant."
QUESTION = "In one paragraph: what does an LLM gateway do for a team?"
# https://docs.anthropic.com/en/api/versioning — what the anthropic SDK sends.
ANTHROPIC_VERSION = "2023-06-01"


def _user_tag(delay_ms: int, chunk_ms: int) -> str | None:
    """The fake upstream's per-request delays, as a string every gateway passes through."""
    tags = [f"delay={delay_ms}"] if delay_ms else []
    tags += [f"chunk={chunk_ms}"] if chunk_ms else []
    return "bench:" + ";bench:".join(tags) if tags else None


def chat_request(model: str, stream: bool, tag: str | None) -> dict[str, Any]:
    """OpenAI chat: `user` carries the delay tag (a standard field every gateway forwards)."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}],
        "max_tokens": 256,
        "temperature": 0.7,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    if tag:
        body["user"] = tag
    return body


def messages_request(model: str, stream: bool, tag: str | None) -> dict[str, Any]:
    """Anthropic Messages, the same conversation as chat's: `metadata.user_id` carries the tag
    (forwarded as is to Anthropic, and as `user` when the gateway translates to chat)."""
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": 256,
        "system": SYSTEM,
        "messages": [{"role": "user", "content": QUESTION}],
        "temperature": 0.7,
    }
    if stream:
        body["stream"] = True
    if tag:
        body["metadata"] = {"user_id": tag}
    return body


def responses_request(model: str, stream: bool, tag: str | None) -> dict[str, Any]:
    """OpenAI Responses, the same conversation as chat's: `user` carries the tag (passed through as
    written to OpenAI's Responses API, and as chat's `user` when the gateway translates)."""
    body: dict[str, Any] = {
        "model": model,
        "instructions": SYSTEM,
        "input": QUESTION,
        "max_output_tokens": 256,
        "temperature": 0.7,
    }
    if stream:
        body["stream"] = True
    if tag:
        body["user"] = tag
    return body


EMBED_TEXT = "How does an LLM gateway bill a team for the tokens it uses?"


def embeddings_request(encoding: str) -> Callable[[str, bool, str | None], dict[str, Any]]:
    """OpenAI embeddings of one query (a RAG lookup): `user` carries the tag. `base64` is what the
    `openai` SDK asks for unless told otherwise; `float` is what most other clients send."""

    def build(model: str, stream: bool, tag: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "input": EMBED_TEXT, "encoding_format": encoding}
        if tag:
            body["user"] = tag
        return body

    return build


@dataclass(frozen=True)
class Api:
    """A wire shape callers speak."""

    key: str
    path: str
    build: Callable[[str, bool, str | None], dict[str, Any]]  # (model, stream, delay tag) → body
    answer_mark: bytes  # found in every whole non-streamed answer, and in no error envelope
    stream_end: bytes  # found in the last bytes of every whole stream
    auth_header: str = "authorization"  # "authorization" (a bearer token) or "x-api-key"
    headers: Mapping[str, str] = field(default_factory=dict)  # sent on every request
    streams: bool = True  # False for endpoints that never stream (embeddings)
    stream_tail: int = 128  # bytes of a stream's end that hold `stream_end`: more than its last event

    def body(self, model: str, stream: bool, delay_ms: int = 0, chunk_ms: int = 0) -> bytes:
        return json.dumps(self.build(model, stream, _user_tag(delay_ms, chunk_ms))).encode()

    def request_headers(self, token: str | None) -> dict[str, str]:
        out = dict(self.headers)
        if token:
            out[self.auth_header] = f"Bearer {token}" if self.auth_header == "authorization" else token
        return out


CHAT = Api("chat", "/v1/chat/completions", chat_request, b'"choices"', b"data: [DONE]")
# The anthropic SDK and Claude Code authenticate with x-api-key and name the API version.
MESSAGES = Api(
    "messages",
    "/v1/messages",
    messages_request,
    b'"stop_reason"',
    b"event: message_stop",
    auth_header="x-api-key",
    headers={"anthropic-version": ANTHROPIC_VERSION},
)
# A Responses stream ends with `response.completed`, whose data is the whole response object.
RESPONSES = Api(
    "responses",
    "/v1/responses",
    responses_request,
    b'"output"',
    b"event: response.completed",
    stream_tail=8192,
)

# Chat with chat history on (issue 18): the same request, recorded after the answer.
CHAT_HISTORY = Api(
    "chat-history",
    "/v1/chat/completions",
    chat_request,
    b'"choices"',
    b"data: [DONE]",
    headers={"x-gatewayz-history": "on"},
)

EMBEDDINGS = Api(
    "embeddings", "/v1/embeddings", embeddings_request("base64"), b'"embedding"', b"", streams=False
)
EMBEDDINGS_FLOAT = Api(
    "embeddings-float", "/v1/embeddings", embeddings_request("float"), b'"embedding"', b"", streams=False
)

# The fake upstream's APIs, by the `TargetSpec.models` key that names a model for them.
UPSTREAMS = {
    "openai": "the fake's OpenAI `POST /v1/chat/completions` (and `POST /v1/responses`)",
    "openai-embeddings": "the fake's OpenAI `POST /v1/embeddings` (1536 dimensions)",
    "anthropic": "the fake's Anthropic `POST /v1/messages`",
}


@dataclass(frozen=True)
class Route:
    key: str  # the prefix of its points' names; the chat route keeps the historical bare names
    title: str
    api: Api
    upstream: str  # a key of UPSTREAMS
    floor: str  # the route whose direct call is this one's floor: the same upstream API, called directly
    reference: str | None = None  # the route it is compared with (within 10 %)
    every_level: bool = False  # at every concurrency level; others run at c ≤ 10 (the highest with --quick)


ROUTES: dict[str, Route] = {
    r.key: r
    for r in (
        Route("chat", "chat, OpenAI upstream", CHAT, "openai", floor="chat", every_level=True),
        # Issue 18: what recording chat history adds (written after the answer): within 10 % of chat.
        Route(
            "chat-hist",
            "chat, OpenAI upstream, history on (`x-gatewayz-history: on`)",
            CHAT_HISTORY,
            "openai",
            floor="chat",
            reference="chat",
        ),
        Route(
            "msg",
            "Messages, OpenAI upstream (translated)",
            MESSAGES,
            "openai",
            floor="chat",
            reference="chat",
        ),
        # The reference of native Messages: the same Anthropic upstream, reached from OpenAI chat
        # through the openai_to_anthropic translator.
        Route("chat-claude", "chat, Anthropic upstream (translated)", CHAT, "anthropic", floor="msg-native"),
        Route(
            "msg-native",
            "Messages, Anthropic upstream (native pass-through)",
            MESSAGES,
            "anthropic",
            floor="msg-native",
            reference="chat-claude",
        ),
        # Responses to OpenAI passes through to the fake's own /v1/responses (its floor: that API
        # called directly); to Anthropic it is translated over the pivot, like chat-claude.
        Route(
            "resp",
            "Responses, OpenAI upstream (native pass-through)",
            RESPONSES,
            "openai",
            floor="resp",
            reference="chat",
        ),
        Route(
            "resp-claude",
            "Responses, Anthropic upstream (translated)",
            RESPONSES,
            "anthropic",
            floor="msg-native",
            reference="chat-claude",
        ),
        # Embeddings pass through to the fake's own /v1/embeddings (their floor: that API called
        # directly), compared with chat (issue 13: within 10 % of chat's added latency).
        Route(
            "emb",
            "Embeddings, OpenAI upstream (base64, the SDK's default)",
            EMBEDDINGS,
            "openai-embeddings",
            floor="emb",
            reference="chat",
        ),
        Route(
            "emb-float",
            "Embeddings, OpenAI upstream (floats)",
            EMBEDDINGS_FLOAT,
            "openai-embeddings",
            floor="emb-float",
            reference="chat",
        ),
    )
}

KIND_NAMES = {"chat": "", "stream": "stream-", "probe": "probe-", "chat-delay": "delay-"}


def point_key(route: str, kind: str, concurrency: int, delay_ms: int = 0) -> str:
    """`chat-c10`, `stream-c10`, `probe-c1`, `chat-delay50-c50` on the chat route (the names every
    earlier report used); `msg-c10`, `msg-stream-c10`, `msg-native-probe-c10` … on the others."""
    if route == "chat":
        name = f"chat-delay{delay_ms}" if kind == "chat-delay" else kind
        return f"{name}-c{concurrency}"
    return f"{route}-{KIND_NAMES[kind]}c{concurrency}"


def with_dependencies(keys: list[str]) -> list[str]:
    """The routes asked for, plus what their figures need: chat, their references and floors."""
    wanted: set[str] = set()
    todo = ["chat", *keys]
    while todo:
        key = todo.pop()
        if key not in wanted:
            wanted.add(key)
            route = ROUTES[key]
            todo.append(route.floor)
            if route.reference:
                todo.append(route.reference)
    return [key for key in ROUTES if key in wanted]


def levels(route: Route, concurrency: list[int], quick: bool) -> list[int]:
    """The concurrency levels a route's points run at."""
    if route.every_level:
        return list(concurrency)
    low = sorted(c for c in concurrency if c <= 10)
    return low[-1:] if quick else low
