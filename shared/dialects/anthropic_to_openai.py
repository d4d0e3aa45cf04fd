"""anthropic_to_openai: Anthropic Messages requests to the pivot (OpenAI chat), and the pivot's
answers back to Messages — for Messages callers of models served by OpenAI-compatible or Gemini
upstreams (the pivot then goes on through `openai_to_<dialect>`).

Request: https://platform.claude.com/docs/en/api/messages. `system` (string or text blocks, and
`system` turns inside `messages`) becomes system messages; `tool_result` blocks become tool-role
messages, never user text (SPEC §11); images and PDFs become image_url and file parts;
`cache_control` stays on text parts (the pivot's convention: openai_to_anthropic and OpenRouter
read it there). `thinking` and `output_config.effort` become `reasoning_effort`,
`output_config.format` a json_schema `response_format`. Fields with no pivot meaning are dropped
and named. What only an Anthropic upstream can serve (document URLs, server tool results in the
history) makes the request native-only, with the reason.

Answers: https://platform.claude.com/docs/en/build-with-claude/streaming for the event sequence
(message_start, content_block_start/delta/stop, message_delta with the stop reason and usage,
message_stop). Thinking arrives as `reasoning_content` (and `reasoning_details` with signatures).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from shared.dialects.base import Usage

# https://platform.claude.com/docs/en/api/messages#response-stop-reason
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
# reasoning_effort for a manual thinking budget (the inverse of openai_to_anthropic's table).
_BUDGET_EFFORTS = ((2048, "low"), (8192, "medium"))
_ADAPTIVE_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "xhigh", "max": "xhigh"}
# Handled below; everything else at the top level is dropped (and named) on the pivot.
_HANDLED = frozenset(
    {
        "model", "messages", "max_tokens", "system", "tools", "tool_choice", "stop_sequences",
        "temperature", "top_p", "top_k", "stream", "metadata", "thinking", "output_config",
        "models", "provider",
    }
)  # fmt: skip
_NATIVE_BLOCKS = frozenset(
    {"server_tool_use", "web_search_tool_result", "web_fetch_tool_result", "code_execution_tool_result",
     "container_upload", "search_result"}
)  # fmt: skip

Blocks = list[dict[str, Any]]


@dataclass(slots=True)
class Converted:
    body: dict[str, Any]  # the pivot request
    dropped: list[str] = field(default_factory=list)  # fields the pivot cannot carry
    native_only: str | None = None  # why only an Anthropic upstream can serve it


def _text_part(block: Mapping[str, Any]) -> dict[str, Any]:
    part: dict[str, Any] = {"type": "text", "text": block.get("text") or ""}
    if block.get("cache_control"):
        part["cache_control"] = block["cache_control"]
    return part


def _system_content(system: Any) -> str | Blocks:
    if isinstance(system, str):
        return system
    return [_text_part(b) for b in system or () if isinstance(b, Mapping)]


class _Request:
    """One conversion: the pivot's messages, and what could not be carried."""

    def __init__(self) -> None:
        self.messages: Blocks = []
        self.dropped: list[str] = []
        self.native_only: str | None = None

    def only_native(self, why: str) -> None:
        self.native_only = self.native_only or why

    def media(self, block: Mapping[str, Any]) -> dict[str, Any] | None:
        source = block.get("source") or {}
        kind = source.get("type")
        if block.get("type") == "image":
            if kind == "base64":
                url = f"data:{source.get('media_type')};base64,{source.get('data')}"
            elif kind == "url":
                url = str(source.get("url"))
            else:
                self.only_native(f"image source type '{kind}'")
                return None
            return {"type": "image_url", "image_url": {"url": url}}
        if kind == "base64":
            name = str(block.get("title") or "document.pdf")
            data = f"data:{source.get('media_type')};base64,{source.get('data')}"
            return {"type": "file", "file": {"filename": name, "file_data": data}}
        if kind == "text":
            title = f"{block['title']}\n\n" if block.get("title") else ""
            return {"type": "text", "text": title + str(source.get("data") or "")}
        self.only_native(f"document source type '{kind}'")
        return None

    def user_turn(self, content: Any) -> None:
        if isinstance(content, str):
            self.messages.append({"role": "user", "content": content})
            return
        parts: Blocks = []
        late_media: Blocks = []  # images returned by tools: a tool message carries text only
        for block in content:
            kind = block.get("type")
            if kind == "tool_result":
                text, media = self.tool_result_content(block.get("content"))
                if block.get("is_error"):
                    text = f"Error: {text}" if text else "Error"
                self.messages.append(
                    {"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text}
                )
                late_media += media
            elif kind == "text":
                parts.append(_text_part(block))
            elif kind in ("image", "document"):
                part = self.media(block)
                if part is not None:
                    parts.append(part)
            elif kind in _NATIVE_BLOCKS:
                self.only_native(f"'{kind}' blocks")
            # thinking blocks in a user turn do not exist; anything else was refused by validation
        parts = late_media + parts
        if parts:
            self.messages.append({"role": "user", "content": parts})

    def tool_result_content(self, content: Any) -> tuple[str, Blocks]:
        if isinstance(content, str) or content is None:
            return content or "", []
        texts: list[str] = []
        media: Blocks = []
        for block in content:
            if block.get("type") == "text":
                texts.append(block.get("text") or "")
            elif block.get("type") in ("image", "document"):
                part = self.media(block)
                if part is not None:
                    media.append(part)
            else:
                self.only_native(f"'{block.get('type')}' blocks in a tool result")
        return "\n".join(texts), media

    def assistant_turn(self, content: Any) -> None:
        if isinstance(content, str):
            self.messages.append({"role": "assistant", "content": content})
            return
        texts: list[str] = []
        calls: Blocks = []
        for block in content:
            kind = block.get("type")
            if kind == "text":
                texts.append(block.get("text") or "")
            elif kind == "tool_use":
                arguments = orjson.dumps(block.get("input") or {}).decode()
                fn = {"name": block.get("name"), "arguments": arguments}
                calls.append({"id": block.get("id"), "type": "function", "function": fn})
            elif kind in _NATIVE_BLOCKS:
                self.only_native(f"'{kind}' blocks")
            # thinking and redacted_thinking: signed for Anthropic only; other vendors take none
        message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
        if calls:
            message["tool_calls"] = calls
        if texts or calls:
            self.messages.append(message)


def _reasoning_effort(body: Mapping[str, Any]) -> str | None:
    raw = body.get("thinking")
    thinking: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    effort = (body.get("output_config") or {}).get("effort")
    kind = thinking.get("type")
    if kind == "enabled":
        budget = thinking.get("budget_tokens") or 0
        return next((name for limit, name in _BUDGET_EFFORTS if budget <= limit), "high")
    if kind == "disabled":
        return None
    if kind == "adaptive" or effort is not None:
        return _ADAPTIVE_EFFORTS.get(str(effort or "medium"), "medium")
    return None


def _tool_choice(choice: Mapping[str, Any], out: dict[str, Any]) -> None:
    kind = choice.get("type")
    if kind == "auto":
        out["tool_choice"] = "auto"
    elif kind == "any":
        out["tool_choice"] = "required"
    elif kind == "tool":
        out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    elif kind == "none":
        out["tool_choice"] = "none"
    if choice.get("disable_parallel_tool_use") and kind != "none":
        out["parallel_tool_calls"] = False


def messages_to_chat(body: Mapping[str, Any]) -> Converted:
    """A validated Messages request → the pivot."""
    conv = _Request()
    if body.get("system"):
        conv.messages.append({"role": "system", "content": _system_content(body["system"])})
    for m in body["messages"]:
        role, content = m["role"], m["content"]
        if role == "user":
            conv.user_turn(content)
        elif role == "assistant":
            conv.assistant_turn(content)
        else:  # a system turn inside the conversation (Claude Opus 4.8 and later accept them)
            conv.messages.append({"role": "system", "content": _system_content(content)})
    out: dict[str, Any] = {
        "model": body["model"],
        "messages": conv.messages,
        "max_tokens": body["max_tokens"],
    }
    for name in ("models", "provider", "temperature", "top_p", "top_k", "stream"):
        if body.get(name) is not None:
            out[name] = body[name]
    if body.get("stop_sequences"):
        out["stop"] = list(body["stop_sequences"])
    user = (body.get("metadata") or {}).get("user_id")
    if isinstance(user, str) and user:
        out["user"] = user
    tools = []
    for tool in body.get("tools") or ():
        if tool.get("type") not in (None, "custom"):
            conv.dropped.append(f"tools.{tool.get('name') or tool.get('type')}")  # a server tool
            continue
        fn = {"name": tool["name"], "parameters": tool.get("input_schema") or {"type": "object"}}
        if tool.get("description"):
            fn["description"] = tool["description"]
        tools.append({"type": "function", "function": fn})
    if tools:
        out["tools"] = tools
        if isinstance(body.get("tool_choice"), Mapping):
            _tool_choice(body["tool_choice"], out)
    effort = _reasoning_effort(body)
    if effort is not None:
        out["reasoning_effort"] = effort
    fmt = (body.get("output_config") or {}).get("format")
    if isinstance(fmt, Mapping) and fmt.get("type") == "json_schema":
        schema = {"name": "output", "schema": fmt.get("schema") or {}, "strict": True}
        out["response_format"] = {"type": "json_schema", "json_schema": schema}
    conv.dropped += [k for k, v in body.items() if k not in _HANDLED and v is not None]
    return Converted(out, conv.dropped, conv.native_only)


# --- answers ---------------------------------------------------------------------------------------
def message_usage(usage: Usage, *, input_estimate: int | None = None) -> dict[str, Any]:
    """The Messages `usage` object: input_tokens exclude cache reads and writes."""
    return {
        "input_tokens": usage.input_tokens if input_estimate is None else input_estimate,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
        "output_tokens": usage.output_tokens,
    }


def stop_reason(finish: Any) -> str:
    return STOP_REASONS.get(str(finish), "end_turn")


def _thinking_blocks(message: Mapping[str, Any]) -> Blocks:
    details = message.get("reasoning_details")
    blocks: Blocks = []
    for d in details if isinstance(details, list) else ():
        if not isinstance(d, Mapping):
            continue
        if d.get("type") == "reasoning.text":
            blocks.append(
                {"type": "thinking", "thinking": d.get("text") or "", "signature": d.get("signature") or ""}
            )
        elif d.get("type") == "reasoning.encrypted" and d.get("data"):
            blocks.append({"type": "redacted_thinking", "data": d["data"]})
    if not blocks and isinstance(message.get("reasoning_content"), str) and message["reasoning_content"]:
        blocks.append({"type": "thinking", "thinking": message["reasoning_content"], "signature": ""})
    elif blocks and message.get("reasoning_content") and not any(b.get("thinking") for b in blocks):
        blocks[0]["thinking"] = message["reasoning_content"]
    return blocks


def _tool_input(arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, dict):
        return arguments
    try:
        value = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def chat_to_message(chat: Mapping[str, Any], usage: Usage, model: str, message_id: str) -> dict[str, Any]:
    """A pivot `chat.completion` → a Messages `message`."""
    choice = (chat.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content = _thinking_blocks(message)
    text = message.get("content") or message.get("refusal")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or ():
        fn = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": fn.get("name"),
                "input": _tool_input(fn.get("arguments")),
            }
        )
    reason = "refusal" if message.get("refusal") else stop_reason(choice.get("finish_reason"))
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": None,
        "usage": message_usage(usage),
    }


