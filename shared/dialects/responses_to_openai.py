"""responses_to_openai: OpenAI Responses requests to the pivot (OpenAI chat), and the pivot's
answers and streams back to Responses — for Responses callers of models served by anything but
OpenAI's own Responses API (the pivot then goes on through `openai_to_<dialect>`).

Request: https://platform.openai.com/docs/api-reference/responses/create. `instructions` becomes
the first system message; `input` (a string, or items) becomes messages: message items with
input_text / input_image / input_file parts, `function_call` items become assistant tool calls
(consecutive ones in one assistant message, as the model made them), `function_call_output`
items tool-role messages — never user text. Reasoning items carry nothing the pivot can send
(they are signed for OpenAI) and are left out, as thinking blocks are for Messages. Function
`tools`, `tool_choice`, `text.format`, `reasoning.effort` and `max_output_tokens` have pivot
equivalents; what has none is dropped and named. What only OpenAI's own API can serve (built-in
tools, their items, file ids, stored prompts) makes the request native-only, with the reason.

Answers: https://platform.openai.com/docs/api-reference/responses/object — `output` holds a
reasoning item (the pivot's `reasoning_content`, as a summary), a message with output_text or
refusal parts, and function_call items. Streams:
https://platform.openai.com/docs/api-reference/responses-streaming — response.created,
response.in_progress, then per item output_item.added, its parts and deltas and their .done
events, output_item.done; response.completed (or response.incomplete) with the usage, or
response.failed when the upstream fails after the first event. Every event has a
`sequence_number`, counted from 0.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from shared.dialects.base import Usage

# Handled below; any other top-level field with a value is dropped (and named) on the pivot.
_HANDLED = frozenset(
    {
        "model", "input", "instructions", "tools", "tool_choice", "text", "reasoning",
        "max_output_tokens", "temperature", "top_p", "metadata", "stream", "stream_options",
        "store", "previous_response_id", "user", "parallel_tool_calls", "service_tier",
        "truncation", "include", "models", "provider", "background", "conversation", "prompt",
    }
)  # fmt: skip
# Chat's reasoning_effort has no "max": its "xhigh" is the most there is.
_EFFORTS = {"max": "xhigh"}
# https://platform.openai.com/docs/api-reference/responses/object#responses/object-incomplete_details
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}

Items = list[dict[str, Any]]


def item_id(prefix: str) -> str:
    """An output item id in OpenAI's form (`msg_…`, `fc_…`, `rs_…`)."""
    return f"{prefix}_{secrets.token_hex(16)}"


def input_items(body: Mapping[str, Any]) -> Items:
    """The request's `input` as a list of items (a string is one user message)."""
    raw = body.get("input")
    if isinstance(raw, str):
        return [{"type": "message", "role": "user", "content": raw}]
    return list(raw or [])


@dataclass(slots=True)
class Converted:
    body: dict[str, Any]  # the pivot request
    dropped: list[str] = field(default_factory=list)  # fields the pivot cannot carry
    native_only: str | None = None  # why only OpenAI's Responses API can serve it


