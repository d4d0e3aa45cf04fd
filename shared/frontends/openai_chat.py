"""The OpenAI chat completions front end (`POST /v1/chat/completions`, SPEC §2.1).

Chat is the pipeline's pivot, so answers need no translation: the usage object gains `cost` (USD
charged, a JSON number written from the exact decimal, as OpenRouter does), and a stream ends
with the caller's usage chunk when `stream_options.include_usage` asked for it, then `[DONE]`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson

from shared.billing import money
from shared.dialects.base import ChatTranslator, Usage
from shared.errors import GatewayError, openai_body
from shared.pipeline.call import Call
from shared.pipeline.frontend import FrontEnd, StreamWriter
from shared.transport.sse import DONE, frame


def usage_with_cost(usage: Usage, cost: Decimal) -> dict[str, Any]:
    out = usage.openai()
    # A JSON number written from the exact decimal (as OpenRouter does), never via a float.
    out["cost"] = orjson.Fragment(money(cost).encode())
    return out


class ChatWriter(StreamWriter):
    def __init__(self, front: OpenAIChat, include_usage: bool, model_id: str) -> None:
        self.front = front
        self.include_usage = include_usage
        self.model_id = model_id
        self.last: dict[str, Any] | None = None

    def items(self, items: list[Any]) -> bytes:
        self.last = items[-1]
        chunk = self.front.chunk
        return b"".join([frame(chunk(item)) for item in items])

    def end(self, usage: Usage, cost: Decimal) -> bytes:
        if not self.include_usage:
            return DONE
        base = self.last or {}
        final = {
            "id": base.get("id", ""),
            "object": "chat.completion.chunk",
            "created": base.get("created", 0),
            "model": self.model_id,
            "choices": [],
            "usage": usage_with_cost(usage, cost),
        }
        return frame(self.front.chunk(final)) + DONE

    def error(self, err: GatewayError, request_id: str) -> bytes:
        return frame(openai_body(err, request_id)) + DONE


class OpenAIChat(FrontEnd):
    api = "openai"
    endpoint = "chat"

    def response(
        self, answer_body: dict[str, Any], tr: ChatTranslator, usage: Usage, cost: Decimal
    ) -> dict[str, Any]:
        merged = dict(answer_body.get("usage") or {})
        merged.update(usage_with_cost(usage, cost))
        answer_body["usage"] = merged
        return self.shape(answer_body)

    def writer(self, call: Call, tr: ChatTranslator, model_id: str) -> StreamWriter:
        return ChatWriter(self, call.params.include_usage, model_id)

    # Subclasses (legacy completions) reshape the chat objects.
    def shape(self, out: dict[str, Any]) -> dict[str, Any]:
        return out

    def chunk(self, chunk: dict[str, Any]) -> dict[str, Any]:
        return chunk


CHAT = OpenAIChat()
