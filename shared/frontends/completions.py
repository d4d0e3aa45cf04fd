"""Legacy text completions (`POST /v1/completions`) on top of the chat pipeline.

The prompt becomes one user turn, the answer is reshaped into `text_completion` objects
(https://platform.openai.com/docs/api-reference/completions/object). Options that only make
sense for raw completion models (echo, suffix, best_of) are refused with a 400 rather than
silently ignored.
"""

from __future__ import annotations

from typing import Any

from shared.errors import InvalidRequest
from shared.frontends.openai_chat import OpenAIChat

_UNSUPPORTED = ("echo", "suffix", "best_of")


def chat_from_completion(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise InvalidRequest("'prompt' must be a string (or an array of one string)", param="prompt")
    for name in _UNSUPPORTED:
        value = body.get(name)
        if value not in (None, False, 1, ""):
            raise InvalidRequest(
                f"'{name}' is not supported by this gateway's completions endpoint", param=name
            )
    chat = {k: v for k, v in body.items() if k not in ("prompt", *_UNSUPPORTED)}
    chat["messages"] = [{"role": "user", "content": prompt}]
    logprobs = body.get("logprobs")
    if logprobs is not None:
        # Completions take an integer count of top tokens; chat splits it into a flag and a count.
        if isinstance(logprobs, bool) or not isinstance(logprobs, int) or not 0 <= logprobs <= 5:
            raise InvalidRequest("'logprobs' must be an integer between 0 and 5", param="logprobs")
        chat["logprobs"] = True
        chat["top_logprobs"] = logprobs
    return chat


class Completions(OpenAIChat):
    endpoint = "completions"

    def shape(self, out: dict[str, Any]) -> dict[str, Any]:
        choices = [
            {
                "index": c.get("index", i),
                "text": (c.get("message") or {}).get("content") or "",
                "logprobs": None,
                "finish_reason": c.get("finish_reason"),
            }
            for i, c in enumerate(out.get("choices") or ())
        ]
        return {
            "id": out.get("id"),
            "object": "text_completion",
            "created": out.get("created"),
            "model": out.get("model"),
            "system_fingerprint": out.get("system_fingerprint"),
            "choices": choices,
            "usage": out.get("usage"),
        }

    def chunk(self, chunk: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": chunk.get("id"),
            "object": "text_completion",
            "created": chunk.get("created"),
            "model": chunk.get("model"),
            "choices": [
                {
                    "index": c.get("index", 0),
                    "text": (c.get("delta") or {}).get("content") or "",
                    "logprobs": None,
                    "finish_reason": c.get("finish_reason"),
                }
                for c in chunk.get("choices") or ()
            ],
        }
        if "usage" in chunk:
            out["usage"] = chunk["usage"]
        return out


COMPLETION = Completions()