class _Request:
    """One conversion: the pivot's messages, and what could not be carried."""

    def __init__(self) -> None:
        self.messages: Items = []
        self.dropped: list[str] = []
        self.native_only: str | None = None

    def only_native(self, why: str) -> None:
        self.native_only = self.native_only or why

    def part(self, part: Mapping[str, Any]) -> dict[str, Any] | None:
        """An input content part as a chat part (None: nothing the pivot can carry)."""
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            return {"type": "text", "text": part.get("text") or ""}
        if kind == "input_image":
            if not part.get("image_url"):
                self.only_native("input_image with a file_id")
                return None
            image: dict[str, Any] = {"url": part["image_url"]}
            if part.get("detail") in ("low", "high", "auto"):
                image["detail"] = part["detail"]
            return {"type": "image_url", "image_url": image}
        if kind == "input_file":
            if not part.get("file_data"):
                self.only_native("input_file with a file_id or file_url")
                return None
            file = {"filename": part.get("filename") or "file.pdf", "file_data": part["file_data"]}
            return {"type": "file", "file": file}
        self.only_native(f"'{kind}' content")
        return None

    def parts(self, content: Any) -> str | Items:
        if isinstance(content, str):
            return content
        return [p for p in (self.part(c) for c in content or ()) if p is not None]

    def message(self, item: Mapping[str, Any]) -> None:
        role, content = item.get("role"), item.get("content")
        if role == "assistant":
            text = (
                content
                if isinstance(content, str)
                else "".join(str(c.get("text") or c.get("refusal") or "") for c in content or ())
            )
            self.messages.append({"role": "assistant", "content": text})
            return
        self.messages.append({"role": role, "content": self.parts(content)})

    def function_call(self, item: Mapping[str, Any]) -> None:
        call = {
            "id": item.get("call_id"),
            "type": "function",
            "function": {"name": item.get("name"), "arguments": item.get("arguments") or "{}"},
        }
        last = self.messages[-1] if self.messages else None
        if last is not None and last["role"] == "assistant":
            last.setdefault("tool_calls", []).append(call)  # one turn may call several tools
        else:
            self.messages.append({"role": "assistant", "content": None, "tool_calls": [call]})

    def function_output(self, item: Mapping[str, Any]) -> None:
        output = item.get("output")
        media: Items = []
        if isinstance(output, str):
            text = output
        else:
            texts = []
            for part in output or ():
                converted = self.part(part)
                if converted is None:
                    continue
                if converted["type"] == "text":
                    texts.append(converted["text"])
                else:
                    media.append(converted)  # a tool message carries text only: media follow it
            text = "\n".join(texts)
        self.messages.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": text})
        if media:
            self.messages.append({"role": "user", "content": media})

    def item(self, item: Mapping[str, Any]) -> None:
        kind = item.get("type") or "message"
        if kind == "message":
            self.message(item)
        elif kind == "function_call":
            self.function_call(item)
        elif kind == "function_call_output":
            self.function_output(item)
        elif kind != "reasoning":  # reasoning is signed for OpenAI: other vendors take none
            self.only_native(f"'{kind}' items")


def _tools(body: Mapping[str, Any], conv: _Request, out: dict[str, Any]) -> None:
    tools: Items = []
    hosted: list[str] = []
    for tool in body.get("tools") or ():
        if tool.get("type") != "function":
            hosted.append(str(tool.get("type")))
            continue
        fn: dict[str, Any] = {
            "name": tool["name"],
            "parameters": tool.get("parameters") or {"type": "object", "properties": {}},
        }
        if tool.get("description"):
            fn["description"] = tool["description"]
        if tool.get("strict") is not None:
            fn["strict"] = tool["strict"]
        tools.append({"type": "function", "function": fn})
    if hosted:
        conv.only_native(f"the built-in tool(s) {', '.join(hosted)}")
    choice = body.get("tool_choice")
    if isinstance(choice, str):
        out["tool_choice"] = choice
    elif isinstance(choice, Mapping):
        kind = choice.get("type")
        if kind == "function":
            out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
        elif kind == "allowed_tools":
            # The model may call only these: the pivot offers it only these.
            allowed = {t.get("name") for t in choice.get("tools") or () if t.get("type") == "function"}
            if any(t.get("type") != "function" for t in choice.get("tools") or ()):
                conv.only_native("a built-in tool in tool_choice")
            tools = [t for t in tools if t["function"]["name"] in allowed]
            out["tool_choice"] = choice.get("mode") or "auto"
        else:
            conv.only_native(f"tool_choice '{kind}'")
    if tools:
        out["tools"] = tools
    else:
        out.pop("tool_choice", None)  # a choice without tools means nothing to chat (and vendors refuse it)


def _text_format(body: Mapping[str, Any], conv: _Request, out: dict[str, Any]) -> None:
    text = body.get("text") or {}
    fmt = text.get("format") or {}
    if fmt.get("type") == "json_schema":
        spec = {"name": fmt.get("name"), "schema": fmt.get("schema") or {}}
        for name in ("strict", "description"):
            if fmt.get(name) is not None:
                spec[name] = fmt[name]
        out["response_format"] = {"type": "json_schema", "json_schema": spec}
    elif fmt.get("type") == "json_object":
        out["response_format"] = {"type": "json_object"}
    if text.get("verbosity") is not None:
        conv.dropped.append("text.verbosity")


