"""openai_to_bedrock: OpenAI chat completions to and from Amazon Bedrock's Converse API.

Request: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html
(POST /model/{modelId}/converse), one shape for every model family on Bedrock (Anthropic, Meta,
Mistral, Amazon Nova, Cohere, DeepSeek, ...). Like Anthropic's, Converse keeps the system prompt
apart, wants alternating user/assistant turns and carries tool results inside a user turn, so the
messages are first laid out by the Anthropic translator's `anthropic_messages` (one set of rules
for turn merging and validation) and then written as Converse blocks: `text`, `image`/`document`
with base64 `bytes`, `toolUse`, `toolResult`, `reasoningContent`, and a `cachePoint` after a part
that carried `cache_control`. Sampling goes to `inferenceConfig`; Claude's thinking to
`additionalModelRequestFields` (https://docs.aws.amazon.com/bedrock/latest/userguide/claude-messages-extended-thinking.html).
JSON output rides on a forced tool, which every tool-capable family on Converse honours.

Stream: ConverseStream answers AWS event-stream frames (decoded by `shared.transport.eventstream`
into (event type, JSON payload)): messageStart, contentBlockStart/Delta/Stop, messageStop,
metadata (https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html).
Usage: `inputTokens` excludes cache reads and writes, reported apart
(https://docs.aws.amazon.com/bedrock/latest/userguide/prompt-caching.html).
Errors: the `x-amzn-ErrorType` header names the exception; the body is `{"message": ...}`.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson

from shared.dialects.base import ChatTranslator, StreamParser, Usage
from shared.dialects.openai_to_anthropic import (
    ADAPTIVE_EFFORTS,
    JSON_TOOL,
    THINKING_BUDGETS,
    anthropic_messages,
    anthropic_tool_choice,
    anthropic_tools,
    claude_profile,
)
from shared.errors import InvalidRequest
from shared.transport.errors import UpstreamError, retry_after_seconds

# fmt: off
# https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html#API_runtime_Converse_ResponseSyntax
FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
    "model_context_window_exceeded": "length", "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter", "content_filtered": "content_filter",
}
# Exception name → the HTTP status Bedrock documents for it (API_runtime_Converse.html#Errors).
# ModelNotReadyException is a 429 on the wire but means "not loaded yet": another offer serves now.
EXCEPTION_STATUS: dict[str, int] = {
    "ValidationException": 400, "AccessDeniedException": 403, "ResourceNotFoundException": 404,
    "ModelTimeoutException": 408, "ModelErrorException": 424, "ThrottlingException": 429,
    "ServiceQuotaExceededException": 429, "ModelNotReadyException": 503,
    "InternalServerException": 500, "ServiceUnavailableException": 503,
    "ModelStreamErrorException": 424, "UnrecognizedClientException": 403,
    "InvalidSignatureException": 403, "ExpiredTokenException": 403,
}
_HANDLED = frozenset({
    "model", "messages", "stream", "max_tokens", "max_completion_tokens", "stop", "temperature",
    "top_p", "tools", "tool_choice", "parallel_tool_calls", "reasoning_effort", "response_format",
})
# fmt: on
_NO_OP: dict[str, Any] = {"n": 1, "logprobs": False, "store": False}
_SILENT = frozenset({"stream_options"})
_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif", "image/webp": "webp"}
# A document's name: "alphanumeric characters, whitespace characters, hyphens, parentheses, and
# square brackets", no consecutive whitespace (API_runtime_DocumentBlock.html).
_NAME_BAD = re.compile(r"[^A-Za-z0-9\s\-()\[\]]+")
_JSON_TOOL_DESCRIPTION = "Give the final answer by calling this tool; its input is the answer as JSON."

Blocks = list[dict[str, Any]]


def _is_claude(native_id: str) -> bool:
    return "anthropic.claude" in native_id


def _doc_name(title: Any, n: int) -> str:
    name = " ".join(_NAME_BAD.sub(" ", str(title or "")).split())
    return name[:200] or f"document {n}"


def _converse_block(block: Mapping[str, Any], where: str, docs: list[int]) -> Blocks:
    """One Anthropic-shaped block (from `anthropic_messages`) → Converse content blocks."""
    kind = block.get("type")
    if kind == "text":
        out: Blocks = [{"text": block["text"]}]
    elif kind == "image":
        src = block.get("source") or {}
        fmt = _IMAGE_FORMATS.get(src.get("media_type", ""))
        if src.get("type") != "base64" or fmt is None:
            raise InvalidRequest(
                "Bedrock takes images as base64 data: URLs of PNG, JPEG, GIF or WebP", param=where
            )
        out = [{"image": {"format": fmt, "source": {"bytes": src["data"]}}}]
    elif kind == "document":
        src = block.get("source") or {}
        docs[0] += 1
        if src.get("type") == "text":
            fmt, data = "txt", base64.b64encode(str(src.get("data", "")).encode()).decode()
        else:
            fmt, data = "pdf", str(src.get("data") or "")
        name = _doc_name(block.get("title"), docs[0])
        out = [{"document": {"format": fmt, "name": name, "source": {"bytes": data}}}]
    elif kind == "tool_use":
        out = [{"toolUse": {"toolUseId": block["id"], "name": block["name"], "input": block["input"]}}]
    elif kind == "tool_result":
        content = block.get("content")
        parts: Blocks = (
            [{"text": content}]
            if isinstance(content, str)
            else [p for b in content or () for p in _converse_block(b, where, docs) if "cachePoint" not in p]
        )
        out = [{"toolResult": {"toolUseId": block["tool_use_id"], "content": parts or [{"text": ""}]}}]
    elif kind == "thinking":
        text = {"text": block.get("thinking") or "", "signature": block.get("signature")}
        out = [{"reasoningContent": {"reasoningText": text}}]
    elif kind == "redacted_thinking":
        out = [{"reasoningContent": {"redactedContent": block.get("data")}}]
    else:  # pragma: no cover - anthropic_messages emits only the kinds above
        raise InvalidRequest(f"content of type {kind!r} is not supported on Bedrock", param=where)
    if block.get("cache_control"):
        out.append({"cachePoint": {"type": "default"}})  # the caller's prompt-caching breakpoint
    return out


def converse_messages(messages: list[Mapping[str, Any]]) -> tuple[Blocks, Blocks]:
    """(system, messages) in Converse's shape."""
    system, turns = anthropic_messages(messages)
    docs = [0]
    out_system: Blocks = []
    if isinstance(system, str):
        out_system = [{"text": system}]
    elif system:
        for b in system:
            out_system += _converse_block(b, "messages", docs)
    out: Blocks = []
    for i, turn in enumerate(turns):
        content = turn["content"]
        blocks: Blocks = []
        if isinstance(content, str):
            blocks = [{"text": content}]
        else:
            for b in content:
                blocks += _converse_block(b, f"messages[{i}].content", docs)
        out.append({"role": turn["role"], "content": blocks})
    return out_system, out


