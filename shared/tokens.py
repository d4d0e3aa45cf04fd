"""Token estimates for when an upstream reports no usage (SPEC §4: billed, marked estimated).

A character-based estimate (about four characters per token for English text and code, the rule
of thumb OpenAI documents at https://platform.openai.com/tokenizer); tokenizers with bundled
vocabularies can replace it without changing callers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

_CHARS_PER_TOKEN = 4
_MESSAGE_OVERHEAD = 4  # role and separators per message, as in OpenAI's chat format


def estimate_text(text: str) -> int:
    return -(-len(text) // _CHARS_PER_TOKEN) if text else 0


def _texts(content: Any) -> Iterator[str]:
    """The text of a message's content: the string, or its parts' texts."""
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                yield part["text"]


def _content_text(content: Any) -> str:
    return " ".join(_texts(content))


def estimate_prompt(body: dict[str, Any]) -> int:
    total = 3
    for message in body.get("messages") or ():
        if isinstance(message, dict):
            total += _MESSAGE_OVERHEAD + estimate_text(_content_text(message.get("content")))
            for call in message.get("tool_calls") or ():
                fn = call.get("function") or {} if isinstance(call, dict) else {}
                total += estimate_text(str(fn.get("name", ""))) + estimate_text(str(fn.get("arguments", "")))
    if isinstance(body.get("prompt"), str):
        total += estimate_text(body["prompt"])
    if body.get("tools"):
        total += estimate_text(orjson.dumps(body["tools"]).decode())
    return total + sum(tokens for _, tokens in _embedding_inputs(body))


def _embedding_inputs(body: dict[str, Any]) -> Iterator[tuple[int, int]]:
    """An embeddings request's inputs as (characters, tokens): a string is estimated from its
    text, a token array counts exactly (OpenAI's `input` forms)."""
    raw = body.get("input")
    if isinstance(raw, str) or (isinstance(raw, list) and raw and isinstance(raw[0], int)):
        raw = [raw]
    if not isinstance(raw, list):
        return
    for item in raw:
        if isinstance(item, str):
            yield len(item), estimate_text(item)
        elif isinstance(item, list):
            yield 2 * len(item), len(item)  # two characters a token: the bound counts it exactly


# Allowances for what has no text in the prompt: an image/audio/file part, a tool definition.
_MEDIA_PART_CHARS = 1000
_TOOL_CHARS = 2000


def prompt_chars(body: dict[str, Any]) -> int:
    """Characters a prompt carries (with allowances for media parts and tools): the basis of an
    upper bound, where `estimate_prompt` is the typical count."""
    total = 0
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        total += sum(len(text) for text in _texts(content))
        if isinstance(content, list):
            total += _MEDIA_PART_CHARS * sum(
                1 for p in content if isinstance(p, dict) and p.get("type") != "text"
            )
    total += sum(chars for chars, _ in _embedding_inputs(body))
    if isinstance(body.get("prompt"), str):  # an image generation's prompt
        total += len(body["prompt"])
    return total + _TOOL_CHARS * len(body.get("tools") or ())