def responses_to_chat(body: Mapping[str, Any], history: Items) -> Converted:
    """A validated Responses request (after `history`, the items of the conversation it continues)
    → the pivot."""
    conv = _Request()
    if body.get("instructions"):
        conv.messages.append({"role": "system", "content": body["instructions"]})
    for item in [*history, *input_items(body)]:
        conv.item(item)
    out: dict[str, Any] = {"model": body["model"], "messages": conv.messages}
    for name in ("models", "provider", "temperature", "top_p", "stream", "user", "parallel_tool_calls",
                 "service_tier"):  # fmt: skip
        if body.get(name) is not None:
            out[name] = body[name]
    if body.get("max_output_tokens") is not None:
        out["max_tokens"] = body["max_output_tokens"]
    _tools(body, conv, out)
    _text_format(body, conv, out)
    reasoning = body.get("reasoning") or {}
    if reasoning.get("effort") is not None:
        out["reasoning_effort"] = _EFFORTS.get(reasoning["effort"], reasoning["effort"])
    conv.dropped += [f"reasoning.{k}" for k, v in reasoning.items() if k != "effort" and v is not None]
    if body.get("prompt") is not None:
        conv.only_native("a stored prompt")
    if body.get("truncation") == "auto":
        conv.dropped.append("truncation")
    if body.get("include"):
        conv.dropped.append("include")
    conv.dropped += [k for k, v in body.items() if k not in _HANDLED and v is not None]
    return Converted(out, conv.dropped, conv.native_only)


# --- answers ---------------------------------------------------------------------------------------
@dataclass(slots=True)
class Echo:
    """What every response object says of its request, besides its output
    (https://platform.openai.com/docs/api-reference/responses/object)."""

    id: str
    model: str
    created_at: int
    request: Mapping[str, Any]
    store: bool

    def response(
        self,
        status: str,
        output: Items,
        usage: dict[str, Any] | None = None,
        *,
        error: dict[str, Any] | None = None,
        incomplete: str | None = None,
    ) -> dict[str, Any]:
        req = self.request
        reasoning = req.get("reasoning") or {}
        text = dict(req.get("text") or {})
        text.setdefault("format", {"type": "text"})
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": False,
            "error": error,
            "incomplete_details": {"reason": incomplete} if incomplete else None,
            "instructions": req.get("instructions"),
            "max_output_tokens": req.get("max_output_tokens"),
            "max_tool_calls": req.get("max_tool_calls"),
            "model": self.model,
            "output": output,
            "parallel_tool_calls": req.get("parallel_tool_calls", True),
            "previous_response_id": req.get("previous_response_id"),
            "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
            "service_tier": req.get("service_tier") or "default",
            "store": self.store,
            "temperature": req.get("temperature", 1.0),
            "text": text,
            "tool_choice": req.get("tool_choice", "auto"),
            "tools": list(req.get("tools") or ()),
            "top_p": req.get("top_p", 1.0),
            "truncation": req.get("truncation") or "disabled",
            "usage": usage,
            "user": req.get("user"),
            "metadata": req.get("metadata") or {},
        }


def responses_usage(usage: Usage) -> dict[str, Any]:
    """The Responses `usage` object: input_tokens include cache reads and writes (the cost is
    added by the front end)."""
    prompt = usage.prompt_tokens
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
        },
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": prompt + usage.output_tokens,
    }


def _reasoning_item(rid: str, text: str) -> dict[str, Any]:
    return {"id": rid, "type": "reasoning", "summary": [{"type": "summary_text", "text": text}]}


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def _message_item(mid: str, parts: Items, status: str = "completed") -> dict[str, Any]:
    return {"id": mid, "type": "message", "status": status, "role": "assistant", "content": parts}


def _call_item(
    fid: str, call_id: str, name: str, arguments: str, status: str = "completed"
) -> dict[str, Any]:
    return {
        "id": fid,
        "type": "function_call",
        "status": status,
        "arguments": arguments,
        "call_id": call_id,
        "name": name,
    }