def bedrock_usage(raw: Any) -> Usage:
    raw = raw if isinstance(raw, Mapping) else {}
    return Usage(
        input_tokens=_int(raw.get("inputTokens")),
        cache_read_tokens=_int(raw.get("cacheReadInputTokens")),
        cache_write_tokens=_int(raw.get("cacheWriteInputTokens")),
        output_tokens=_int(raw.get("outputTokens")),
    )


def exception_error(
    name: str, message: str, *, kind: str = "http", status: int | None = None
) -> UpstreamError:
    """A Bedrock exception (by its name) as an UpstreamError with the documented status."""
    code = EXCEPTION_STATUS.get(name, status or 502)
    return UpstreamError(code, message[:2000], kind=kind, vendor_type=name)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


class OpenAIToBedrock(ChatTranslator):
    dialect = "bedrock"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._json_tool = False
        self._stopped = False
        self._role_sent = False
        self._blocks: dict[Any, int | str] = {}  # content block index → tool-call index, or "json"
        self._tools = 0
        self.response_id = "chatcmpl-bedrock"

    def path(self, stream: bool) -> str:
        # The model id goes in the path; its `:` is percent-encoded (SigV4 then encodes it again
        # in the canonical URI, as botocore does for every service but S3).
        return f"/model/{quote(self.native_id, safe='')}/{'converse-stream' if stream else 'converse'}"

    def stream_parser(self) -> StreamParser:
        from shared.transport.eventstream import EventStreamParser  # botocore: only when streamed here

        return EventStreamParser()

    # --- request ----------------------------------------------------------------------------------
    def request(self, body: dict[str, Any], stream: bool) -> dict[str, Any]:
        for key, value in body.items():
            if key in _HANDLED or key in _SILENT or value is None or _NO_OP.get(key, ...) == value:
                continue
            self.drop(key)  # logit_bias, seed, penalties, user, unknown fields, ...
        system, messages = converse_messages(body.get("messages") or [])
        out: dict[str, Any] = {"messages": messages}
        if system:
            out["system"] = system
        config: dict[str, Any] = {}
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        if max_tokens:
            config["maxTokens"] = max_tokens
        stop = body.get("stop")
        if stop:
            config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)

        tools: Blocks = []
        choice: dict[str, Any] | None = None
        if body.get("tools"):
            tools, _ = anthropic_tools(body["tools"], strict_ok=False)
            if any(((t.get("function") or {}).get("strict")) for t in body["tools"]):
                self.drop("strict")
            choice = anthropic_tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
            if body.get("parallel_tool_calls") is not None:
                self.drop("parallel_tool_calls")  # Converse has no switch for it
        choice = self._json_mode(body.get("response_format"), tools, choice)
        if choice is not None and choice["type"] == "none":
            tools, choice = [], None  # Converse has no "none": the model is offered no tool
        if tools:
            specs: Blocks = []
            for t in tools:
                spec: dict[str, Any] = {"name": t["name"], "inputSchema": {"json": t["input_schema"]}}
                if t.get("description"):
                    spec["description"] = t["description"]
                specs.append({"toolSpec": spec})
            tool_config: dict[str, Any] = {"tools": specs}
            if choice is not None:
                kind = choice["type"]
                tool_config["toolChoice"] = (
                    {"tool": {"name": choice["name"]}} if kind == "tool" else {kind: {}}
                )
            out["toolConfig"] = tool_config

        forced = choice is not None and choice["type"] in ("any", "tool")
        thinking = self._thinking(body.get("reasoning_effort"), forced, config, out)
        for name, field in (("temperature", "temperature"), ("top_p", "topP")):
            value = body.get(name)
            if value is None:
                continue
            if (
                thinking
                and not (name == "temperature" and value == 1)
                and not (name == "top_p" and value >= 0.95)
            ):
                self.drop(name)  # Claude's thinking takes no sampling changes
            else:
                config[field] = value
        if config:
            out["inferenceConfig"] = config
        return out

    def _json_mode(self, fmt: Any, tools: Blocks, choice: dict[str, Any] | None) -> dict[str, Any] | None:
        kind = fmt.get("type") if isinstance(fmt, Mapping) else None
        if kind not in ("json_object", "json_schema"):
            return choice
        schema = (fmt.get("json_schema") or {}).get("schema") if kind == "json_schema" else None
        self._json_tool = True
        tools.append(
            {
                "name": JSON_TOOL,
                "description": _JSON_TOOL_DESCRIPTION,
                "input_schema": schema or {"type": "object"},
            }
        )
        if choice is not None and choice["type"] == "tool":
            return choice
        if len(tools) > 1 and (choice is None or choice["type"] in ("auto", "any")):
            return {"type": "any"}
        return {"type": "tool", "name": JSON_TOOL}

    def _thinking(self, effort: Any, forced: bool, config: dict[str, Any], out: dict[str, Any]) -> bool:
        """Claude's extended thinking through additionalModelRequestFields; other families on
        Converse have no common switch, so the effort is dropped and named."""
        if not effort or effort == "none":
            return False
        if forced or effort not in THINKING_BUDGETS or not _is_claude(self.native_id):
            self.drop("reasoning_effort")
            return False
        profile = claude_profile(self.native_id)
        if profile.adaptive_thinking:
            extra: dict[str, Any] = {
                "thinking": {"type": "adaptive"},
                "output_config": {"effort": ADAPTIVE_EFFORTS[effort]},
            }
        else:
            budget = THINKING_BUDGETS[effort]
            max_tokens = config.get("maxTokens") or self.max_output_tokens or 4096
            if max_tokens <= budget:
                max_tokens = budget + max_tokens
                if self.max_output_tokens and max_tokens > self.max_output_tokens:
                    max_tokens = self.max_output_tokens
                    budget = min(budget, max_tokens // 2)
                if budget < 1024:
                    self.drop("reasoning_effort")
                    return False
                self.adjusted.append("max_tokens")
            config["maxTokens"] = max_tokens
            extra = {"thinking": {"type": "enabled", "budget_tokens": budget}}
        out["additionalModelRequestFields"] = extra
        return True

    # --- response ---------------------------------------------------------------------------------
    def response(self, data: dict[str, Any]) -> dict[str, Any]:
        texts: list[str] = []
        thinking: list[str] = []
        details: Blocks = []
        calls: Blocks = []
        message = ((data.get("output") or {}).get("message")) or {}
        for block in message.get("content") or ():
            if "text" in block:
                texts.append(block.get("text") or "")
            elif "toolUse" in block:
                use = block["toolUse"] or {}
                if self._json_tool and use.get("name") == JSON_TOOL:
                    texts.append(_json(use.get("input") or {}))
                else:
                    fn = {"name": use.get("name"), "arguments": _json(use.get("input") or {})}
                    calls.append({"id": use.get("toolUseId"), "type": "function", "function": fn})
            elif "reasoningContent" in block:
                rc = block["reasoningContent"] or {}
                if "reasoningText" in rc:
                    rt = rc["reasoningText"] or {}
                    thinking.append(rt.get("text") or "")
                    details.append(
                        {"type": "reasoning.text", "text": thinking[-1], "signature": rt.get("signature")}
                    )
                elif "redactedContent" in rc:
                    details.append({"type": "reasoning.encrypted", "data": rc["redactedContent"]})
        out_message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(texts) if texts else None,
            "refusal": None,
        }
        if calls:
            out_message["tool_calls"] = calls
        if details:
            out_message["reasoning_content"] = "".join(thinking)
            out_message["reasoning_details"] = details
        self.usage = bedrock_usage(data.get("usage"))
        choice = {
            "index": 0,
            "message": out_message,
            "logprobs": None,
            "finish_reason": _finish(data.get("stopReason"), bool(calls)),
        }
        return {
            "id": self.response_id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model_id,
            "choices": [choice],
            "usage": self.usage.openai(),
        }

    # --- stream -----------------------------------------------------------------------------------
    def stream_event(self, event: str | None, data: bytes) -> list[dict[str, Any]]:
        """One decoded event-stream message: `event` is its `:event-type` (or `exception:<name>`)."""
        if event and event.startswith("exception:"):
            err = self.event_object(data) or {}
            name = event[10:]
            raise exception_error(name[:1].upper() + name[1:], str(err.get("message") or name), kind="stream")
        obj = self.event_object(data)
        if obj is None:
            return []
        if event == "contentBlockStart":
            return self._block_start(obj.get("contentBlockIndex"), obj.get("start") or {})
        if event == "contentBlockDelta":
            return self._block_delta(obj.get("contentBlockIndex"), obj.get("delta") or {})
        if event == "messageStop":
            self._stopped = True
            return [self._emit({}, _finish(obj.get("stopReason"), self._tools > 0))]
        if event == "metadata":
            self.usage = bedrock_usage(obj.get("usage"))
        return []  # messageStart (no chunk before content: an early error can still fail over), contentBlockStop

    def _emit(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        if not self._role_sent:
            self._role_sent = True
            delta = {"role": "assistant", **delta}
        return self.chunk(delta, finish_reason=finish)

    def _block_start(self, index: Any, start: Mapping[str, Any]) -> list[dict[str, Any]]:
        use = start.get("toolUse")
        if not isinstance(use, Mapping):
            return []
        if self._json_tool and use.get("name") == JSON_TOOL:
            self._blocks[index] = "json"
            return []
        self._blocks[index] = self._tools
        self._tools += 1
        fn = {"name": use.get("name"), "arguments": ""}
        call = {"index": self._tools - 1, "id": use.get("toolUseId"), "type": "function", "function": fn}
        return [self._emit({"tool_calls": [call]})]

    def _block_delta(self, index: Any, delta: Mapping[str, Any]) -> list[dict[str, Any]]:
        if delta.get("text"):
            return [self._emit({"content": delta["text"]})]
        use = delta.get("toolUse")
        if isinstance(use, Mapping) and use.get("input"):
            target, piece = self._blocks.get(index), use["input"]
            if target == "json":
                return [self._emit({"content": piece})]
            if isinstance(target, int):
                return [self._emit({"tool_calls": [{"index": target, "function": {"arguments": piece}}]})]
        rc = delta.get("reasoningContent")
        if isinstance(rc, Mapping):
            if rc.get("text"):
                return [self._emit({"reasoning_content": rc["text"]})]
            if rc.get("signature"):
                detail = {"type": "reasoning.text", "text": "", "signature": rc["signature"]}
                return [self._emit({"reasoning_details": [detail]})]
            if rc.get("redactedContent"):
                detail = {"type": "reasoning.encrypted", "data": rc["redactedContent"]}
                return [self._emit({"reasoning_details": [detail]})]
        return []

    @property
    def stream_done(self) -> bool:
        # messageStop ends the answer; the usage (metadata) follows it and is read to the end.
        return self._stopped

    # --- errors ---------------------------------------------------------------------------------
    def error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        """https://docs.aws.amazon.com/bedrock/latest/APIReference/CommonErrors.html: the type in
        `x-amzn-ErrorType` (`Name:namespace`), the text in the body's `message`."""
        lowered = {k.lower(): v for k, v in headers.items()}
        name = lowered.get("x-amzn-errortype", "").partition(":")[0]
        message = f"upstream returned HTTP {status}"
        try:
            data = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, dict):
            text = data.get("message") or data.get("Message")
            if isinstance(text, str) and text:
                message = text
            if not name and isinstance(data.get("__type"), str):
                name = data["__type"].rpartition("#")[2]
        err = exception_error(name, message, status=status) if name else UpstreamError(status, message[:2000])
        err.retry_after = retry_after_seconds(headers)
        return err


def _finish(stop: Any, called: bool) -> str:
    finish = FINISH_REASONS.get(stop, "stop") if isinstance(stop, str) else "stop"
    return "stop" if finish == "tool_calls" and not called else finish
