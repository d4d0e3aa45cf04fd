"""The OpenAI embeddings front end (`POST /v1/embeddings`, SPEC §2.3): what `openai`'s
`embeddings.create` (and every RAG library built on it) speaks.

There is no pivot for embeddings: the request goes through the one pipeline (authenticate → limit →
reserve → route → call with failover → settle → record) as the caller wrote it, to offers of
embedding models only (`output_modalities: ["embeddings"]`), passed through to OpenAI-compatible
upstreams and translated for Gemini (`shared.dialects.embeddings`). Billing is per input token:
the reservation is the input counted generously at the dearest planned offer, with no output.
The answer is the upstream's own, with the gateway's model id and `usage.cost`; errors use
OpenAI's envelope.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson

from shared.billing import money
from shared.dialects.base import ChatTranslator, Usage
from shared.dialects.embeddings import SPLICED, Spliced
from shared.errors import InvalidRequest
from shared.pipeline.frontend import FrontEnd, Inbound
from shared.pipeline.request import ChatParams

# https://platform.openai.com/docs/api-reference/embeddings/create
MAX_INPUTS = 2048
ENCODINGS = frozenset({"float", "base64"})
_PARAMS = ChatParams(stream=False, include_usage=False, n=1, needs=frozenset(), max_output=0)


def _bad(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid '{param}': {message}", param=param)


def _tokens(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in value)
    )


def _check_input(raw: Any) -> None:
    """A non-empty string, an array of them, a token array, or an array of token arrays."""
    if isinstance(raw, str):
        if not raw:
            raise _bad("input cannot be an empty string.", "input")
        return
    if not isinstance(raw, list) or not raw:
        raise _bad("expected a string, an array of strings or an array of token arrays.", "input")
    if _tokens(raw):
        return
    if len(raw) > MAX_INPUTS:
        raise _bad(f"an array of at most {MAX_INPUTS} inputs is accepted.", "input")
    for i, item in enumerate(raw):
        if isinstance(item, str):
            if not item:
                raise _bad("input cannot be an empty string.", f"input[{i}]")
        elif not _tokens(item):
            raise _bad("expected a string or an array of token ids.", f"input[{i}]")


def check_embeddings(body: Any) -> ChatParams:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _bad("a model is required.", "model")
    if "input" not in body:
        raise _bad("input is required.", "input")
    _check_input(body["input"])
    dims = body.get("dimensions")
    if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int) or dims < 1):
        raise _bad("expected an integer of at least 1.", "dimensions")
    encoding = body.get("encoding_format")
    if encoding is not None and encoding not in ENCODINGS:
        raise _bad("expected float or base64.", "encoding_format")
    if body.get("user") is not None and not isinstance(body["user"], str):
        raise _bad("expected a string.", "user")
    if body.get("stream"):
        raise _bad("embeddings are not streamed.", "stream")
    return _PARAMS


class OpenAIEmbeddings(FrontEnd):
    api = "embeddings"
    endpoint = "embeddings"
    native_offers = "providers with an embeddings API (OpenAI-compatible or Gemini)"
    consumed = ("models", "provider", "route", "transforms")  # routing fields, as chat's
    modality = "embeddings"
    elsewhere = {"text": "POST /v1/chat/completions"}

    def check(self, body: Any, max_n: int) -> ChatParams:
        return check_embeddings(body)

    def inbound(self, body: Any) -> Inbound:
        return Inbound(body, native=body, native_only="embeddings")

    def response(self, answer_body: dict[str, Any], tr: ChatTranslator, usage: Usage, cost: Decimal) -> Any:
        out: dict[str, Any] = {"prompt_tokens": usage.input_tokens, "total_tokens": usage.input_tokens}
        if usage.estimated:
            out["estimated"] = True
        # A JSON number written from the exact decimal (as chat's usage.cost), never via a float.
        out["cost"] = orjson.Fragment(money(cost).encode())
        spliced = answer_body.get(SPLICED)
        if isinstance(spliced, Spliced):  # the upstream's bytes, the vectors untouched
            return orjson.Fragment(spliced.before + orjson.dumps(out) + spliced.after)
        answer_body["usage"] = out
        return answer_body


EMBEDDINGS = OpenAIEmbeddings()