def incomplete_reason(finish: Any) -> str | None:
    return _INCOMPLETE.get(str(finish))


def chat_to_output(chat: Mapping[str, Any]) -> tuple[Items, str | None]:
    """A pivot `chat.completion` → (the response's output items, why it is incomplete)."""
    choice = (chat.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    output: Items = []
    if isinstance(message.get("reasoning_content"), str) and message["reasoning_content"]:
        output.append(_reasoning_item(item_id("rs"), message["reasoning_content"]))
    parts: Items = []
    if isinstance(message.get("content"), str) and message["content"]:
        parts.append(_text_part(message["content"]))
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        parts.append({"type": "refusal", "refusal": message["refusal"]})
    if parts:
        output.append(_message_item(item_id("msg"), parts))
    for call in message.get("tool_calls") or ():
        fn = call.get("function") or {}
        arguments = fn.get("arguments")
        if not isinstance(arguments, str):
            arguments = orjson.dumps(arguments or {}).decode()
        output.append(_call_item(item_id("fc"), str(call.get("id")), str(fn.get("name")), arguments))
    return output, incomplete_reason(choice.get("finish_reason"))


def sse_event(obj: Mapping[str, Any]) -> bytes:
    return b"event: " + str(obj["type"]).encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


# --- streams ---------------------------------------------------------------------------------------
class _Open:
    """An output item being streamed: its index and what it has gathered so far."""

    def __init__(self, index: int, item: dict[str, Any]) -> None:
        self.index = index
        self.item = item
        self.text = ""  # the open part's text (or a call's arguments)
        self.part: str | None = None  # the open content part's type (messages)


class ChatToResponsesStream:
    """Pivot stream chunks → the Responses event sequence. Messages and reasoning close when the
    next item opens; function calls stay open until the end (a provider may interleave them)."""

    def __init__(self, echo: Echo) -> None:
        self.echo = echo
        self.seq = 0
        self.started = False
        self.output: Items = []  # every item, in output order (complete once closed)
        self.current: _Open | None = None  # the open message or reasoning item
        self.calls: dict[int, _Open] = {}  # the pivot's tool-call index → its open item
        self.finish: Any = None
        self.out: list[bytes] = []

    def _emit(self, kind: str, **fields: Any) -> None:
        self.out.append(sse_event({"type": kind, "sequence_number": self.seq, **fields}))
        self.seq += 1

    def _flush(self) -> bytes:
        out, self.out = b"".join(self.out), []
        return out

    def _start(self) -> None:
        self.started = True
        snapshot = self.echo.response("in_progress", [])
        self._emit("response.created", response=snapshot)
        self._emit("response.in_progress", response=snapshot)

    def _add(self, item: dict[str, Any]) -> _Open:
        opened = _Open(len(self.output), item)
        self.output.append(item)
        self._emit("response.output_item.added", output_index=opened.index, item=item)
        return opened

    def _done(self, opened: _Open) -> None:
        self._emit("response.output_item.done", output_index=opened.index, item=opened.item)

    def _close_part(self, opened: _Open) -> None:
        item, where = opened.item, {"item_id": opened.item["id"], "output_index": opened.index}
        if item["type"] == "reasoning":
            part = {"type": "summary_text", "text": opened.text}
            self._emit("response.reasoning_summary_text.done", **where, summary_index=0, text=opened.text)
            self._emit("response.reasoning_summary_part.done", **where, summary_index=0, part=part)
            item["summary"] = [part]
        elif opened.part is not None:
            index = len(item["content"])
            if opened.part == "refusal":
                part = {"type": "refusal", "refusal": opened.text}
                self._emit("response.refusal.done", **where, content_index=index, refusal=opened.text)
            else:
                part = _text_part(opened.text)
                self._emit(
                    "response.output_text.done", **where, content_index=index, text=opened.text, logprobs=[]
                )
            self._emit("response.content_part.done", **where, content_index=index, part=part)
            item["content"].append(part)
        opened.part, opened.text = None, ""

    def _close_current(self) -> None:
        if self.current is None:
            return
        self._close_part(self.current)
        if self.current.item["type"] == "message":
            self.current.item["status"] = "completed"
        self._done(self.current)
        self.current = None

    def _reasoning(self, text: str) -> None:
        if self.current is None or self.current.item["type"] != "reasoning":
            self._close_current()
            self.current = self._add({"id": item_id("rs"), "type": "reasoning", "summary": []})
            where = {"item_id": self.current.item["id"], "output_index": self.current.index}
            part = {"type": "summary_text", "text": ""}
            self._emit("response.reasoning_summary_part.added", **where, summary_index=0, part=part)
        where = {"item_id": self.current.item["id"], "output_index": self.current.index}
        self._emit("response.reasoning_summary_text.delta", **where, summary_index=0, delta=text)
        self.current.text += text

    def _content(self, kind: str, text: str) -> None:
        if self.current is None or self.current.item["type"] != "message":
            self._close_current()
            self.current = self._add(_message_item(item_id("msg"), [], "in_progress"))
        opened = self.current
        where = {"item_id": opened.item["id"], "output_index": opened.index}
        if opened.part != kind:
            if opened.part is not None:
                self._close_part(opened)
            opened.part = kind
            empty = {"type": "refusal", "refusal": ""} if kind == "refusal" else _text_part("")
            self._emit(
                "response.content_part.added", **where, content_index=len(opened.item["content"]), part=empty
            )
        index = len(opened.item["content"])
        if kind == "refusal":
            self._emit("response.refusal.delta", **where, content_index=index, delta=text)
        else:
            self._emit("response.output_text.delta", **where, content_index=index, delta=text, logprobs=[])
        opened.text += text

    def _tool_call(self, call: Mapping[str, Any]) -> None:
        position = call.get("index", 0)
        fn = call.get("function") or {}
        opened = self.calls.get(position)
        if opened is None:
            self._close_current()
            call_id = str(call.get("id") or f"call_{secrets.token_hex(12)}")
            opened = self._add(
                _call_item(item_id("fc"), call_id, str(fn.get("name") or ""), "", "in_progress")
            )
            self.calls[position] = opened
        arguments = fn.get("arguments")
        if isinstance(arguments, str) and arguments:
            where = {"item_id": opened.item["id"], "output_index": opened.index}
            self._emit("response.function_call_arguments.delta", **where, delta=arguments)
            opened.text += arguments

    def feed(self, chunks: list[dict[str, Any]]) -> bytes:
        if not self.started:
            self._start()
        for chunk in chunks:
            for choice in chunk.get("choices") or ():
                if choice.get("index", 0) != 0:
                    continue
                delta = choice.get("delta") or {}
                if isinstance(delta.get("reasoning_content"), str) and delta["reasoning_content"]:
                    self._reasoning(delta["reasoning_content"])
                for key, kind in (("content", "output_text"), ("refusal", "refusal")):
                    if isinstance(delta.get(key), str) and delta[key]:
                        self._content(kind, delta[key])
                for call in delta.get("tool_calls") or ():
                    self._tool_call(call)
                if choice.get("finish_reason"):
                    self.finish = choice["finish_reason"]
        return self._flush()

    def _close_all(self) -> None:
        self._close_current()
        for opened in sorted(self.calls.values(), key=lambda o: o.index):
            item = opened.item
            item["arguments"], item["status"] = opened.text, "completed"
            where = {"item_id": item["id"], "output_index": opened.index}
            self._emit("response.function_call_arguments.done", **where, arguments=opened.text)
            self._done(opened)
        self.calls = {}

    def end(self, usage: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
        """The closing events, and the finished response object."""
        if not self.started:
            self._start()
        self._close_all()
        reason = incomplete_reason(self.finish)
        status = "incomplete" if reason else "completed"
        final = self.echo.response(status, self.output, usage, incomplete=reason)
        self._emit(f"response.{status}", response=final)
        return self._flush(), final

    def failed(self, error: dict[str, Any]) -> bytes:
        """response.failed (with its `error`: code, message): the upstream failed after the first
        event, or the answer could not be billed."""
        if not self.started:
            self._start()
        self._emit("response.failed", response=self.echo.response("failed", self.output, error=error))
        return self._flush()