def sse_event(name: str, obj: Mapping[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


class ChatToMessagesStream:
    """Pivot stream chunks → the Messages event sequence, one block open at a time."""

    def __init__(self, model: str, message_id: str, input_estimate: int) -> None:
        self.model = model
        self.message_id = message_id
        self.input_estimate = input_estimate
        self.started = False
        self.index = -1  # the open block
        self.kind: str | None = None
        self.tools: dict[int, int] = {}  # the pivot's tool-call index → block index
        self.stop: str | None = None
        self.out: list[bytes] = []

    def _emit(self, name: str, obj: dict[str, Any]) -> None:
        self.out.append(sse_event(name, {"type": name, **obj}))

    def _start(self) -> None:
        self.started = True
        message: dict[str, Any] = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            # The input count is an estimate here; message_delta carries the real one.
            "usage": message_usage(Usage(), input_estimate=self.input_estimate),
        }
        self._emit("message_start", {"message": message})
        self._emit("ping", {})

    def _close(self) -> None:
        if self.kind is not None:
            self._emit("content_block_stop", {"index": self.index})
            self.kind = None

    def _open(self, kind: str, block: dict[str, Any]) -> None:
        self._close()
        self.index += 1
        self.kind = kind
        self._emit("content_block_start", {"index": self.index, "content_block": block})

    def _delta(self, delta: dict[str, Any], index: int | None = None) -> None:
        self._emit("content_block_delta", {"index": self.index if index is None else index, "delta": delta})

    def feed(self, chunks: list[dict[str, Any]]) -> bytes:
        if not self.started:
            self._start()
        for chunk in chunks:
            for choice in chunk.get("choices") or ():
                if choice.get("index", 0) == 0:
                    self._choice(choice)
        out, self.out = b"".join(self.out), []
        return out

    def _choice(self, choice: Mapping[str, Any]) -> None:
        delta = choice.get("delta") or {}
        reasoning = delta.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            if self.kind != "thinking":
                self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            self._delta({"type": "thinking_delta", "thinking": reasoning})
        for detail in delta.get("reasoning_details") or ():
            if not isinstance(detail, Mapping):
                continue
            if detail.get("type") == "reasoning.text" and detail.get("signature"):
                if self.kind != "thinking":
                    self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
                self._delta({"type": "signature_delta", "signature": detail["signature"]})
            elif detail.get("type") == "reasoning.encrypted" and detail.get("data"):
                self._open("redacted_thinking", {"type": "redacted_thinking", "data": detail["data"]})
                self._close()
        for key in ("content", "refusal"):
            text = delta.get(key)
            if isinstance(text, str) and text:
                if self.kind != "text":
                    self._open("text", {"type": "text", "text": ""})
                self._delta({"type": "text_delta", "text": text})
                if key == "refusal":
                    self.stop = "refusal"
        for call in delta.get("tool_calls") or ():
            self._tool_call(call)
        finish = choice.get("finish_reason")
        if finish and self.stop != "refusal":
            self.stop = stop_reason(finish)

    def _tool_call(self, call: Mapping[str, Any]) -> None:
        position = call.get("index", 0)
        fn = call.get("function") or {}
        if position not in self.tools:
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{position}",
                "name": fn.get("name"),
                "input": {},
            }
            self._open("tool_use", block)
            self.tools[position] = self.index
        arguments = fn.get("arguments")
        if isinstance(arguments, str) and arguments:
            self._delta({"type": "input_json_delta", "partial_json": arguments}, self.tools[position])

    def end(self, usage: Usage) -> bytes:
        if not self.started:
            self._start()
        self._close()
        delta = {"stop_reason": self.stop or "end_turn", "stop_sequence": None}
        self._emit("message_delta", {"delta": delta, "usage": message_usage(usage)})
        self._emit("message_stop", {})
        out, self.out = b"".join(self.out), []
        return out
