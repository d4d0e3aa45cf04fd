"""openai_to_anthropic: OpenAI chat completions to and from the Anthropic Messages API.

Request: https://platform.claude.com/docs/en/api/messages (POST /v1/messages). Anthropic keeps the
system prompt out of `messages`, wants strictly user/assistant turns, carries tool results as
`tool_result` blocks inside a user turn, and requires `max_tokens`. Response and stream:
https://platform.claude.com/docs/en/build-with-claude/streaming (named SSE events, no [DONE]).
Errors: https://platform.claude.com/docs/en/api/errors ({"type":"error","error":{type,message}}).

What a Claude model accepts depends on its generation, so three switches come from the native
id's version (`ClaudeProfile`), a cutoff rather than an id list so that a new model is covered on
day one:
- thinking: manual `{"type":"enabled","budget_tokens"}` up to 4.5; adaptive thinking with
  `output_config.effort` from 4.6, where budgets are deprecated, and rejected from 4.7
  (https://platform.claude.com/docs/en/about-claude/models/whats-new-claude-4-6).
- sampling: `temperature`/`top_p`/`top_k` are answered with a 400 from Opus 4.7 on
  ("temperature is deprecated for this model"), and API version 2026-10-21 removes them; from
  4.1 on a model takes temperature or top_p, not both
  (https://platform.claude.com/docs/en/about-claude/models/migration-guide).
- JSON: native structured outputs (`output_config.format`, GA, no beta header) exist from the 4.5
  generation (https://platform.claude.com/docs/en/build-with-claude/structured-outputs). They
  need a schema whose objects close `additionalProperties`, so `json_object` (any object) and
  json_schema on older models use the forced-tool technique instead: one tool whose input schema
  is the wanted JSON, forced with tool_choice, its input returned to the caller as the content
  (https://platform.claude.com/docs/en/agents-and-tools/tool-use/implement-tool-use#json-mode).
Thinking cannot be combined with forced tool use, temperature or top_k, and top_p only within
0.95..1 (https://platform.claude.com/docs/en/build-with-claude/extended-thinking#feature-compatibility):
what has to give is dropped and named in `dropped`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from shared.dialects.base import ChatTranslator, Usage
from shared.errors import InvalidRequest
from shared.transport.errors import UpstreamError, retry_after_seconds

# fmt: off
# https://platform.claude.com/docs/en/api/messages#response-stop-reason (pause_turn: a server tool
# paused the turn, and nothing more arrives on this request)
FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "max_tokens": "length",
    "model_context_window_exceeded": "length", "tool_use": "tool_calls", "refusal": "content_filter",
}
# https://platform.claude.com/docs/en/api/errors#http-errors — the status of an in-stream error.
STREAM_ERROR_STATUS: dict[str, int] = {
    "invalid_request_error": 400, "authentication_error": 401, "billing_error": 402,
    "permission_error": 403, "not_found_error": 404, "request_too_large": 413,
    "rate_limit_error": 429, "api_error": 500, "timeout_error": 504, "overloaded_error": 529,
}
# reasoning_effort → budget_tokens for manual thinking (models before 4.6): from the documented
# minimum of 1024, each step about 4x; the budget must stay below max_tokens
# (https://platform.claude.com/docs/en/build-with-claude/extended-thinking#how-to-use-extended-thinking).
THINKING_BUDGETS: dict[str, int] = {
    "minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768,
}
# reasoning_effort → output_config.effort for adaptive thinking (4.6 on). There is no "minimal";
# "max" exists on every adaptive model (https://platform.claude.com/docs/en/build-with-claude/effort).
ADAPTIVE_EFFORTS: dict[str, str] = {
    "minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "max",
}
_HANDLED = frozenset({
    "model", "messages", "stream", "max_tokens", "max_completion_tokens", "stop", "temperature",
    "top_p", "top_k", "user", "safety_identifier", "tools", "tool_choice", "parallel_tool_calls",
    "reasoning_effort", "response_format",
})
# fmt: on
# Values that ask for exactly what Anthropic does anyway: omitted without being reported.
_NO_OP: dict[str, Any] = {"n": 1, "logprobs": False, "store": False}
# stream_options: usage is always recorded from message_start/message_delta, and the pipeline
# writes the caller's usage chunk itself, so nothing the caller asked for is lost.
_SILENT = frozenset({"stream_options"})
MIN_THINKING_BUDGET = 1024
DEFAULT_MAX_TOKENS = 4096
JSON_TOOL = "json_response"
_JSON_TOOL_DESCRIPTION = "Give the final answer by calling this tool; its input is the answer as JSON."

_VERSION = re.compile(r"claude-(?:(\d+)(?:-(\d))?-[a-z]+|[a-z]+-(\d+)(?:-(\d{1,2}))?)(?=[-@]|$)")
# Anthropic tool_use ids match ^[a-zA-Z0-9_-]+$; other vendors' call ids may not.
_BAD_ID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
_DATA_URL = re.compile(r"^data:([^;,]+)(;base64)?,(.*)$", re.S)

Blocks = list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class ClaudeProfile:
    adaptive_thinking: bool
    sampling: bool
    one_sampler: bool  # temperature or top_p, not both
    native_json: bool


def claude_version(native_id: str) -> tuple[int, int] | None:
    """(major, minor) from `claude-sonnet-4-5-20250929` or `claude-3-7-sonnet-20250219`."""
    m = _VERSION.search(native_id)
    if m is None:
        return None
    major, minor = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    return int(major), int(minor or 0)


def claude_profile(native_id: str) -> ClaudeProfile:
    v = claude_version(native_id) or (99, 0)  # an id without a version is taken to be a new model
    return ClaudeProfile(
        adaptive_thinking=v >= (4, 6), sampling=v < (4, 7), one_sampler=v >= (4, 1), native_json=v >= (4, 5)
    )


def anthropic_usage(raw: Mapping[str, Any] | None) -> Usage:
    """input_tokens already exclude cache reads and writes, so each token is billed once
    (https://platform.claude.com/docs/en/build-with-claude/prompt-caching#tracking-cache-performance)."""
    raw = raw or {}
    output = _int(raw.get("output_tokens"))
    thinking = _int((raw.get("output_tokens_details") or {}).get("thinking_tokens"))
    written = _int(raw.get("cache_creation_input_tokens"))
    # `cache_creation` splits the writes by lifetime; a 1-hour write is priced apart.
    by_ttl = raw.get("cache_creation")
    written_1h = _int(by_ttl.get("ephemeral_1h_input_tokens")) if isinstance(by_ttl, Mapping) else 0
    return Usage(
        input_tokens=_int(raw.get("input_tokens")),
        cache_read_tokens=_int(raw.get("cache_read_input_tokens")),
        cache_write_tokens=written,
        cache_write_1h_tokens=min(written_1h, written),
        output_tokens=output,
        reasoning_tokens=min(thinking, output),
    )


def accumulate_usage(seen: dict[str, Any], raw: Any) -> Usage | None:
    """A stream's usage so far: message_start carries the input and cache counts, message_delta the
    cumulative output (and, on current API versions, the input counts again). None: no usage here."""
    if not isinstance(raw, Mapping):
        return None
    seen.update({k: v for k, v in raw.items() if v is not None})
    return anthropic_usage(seen)


def anthropic_error(status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
    """An Anthropic error answer (https://platform.claude.com/docs/en/api/errors), classified."""
    message, vtype = f"upstream returned HTTP {status}", None
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        if isinstance(err.get("message"), str) and err["message"]:
            message = err["message"][:2000]
        vtype = err.get("type") if isinstance(err.get("type"), str) else None
    return UpstreamError(status, message, retry_after=retry_after_seconds(headers), vendor_type=vtype)


def stream_error(obj: Mapping[str, Any]) -> UpstreamError:
    """An `error` event inside a stream
    (https://platform.claude.com/docs/en/build-with-claude/streaming#error-events)."""
    err = obj["error"] if isinstance(obj.get("error"), dict) else {}
    vtype = err.get("type") if isinstance(err.get("type"), str) else None
    status = STREAM_ERROR_STATUS.get(vtype or "", 502)
    message = str(err.get("message") or "upstream stream error")
    return UpstreamError(status, message, kind="stream", vendor_type=vtype)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _tool_id(raw: Any) -> str:
    return _BAD_ID_CHARS.sub("_", str(raw or "")) or "toolu_missing"


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _call(index: int | None, call_id: Any, name: Any, arguments: str) -> dict[str, Any]:
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    return call if index is None else {"index": index, **call}


# --- request: messages ------------------------------------------------------------------------------
def _with_cache(block: dict[str, Any], part: Mapping[str, Any]) -> dict[str, Any]:
    if part.get("cache_control"):  # the caller's prompt-caching breakpoint survives
        block["cache_control"] = part["cache_control"]
    return block


def _media_block(part: Mapping[str, Any], where: str) -> dict[str, Any]:
    """image_url and file parts (https://platform.claude.com/docs/en/build-with-claude/vision,
    https://platform.claude.com/docs/en/build-with-claude/pdf-support)."""
    if part["type"] == "image_url":
        raw = part.get("image_url")
        url = (raw.get("url") if isinstance(raw, Mapping) else raw) or ""
        m = _DATA_URL.match(url)
        if m and m.group(2):
            source: dict[str, Any] = {"type": "base64", "media_type": m.group(1), "data": m.group(3)}
        elif url.startswith(("http://", "https://")):
            source = {"type": "url", "url": url}
        else:
            raise InvalidRequest("image_url.url must be an http(s) URL or a base64 data: URL", param=where)
        return _with_cache({"type": "image", "source": source}, part)
    file = part.get("file") or {}
    m = _DATA_URL.match(file.get("file_data") or "")
    if m is None or not m.group(2):
        raise InvalidRequest("file parts need file_data as a base64 data: URL", param=where)
    if m.group(1) == "application/pdf":
        source = {"type": "base64", "media_type": "application/pdf", "data": m.group(3)}
    elif m.group(1).startswith("text/"):
        import base64  # a rare path: kept off the cold start

        text = base64.b64decode(m.group(3)).decode("utf-8", "replace")
        source = {"type": "text", "media_type": "text/plain", "data": text}
    else:
        raise InvalidRequest(f"file type {m.group(1)} is not supported (PDF or text)", param=where)
    block = {"type": "document", "source": source}
    if file.get("filename"):
        block["title"] = file["filename"]
    return _with_cache(block, part)


def _content_blocks(content: Any, where: str) -> Blocks:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: Blocks = []
    for j, part in enumerate(content or ()):
        kind = part.get("type")
        if kind in ("text", "refusal"):
            if part.get(kind):  # Anthropic rejects empty text blocks
                blocks.append(_with_cache({"type": "text", "text": part[kind]}, part))
        elif kind in ("image_url", "file"):
            blocks.append(_media_block(part, f"{where}[{j}]"))
        else:
            raise InvalidRequest(f"content part type {kind!r} is not supported here", param=f"{where}[{j}]")
    return blocks


def _reasoning_blocks(details: Any) -> Blocks:
    """reasoning_details handed back by the caller → thinking blocks with their signatures, which
    Anthropic verifies (https://platform.claude.com/docs/en/build-with-claude/extended-thinking#preserving-thinking-blocks)."""
    blocks: Blocks = []
    for d in details if isinstance(details, list) else ():
        if not isinstance(d, Mapping):
            continue
        if d.get("type") == "reasoning.text" and d.get("signature"):
            blocks.append({"type": "thinking", "thinking": d.get("text") or "", "signature": d["signature"]})
        elif d.get("type") == "reasoning.encrypted" and d.get("data"):
            blocks.append({"type": "redacted_thinking", "data": d["data"]})
    return blocks


def _assistant_blocks(m: Mapping[str, Any], i: int) -> Blocks:
    blocks = _reasoning_blocks(m.get("reasoning_details"))  # thinking comes first in a turn
    blocks += _content_blocks(m.get("content"), f"messages[{i}].content")
    for j, call in enumerate(m.get("tool_calls") or ()):
        fn = call.get("function") or {}
        raw = fn.get("arguments") or "{}"
        try:
            args = orjson.loads(raw) if isinstance(raw, str) else raw
        except orjson.JSONDecodeError:
            args = None
        if not isinstance(args, dict):
            param = f"messages[{i}].tool_calls[{j}].function.arguments"
            raise InvalidRequest("tool call arguments must be a JSON object", param=param)
        use = {"type": "tool_use", "id": _tool_id(call.get("id")), "name": fn.get("name"), "input": args}
        blocks.append(use)
    return blocks


def _tool_result(m: Mapping[str, Any], i: int) -> dict[str, Any]:
    """A tool message → a tool_result block, never user text (SPEC §11)."""
    content = m.get("content")
    if not isinstance(content, str):
        content = _content_blocks(content, f"messages[{i}].content")
    return {"type": "tool_result", "tool_use_id": _tool_id(m.get("tool_call_id")), "content": content}


def anthropic_messages(messages: list[Mapping[str, Any]]) -> tuple[str | Blocks | None, Blocks]:
    """(system, turns). System and developer messages go to the top-level `system`; consecutive
    same-role turns are merged, so tool results that follow one another share one user turn, ahead
    of any user text (https://platform.claude.com/docs/en/agents-and-tools/tool-use/handle-tool-calls)."""
    system: Blocks = []
    turns: Blocks = []
    for i, m in enumerate(messages):
        role = m.get("role")
        if role in ("system", "developer"):
            system += _content_blocks(m.get("content"), f"messages[{i}].content")
            continue
        if role == "user":
            blocks = _content_blocks(m.get("content"), f"messages[{i}].content")
        elif role == "assistant":
            blocks = _assistant_blocks(m, i)
        elif role == "tool":
            blocks, role = [_tool_result(m, i)], "user"
        else:
            raise InvalidRequest(f"role {role!r} is not supported here", param=f"messages[{i}].role")
        if not blocks:
            continue  # Anthropic rejects empty turns
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:  # a lone plain text block is written as the string shorthand
        c = turn["content"]
        if len(c) == 1 and c[0]["type"] == "text" and len(c[0]) == 2:
            turn["content"] = c[0]["text"]
    if system and all(len(b) == 2 and b["type"] == "text" for b in system):  # no cache_control
        return "\n\n".join(b["text"] for b in system), turns
    return system or None, turns


# --- request: tools ---------------------------------------------------------------------------------
def anthropic_tools(tools: list[Mapping[str, Any]], strict_ok: bool) -> tuple[Blocks, bool]:
    """(tools, whether a `strict` had to be dropped): strict tool use exists where structured
    outputs do (https://platform.claude.com/docs/en/agents-and-tools/tool-use/strict-tool-use)."""
    out: Blocks = []
    dropped_strict = False
    for k, tool in enumerate(tools):
        if tool.get("type") != "function":
            raise InvalidRequest(f"tool type {tool.get('type')!r} is not supported here", param=f"tools[{k}]")
        fn = tool.get("function") or {}
        item: dict[str, Any] = {"name": fn.get("name")}
        if fn.get("description"):
            item["description"] = fn["description"]
        item["input_schema"] = fn.get("parameters") or {"type": "object", "properties": {}}
        if fn.get("strict") and strict_ok:
            item["strict"] = True
        dropped_strict = dropped_strict or bool(fn.get("strict") and not strict_ok)
        out.append(_with_cache(item, tool))
    return out, dropped_strict


def anthropic_tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    """https://platform.claude.com/docs/en/agents-and-tools/tool-use/implement-tool-use#forcing-tool-use"""
    if choice == "none":
        return {"type": "none"}
    if choice is None or choice == "auto":
        out: dict[str, Any] = {"type": "auto"}
    elif choice == "required":
        out = {"type": "any"}
    elif isinstance(choice, Mapping) and choice.get("type") == "function":
        out = {"type": "tool", "name": (choice.get("function") or {}).get("name")}
    else:
        raise InvalidRequest(f"tool_choice {choice!r} is not supported here", param="tool_choice")
    if parallel is False:
        out["disable_parallel_tool_use"] = True
    elif choice is None:
        return None  # Anthropic's default is auto
    return out


class OpenAIToAnthropic(ChatTranslator):
    dialect = "anthropic"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._json_tool = False  # JSON mode rides on the forced JSON_TOOL
        self._done = False
        self._role_sent = False
        self._blocks: dict[Any, int | str] = {}  # content block index → tool-call index, or "json"
        self._tools = 0
        self._raw_usage: dict[str, Any] = {}

    def path(self, stream: bool) -> str:
        return "/v1/messages"

    # --- request ----------------------------------------------------------------------------------
    def request(self, body: dict[str, Any], stream: bool) -> dict[str, Any]:
        profile = claude_profile(self.native_id)
        for key, value in body.items():
            if key in _HANDLED or key in _SILENT or value is None or _NO_OP.get(key, ...) == value:
                continue
            self.drop(key)  # logit_bias, seed, penalties, service_tier, unknown fields, ...
        system, turns = anthropic_messages(body.get("messages") or [])
        out: dict[str, Any] = {"model": self.native_id, "messages": turns}
        if system:
            out["system"] = system
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        out["max_tokens"] = max_tokens or self.max_output_tokens or DEFAULT_MAX_TOKENS

        tools: Blocks = []
        choice = None
        if body.get("tools"):
            tools, dropped_strict = anthropic_tools(body["tools"], profile.native_json)
            if dropped_strict:
                self.drop("strict")
            choice = anthropic_tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
        choice = self._json_mode(body.get("response_format"), profile, out, tools, choice)
        if tools:
            out["tools"] = tools
        if choice is not None:
            out["tool_choice"] = choice

        forced = choice is not None and choice["type"] in ("any", "tool")
        self._thinking(body.get("reasoning_effort"), profile, out, forced)
        thinking = "thinking" in out
        samplers: dict[str, Any] = {}
        for name in ("temperature", "top_p", "top_k"):
            value = body.get(name)
            if value is None:
                continue
            # With thinking: temperature only at its default of 1, no top_k, top_p within 0.95..1.
            clash = (
                name == "top_k"
                or (name == "temperature" and value != 1)
                or (name == "top_p" and value < 0.95)
            )
            if profile.sampling and not (thinking and clash):
                samplers[name] = value
            else:
                self.drop(name)
        if profile.one_sampler and "temperature" in samplers and "top_p" in samplers:
            del samplers["top_p"]
            self.drop("top_p")
        out.update(samplers)

        stop = body.get("stop")
        if stop:
            out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
        user = body.get("user") or body.get("safety_identifier")
        if user:
            out["metadata"] = {"user_id": user}
            if body.get("user") and body.get("safety_identifier"):
                self.drop("safety_identifier")
        if stream:
            out["stream"] = True
        return out

    def _json_mode(
        self,
        fmt: Any,
        profile: ClaudeProfile,
        out: dict[str, Any],
        tools: Blocks,
        choice: dict[str, Any] | None,
    ) -> dict[str, Any] | None:
        kind = fmt.get("type") if isinstance(fmt, Mapping) else None
        if kind not in ("json_object", "json_schema"):
            return choice
        schema = (fmt.get("json_schema") or {}).get("schema") if kind == "json_schema" else None
        if schema and profile.native_json:
            out.setdefault("output_config", {})["format"] = {"type": "json_schema", "schema": schema}
            return choice
        self._json_tool = True
        schema = schema or {"type": "object"}
        tools.append({"name": JSON_TOOL, "description": _JSON_TOOL_DESCRIPTION, "input_schema": schema})
        if choice is not None and choice["type"] == "tool":
            return choice  # the caller forced one of its own tools for this turn
        if len(tools) > 1 and (choice is None or choice["type"] in ("auto", "any")):
            forced: dict[str, Any] = {"type": "any"}  # a real tool call, or the answer as JSON
        else:
            forced = {"type": "tool", "name": JSON_TOOL}
        if choice is not None and choice.get("disable_parallel_tool_use"):
            forced["disable_parallel_tool_use"] = True
        return forced

    def _thinking(self, effort: Any, profile: ClaudeProfile, out: dict[str, Any], forced: bool) -> None:
        if not effort or effort == "none":
            return
        if forced or effort not in THINKING_BUDGETS:
            self.drop("reasoning_effort")  # thinking cannot run with a forced tool call
            return
        if profile.adaptive_thinking:
            # display: the newest models default to "omitted"; the caller gets reasoning_content.
            out["thinking"] = {"type": "adaptive", "display": "summarized"}
            out.setdefault("output_config", {})["effort"] = ADAPTIVE_EFFORTS[effort]
            return
        budget, max_tokens = THINKING_BUDGETS[effort], out["max_tokens"]
        if max_tokens <= budget:
            # The budget is spent out of max_tokens: keep the caller's room for the answer on top.
            max_tokens = budget + max_tokens
            if self.max_output_tokens and max_tokens > self.max_output_tokens:
                max_tokens = self.max_output_tokens
                budget = min(budget, max_tokens // 2)
            if budget < MIN_THINKING_BUDGET:
                self.drop("reasoning_effort")
                return
            out["max_tokens"] = max_tokens
            self.adjusted.append("max_tokens")
        out["thinking"] = {"type": "enabled", "budget_tokens": budget}

    # --- response ---------------------------------------------------------------------------------
    def response(self, data: dict[str, Any]) -> dict[str, Any]:
        self.response_id = data.get("id") or self.response_id
        texts: list[str] = []
        thinking: list[str] = []
        details: Blocks = []
        calls: Blocks = []
        for block in data.get("content") or ():
            kind = block.get("type")
            if kind == "text":
                texts.append(block.get("text") or "")
            elif kind == "thinking":
                thinking.append(block.get("thinking") or "")
                signature = block.get("signature")
                details.append({"type": "reasoning.text", "text": thinking[-1], "signature": signature})
            elif kind == "redacted_thinking":
                details.append({"type": "reasoning.encrypted", "data": block.get("data")})
            elif kind == "tool_use" and self._json_tool and block.get("name") == JSON_TOOL:
                texts.append(_json(block.get("input") or {}))
            elif kind == "tool_use":
                calls.append(_call(None, block.get("id"), block.get("name"), _json(block.get("input") or {})))
        stop = data.get("stop_reason")
        content = "".join(texts) if texts else None
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
        # https://platform.claude.com/docs/en/test-and-evaluate/strengthen-guardrails/handle-streaming-refusals
        if stop == "refusal":
            message["content"], message["refusal"] = None, content or ""
        if calls:
            message["tool_calls"] = calls
        if details:
            message["reasoning_content"] = "".join(thinking)
            message["reasoning_details"] = details
        self.usage = anthropic_usage(data.get("usage"))
        choice = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": _finish(stop, bool(calls)),
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
        """https://platform.claude.com/docs/en/build-with-claude/streaming#event-types"""
        obj = self.event_object(data)
        if obj is None:
            return []
        kind = obj.get("type") or event
        if kind == "error":
            raise stream_error(obj)
        if kind == "message_start":
            message_obj = obj.get("message") or {}
            self.response_id = message_obj.get("id") or self.response_id
            self._record_usage(message_obj.get("usage"))
            # No chunk yet: the caller's first byte waits for content, so that an error event
            # between message_start and the first delta can still fail over to the next offer.
            return []
        if kind == "content_block_start":
            return self._block_start(obj.get("index"), obj.get("content_block") or {})
        if kind == "content_block_delta":
            return self._block_delta(obj.get("index"), obj.get("delta") or {})
        if kind == "message_delta":
            self._record_usage(obj.get("usage"))
            stop = (obj.get("delta") or {}).get("stop_reason")
            return [self._emit({}, _finish(stop, self._tools > 0))] if stop else []
        if kind == "message_stop":
            self._done = True
        return []  # ping, content_block_stop, and event types added later (the API may add some)

    def _emit(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        if not self._role_sent:
            self._role_sent = True
            delta = {"role": "assistant", **delta}
        return self.chunk(delta, finish_reason=finish)

    def _block_start(self, index: Any, block: Mapping[str, Any]) -> list[dict[str, Any]]:
        kind = block.get("type")
        if kind == "tool_use" and self._json_tool and block.get("name") == JSON_TOOL:
            self._blocks[index] = "json"
        elif kind == "tool_use":
            self._blocks[index] = self._tools
            self._tools += 1
            call = _call(self._tools - 1, block.get("id"), block.get("name"), "")
            return [self._emit({"tool_calls": [call]})]
        elif kind == "text" and block.get("text"):
            return [self._emit({"content": block["text"]})]
        elif kind == "thinking" and block.get("thinking"):
            return [self._emit({"reasoning_content": block["thinking"]})]
        elif kind == "redacted_thinking":
            detail = {"type": "reasoning.encrypted", "data": block.get("data")}
            return [self._emit({"reasoning_details": [detail]})]
        return []

    def _block_delta(self, index: Any, delta: Mapping[str, Any]) -> list[dict[str, Any]]:
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            return [self._emit({"content": delta["text"]})]
        if kind == "input_json_delta" and delta.get("partial_json"):
            target, piece = self._blocks.get(index), delta["partial_json"]
            if target == "json":
                return [self._emit({"content": piece})]
            if isinstance(target, int):
                return [self._emit({"tool_calls": [{"index": target, "function": {"arguments": piece}}]})]
        if kind == "thinking_delta" and delta.get("thinking"):
            return [self._emit({"reasoning_content": delta["thinking"]})]
        if kind == "signature_delta" and delta.get("signature"):
            detail = {"type": "reasoning.text", "text": "", "signature": delta["signature"]}
            return [self._emit({"reasoning_details": [detail]})]
        return []  # citations_delta and empty pieces

    def _record_usage(self, raw: Any) -> None:
        self.usage = accumulate_usage(self._raw_usage, raw) or self.usage

    @property
    def stream_done(self) -> bool:
        return self._done

    # --- errors ---------------------------------------------------------------------------------
    def error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        return anthropic_error(status, headers, body)


def _finish(stop: Any, called: bool) -> str:
    finish = FINISH_REASONS.get(stop, "stop") if isinstance(stop, str) else "stop"
    return "stop" if finish == "tool_calls" and not called else finish  # only the JSON tool was called
