"""What chat history keeps of a request and its answer: plain text per message, pure functions.

The request is read in the pivot (OpenAI chat messages), whatever API the caller spoke. The answer
is read in the shape the translator gave it (`ChatTranslator.source`): the pivot (`openai`), or the
caller's own API when an offer of that API passed it through (`anthropic` Messages, `responses`).
A stream is assembled from the items the pipeline forwarded. History keeps text: a non-text part
(an image, a file, audio) is named in brackets, a tool call as `[tool call: name(arguments)]`, and
reasoning is left out. With `n` > 1 only the first choice is kept.
"""

from __future__ import annotations

from typing import Any

import orjson

TEXT_PARTS = frozenset({"text", "input_text", "output_text"})


def content_text(content: Any) -> str:
    """A message's content (a string or a list of parts) as text."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    out = []
    for part in content:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind in TEXT_PARTS and isinstance(part.get("text"), str):
            out.append(part["text"])
        elif isinstance(kind, str):
            out.append(f"[{kind}]")
    return "\n".join(out)


def _tool_call(name: Any, arguments: Any) -> str:
    args = arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()
    return f"[tool call: {name}({args})]"


def message_text(message: dict[str, Any]) -> str:
    """One OpenAI chat message (request or answer) as text."""
    parts = [content_text(message.get("content"))]
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {} if isinstance(call, dict) else {}
        parts.append(_tool_call(function.get("name"), function.get("arguments") or ""))
    return "\n".join(p for p in parts if p)


def request_messages(body: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, text) of every message of a pivot request."""
    out = []
    for message in body.get("messages") or ():
        if isinstance(message, dict):
            out.append((str(message.get("role") or "user"), message_text(message)))
    return out


def new_turn(messages: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """What a request adds to a session it continues: the messages after its last assistant
    message (the caller resends the whole conversation; what came before is already kept)."""
    last = max((i for i, (role, _) in enumerate(messages) if role == "assistant"), default=-1)
    return messages[last + 1 :]


# --- whole answers ------------------------------------------------------------------------------
def answer_text(source: str, body: dict[str, Any]) -> str:
    if source == "anthropic":
        return _anthropic_blocks(body.get("content") or ())
    if source == "responses":
        return _responses_output(body.get("output") or ())
    choices = body.get("choices") or ()
    return message_text(choices[0].get("message") or {}) if choices else ""


def _anthropic_blocks(blocks: Any) -> str:
    out = []
    for block in blocks:
        if block.get("type") == "text":
            out.append(str(block.get("text") or ""))
        elif block.get("type") == "tool_use":
            out.append(_tool_call(block.get("name"), block.get("input") or {}))
    return "\n".join(out)


def _responses_output(items: Any) -> str:
    out = []
    for item in items:
        if item.get("type") == "message":
            out.append(content_text(item.get("content")))
        elif item.get("type") == "function_call":
            out.append(_tool_call(item.get("name"), item.get("arguments") or ""))
    return "\n".join(p for p in out if p)


# --- streams ------------------------------------------------------------------------------------
class StreamText:
    """Assembles a streamed answer from the items the pipeline forwarded (kept as they came: the
    text is put together after the answer, off the stream's latency)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[Any] = []

    def add(self, items: list[Any]) -> None:
        self.items.extend(items)

    def text(self) -> str:
        if self.source == "anthropic":
            return self._anthropic()
        if self.source == "responses":
            return self._responses()
        return self._chat()

    def _chat(self) -> str:
        text: list[str] = []
        calls: dict[int, list[str]] = {}  # tool call index → [name, arguments]
        for chunk in self.items:
            for choice in chunk.get("choices") or ():
                if choice.get("index", 0) != 0:
                    continue
                delta = choice.get("delta") or {}
                if isinstance(delta.get("content"), str):
                    text.append(delta["content"])
                for call in delta.get("tool_calls") or ():
                    entry = calls.setdefault(int(call.get("index") or 0), ["", ""])
                    function = call.get("function") or {}
                    entry[0] += function.get("name") or ""
                    entry[1] += function.get("arguments") or ""
        parts = ["".join(text), *(_tool_call(name, args) for name, args in calls.values())]
        return "\n".join(p for p in parts if p)

    def _anthropic(self) -> str:
        blocks: dict[int, dict[str, Any]] = {}
        for item in self.items:
            if item.name not in ("content_block_start", "content_block_delta"):
                continue
            data = orjson.loads(item.data)
            index = int(data.get("index") or 0)
            if item.name == "content_block_start":
                block = dict(data.get("content_block") or {})
                block.setdefault("text", "")
                block["partial"] = ""
                blocks[index] = block
                continue
            block = blocks.setdefault(index, {"type": "text", "text": "", "partial": ""})
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta":
                block["text"] += delta.get("text") or ""
            elif delta.get("type") == "input_json_delta":
                block["partial"] += delta.get("partial_json") or ""
        for block in blocks.values():
            if block.get("type") == "tool_use":
                block["input"] = block.pop("partial") or block.get("input") or {}
        return _anthropic_blocks([blocks[i] for i in sorted(blocks)])

    def _responses(self) -> str:
        for item in reversed(self.items):
            if item.name == "response.completed":
                data = item.obj if item.obj is not None else orjson.loads(item.data)
                return _responses_output((data.get("response") or {}).get("output") or ())
        return "".join(
            str(orjson.loads(item.data).get("delta") or "")
            for item in self.items
            if item.name == "response.output_text.delta"
        )
