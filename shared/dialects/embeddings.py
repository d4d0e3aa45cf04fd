"""Embeddings translators: an OpenAI `POST /v1/embeddings` request (the caller's own body, checked
by `shared.frontends.openai_embeddings`) to an upstream, and its answer back in OpenAI's shape.

OpenAI-compatible upstreams serve the same API, so the request goes out as written (with the
native model id) and the answer comes back as it was, only its `model` renamed: the vectors are
never touched (OpenAI's `base64` strings stay strings, its floats are re-serialised exactly by
orjson). Gemini has no OpenAI embeddings API: `batchEmbedContents`
(https://ai.google.dev/api/embeddings#method:-models.batchembedcontents) takes one
`EmbedContentRequest` per input and answers `{"embeddings": [{"values": [...]}]}` with no token
count, so usage is estimated from the text (billed, and marked `estimated`, SPEC §4), and
`encoding_format: base64` is done here as OpenAI does it: little-endian float32, base64.

The OpenAI-compatible answer is not even parsed whole where it need not be: a vector of floats is
~30 KB of JSON whose parsing and re-serialising cost the gateway a quarter more CPU than a chat
answer (bench `emb-float`). When the answer's `model` and a flat `usage` object come after its
last array (OpenAI's own order), only they are read and replaced (`Spliced`); any other shape is
parsed as usual.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from shared.dialects.base import ChatTranslator, Usage
from shared.dialects.openai_to_gemini import OpenAIToGemini
from shared.dialects.openai_to_openai import OpenAIToOpenAI
from shared.errors import InvalidRequest
from shared.tokens import estimate_text
from shared.transport.errors import UpstreamError


def inputs(body: dict[str, Any]) -> list[Any]:
    """`input` as a list of inputs (a string or a token array alone is one input)."""
    raw = body["input"]
    if isinstance(raw, str) or (raw and isinstance(raw[0], int)):
        return [raw]
    return list(raw)


def as_base64(values: list[float]) -> str:
    """OpenAI's `encoding_format: base64`: the vector as little-endian float32 bytes."""
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")


def embeddings_usage(data: dict[str, Any]) -> Usage:
    usage = data.get("usage")
    prompt = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    if isinstance(prompt, bool) or not isinstance(prompt, int) or prompt < 0:
        raise UpstreamError(502, "the upstream's embeddings carry no usage", kind="protocol")
    return Usage(input_tokens=prompt)


SPLICED = "spliced"  # the key of a `Spliced` answer in the body the pipeline carries


@dataclass(frozen=True, slots=True)
class Spliced:
    """An upstream answer as bytes around its `usage` object (the model already replaced): the
    front end writes the usage, with the cost, in between."""

    before: bytes
    after: bytes


def _string_value(body: bytes, key_at: int, key_len: int) -> tuple[int, int] | None:
    """The span of the plain (unescaped) JSON string value of the key at `key_at`."""
    colon = body.find(b":", key_at + key_len)
    start = body.find(b'"', colon + 1)
    end = body.find(b'"', start + 1)
    if (
        colon < 0
        or start < 0
        or end < 0
        or body[key_at + key_len : colon].strip()
        or body[colon + 1 : start].strip()
    ):
        return None
    return (start + 1, end) if b"\\" not in body[start:end] else None


def splice(body: bytes, model_id: str) -> tuple[Spliced, dict[str, Any]] | None:
    """`body` split around its flat `usage` object with `model` set to `model_id`, and the usage;
    None unless both keys come after the last array (so that neither is inside the data)."""
    body = body.strip()
    last_array = body.rfind(b"]")
    usage_at, model_at = body.rfind(b'"usage"'), body.rfind(b'"model"')
    if not (body[:1] == b"{" and body[-1:] == b"}") or last_array < 0 or min(usage_at, model_at) < last_array:
        return None
    start = body.find(b"{", usage_at)
    end = body.find(b"}", start)
    if start < 0 or end < 0 or body[usage_at + 7 : start].strip() != b":" or b"{" in body[start + 1 : end]:
        return None
    model = _string_value(body, model_at, 7)
    if model is None:
        return None
    try:
        usage = orjson.loads(body[start : end + 1])
    except orjson.JSONDecodeError:
        return None
    name = orjson.dumps(model_id)[1:-1]
    if model[0] < start:
        before = body[: model[0]] + name + body[model[1] : start]
        return Spliced(before, body[end + 1 :]), usage
    after = body[end + 1 : model[0]] + name + body[model[1] :]
    return Spliced(body[:start], after), usage


class EmbeddingsToOpenAI(ChatTranslator):
    """A pass-through to an OpenAI-compatible `/embeddings`."""

    source = "embeddings"
    dialect = "openai"
    takes_quirks = True  # what the host spells differently (Mistral: output_dimension)

    def path(self, stream: bool) -> str:
        return "/embeddings"

    def request(self, body: dict[str, Any], stream: bool) -> dict[str, Any]:
        return {**body, "model": self.native_id}

    def raw_response(self, raw: bytes) -> dict[str, Any] | None:
        found = splice(raw, self.model_id) if b'"data"' in raw else None
        if found is None:
            return None
        self.usage = embeddings_usage({"usage": found[1]})
        return {SPLICED: found[0]}

    def response(self, data: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(data.get("data"), list):
            raise UpstreamError(502, "the upstream answered embeddings without data", kind="protocol")
        self.usage = embeddings_usage(data)
        data["model"] = self.model_id
        return data

    def error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        return OpenAIToOpenAI.error(self, status, headers, body)  # type: ignore[arg-type]


class EmbeddingsToGemini(ChatTranslator):
    """OpenAI embeddings over Gemini's `batchEmbedContents`."""

    source = "embeddings"
    dialect = "gemini"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base64 = False
        self.estimate = 0

    def path(self, stream: bool) -> str:
        return f"/models/{self.native_id}:batchEmbedContents"

    def request(self, body: dict[str, Any], stream: bool) -> dict[str, Any]:
        texts = inputs(body)
        if not all(isinstance(t, str) for t in texts):
            raise InvalidRequest(
                "Token arrays cannot be embedded by this model's provider: send the text.", param="input"
            )
        self.base64 = body.get("encoding_format") == "base64"
        self.estimate = sum(estimate_text(t) for t in texts)
        model = f"models/{self.native_id}"
        one: dict[str, Any] = {"model": model}
        if body.get("dimensions") is not None:
            one["outputDimensionality"] = body["dimensions"]
        return {"requests": [{**one, "content": {"parts": [{"text": t}]}} for t in texts]}

    def response(self, data: dict[str, Any]) -> dict[str, Any]:
        embeddings = data.get("embeddings")
        if not isinstance(embeddings, list):
            raise UpstreamError(502, "the upstream answered embeddings without data", kind="protocol")
        out = []
        for i, item in enumerate(embeddings):
            values = item.get("values") if isinstance(item, dict) else None
            if not isinstance(values, list):
                raise UpstreamError(502, "the upstream answered an embedding without values", kind="protocol")
            vector: Any = as_base64(values) if self.base64 else values
            out.append({"object": "embedding", "index": i, "embedding": vector})
        self.usage = Usage(input_tokens=self.estimate, estimated=True)
        usage = {"prompt_tokens": self.estimate, "total_tokens": self.estimate}
        return {"object": "list", "data": out, "model": self.model_id, "usage": usage}

    def error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        return OpenAIToGemini.error(self, status, headers, body)  # type: ignore[arg-type]
