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
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping
from typing import Any

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


class EmbeddingsToOpenAI(ChatTranslator):
    """A pass-through to an OpenAI-compatible `/embeddings`."""

    source = "embeddings"
    dialect = "openai"

    def path(self, stream: bool) -> str:
        return "/embeddings"

    def request(self, body: dict[str, Any], stream: bool) -> dict[str, Any]:
        return {**body, "model": self.native_id}

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
