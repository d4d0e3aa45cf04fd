"""openai_to_openai: the pass-through translator for every OpenAI-compatible upstream.

The request goes out as the caller wrote it (unknown fields included, SPEC §2.1) with the native
model id; usage is always requested on streams so that it can be billed. Responses keep every
field the upstream sent, with `model` set to the gateway's id and `usage` normalised.

Usage: https://platform.openai.com/docs/api-reference/chat/object#chat/object-usage
(`prompt_tokens` includes `prompt_tokens_details.cached_tokens`; `completion_tokens` includes
`completion_tokens_details.reasoning_tokens`). DeepSeek reports cache hits as
`prompt_cache_hit_tokens` (https://api-docs.deepseek.com/api/create-chat-completion).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from shared.dialects.base import ChatTranslator, Usage
from shared.transport.errors import UpstreamError, retry_after_seconds


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def openai_usage(raw: Mapping[str, Any] | None) -> Usage:
    if not raw:
        return Usage()
    prompt = _int(raw.get("prompt_tokens"))
    completion = _int(raw.get("completion_tokens"))
    pdet = raw.get("prompt_tokens_details") or {}
    cdet = raw.get("completion_tokens_details") or {}
    cached = _int(pdet.get("cached_tokens")) or _int(raw.get("prompt_cache_hit_tokens"))
    written = _int(pdet.get("cache_write_tokens")) or _int(pdet.get("cache_creation_tokens"))
    reasoning = _int(cdet.get("reasoning_tokens"))
    cached = min(cached, prompt)
    written = min(written, prompt - cached)
    return Usage(
        input_tokens=prompt - cached - written,
        cache_read_tokens=cached,
        cache_write_tokens=written,
        output_tokens=completion,
        reasoning_tokens=min(reasoning, completion),
    )


def error_message(body: bytes, status: int) -> tuple[str, str | None, str | None]:
    """(message, vendor type/code, param) from the error shapes OpenAI-compatible servers send."""
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    message, vtype, param = f"upstream returned HTTP {status}", None, None
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            msg = err.get("message") or err.get("detail") or err.get("msg")
            if isinstance(msg, str) and msg:
                message = msg
            code = err.get("type") or err.get("code")
            vtype = str(code) if code is not None else None
            param = err.get("param") if isinstance(err.get("param"), str) else None
        elif isinstance(err, str) and err:
            message = err
        elif isinstance(data.get("detail"), str):
            message = data["detail"]
    return message[:2000], vtype, param


class OpenAIToOpenAI(ChatTranslator):
    dialect = "openai"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._done = False

    def path(self, stream: bool) -> str:
        return "/chat/completions"

    def request(self, body: dict[str, Any], stream: bool) -> dict[str, Any]:
        out = dict(body)
        out["model"] = self.native_id
        if stream:
            out["stream"] = True
            if "stream_usage" in self.supports:
                options = dict(out.get("stream_options") or {})
                options["include_usage"] = True
                out["stream_options"] = options
            else:
                out.pop("stream_options", None)
        else:
            out.pop("stream", None)
            out.pop("stream_options", None)
        return out

    def response(self, data: dict[str, Any]) -> dict[str, Any]:
        usage = openai_usage(data.get("usage"))
        self.usage = usage
        out = dict(data)
        out["model"] = self.model_id
        out.setdefault("object", "chat.completion")
        merged = dict(data.get("usage") or {})
        merged.update(usage.openai())
        out["usage"] = merged
        return out

    def stream_event(self, event: str | None, data: bytes) -> list[dict[str, Any]]:
        if data == b"[DONE]":
            self._done = True
            return []
        obj = self.event_object(data)
        if obj is None:
            return []
        if "error" in obj:  # an error reported inside a 200 stream (OpenRouter, vLLM, ...)
            err = obj["error"] if isinstance(obj["error"], dict) else {"message": str(obj["error"])}
            code = err.get("code")
            status = code if isinstance(code, int) and 400 <= code < 600 else 502
            raise UpstreamError(status, str(err.get("message") or "upstream stream error"), kind="stream")
        if obj.get("id"):
            self.response_id = obj["id"]
        raw_usage = obj.pop("usage", None)
        if raw_usage:
            self.usage = openai_usage(raw_usage)
        if not obj.get("choices"):
            return []
        obj["model"] = self.model_id
        return [obj]

    @property
    def stream_done(self) -> bool:
        return self._done

    def error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        message, vtype, param = error_message(body, status)
        return UpstreamError(
            status, message, retry_after=retry_after_seconds(headers), vendor_type=vtype, param=param
        )
