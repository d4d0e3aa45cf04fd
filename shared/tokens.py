"""Token estimates for when an upstream reports no usage (SPEC §4: billed, marked estimated).

A character-based estimate (about four characters per token for English text and code, the rule
of thumb OpenAI documents at https://platform.openai.com/tokenizer); tokenizers with bundled
vocabularies can replace it without changing callers.
"""

from __future__ import annotations

from typing import Any

import orjson

_CHARS_PER_TOKEN = 4
_MESSAGE_OVERHEAD = 4  # role and separators per message, as in OpenAI's chat format


def estimate_text(text: str) -> int:
    return -(-len(text) // _CHARS_PER_TOKEN) if text else 0


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


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
    return total
