"""The OpenAI image generation front end (`POST /v1/images/generations`, SPEC §2.3): what `openai`'s
`images.generate` speaks.

Like embeddings there is no pivot: the request goes through the one pipeline as the caller wrote
it, to offers of image models only (`output_modalities: ["image"]`), passed through to
OpenAI-compatible upstreams (`shared.dialects.images`). The reservation is the worst case for `n`
images at the dearest planned offer — per image at the catalog's price for the quality and size
asked, or per token with the offer's most tokens an image can take — and the settlement is what
the upstream reports (its token usage, or the images it made). Images are returned as the
upstream gave them (`b64_json`, or its own `url`) and never stored. Errors use OpenAI's envelope.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson

from shared.billing import money
from shared.dialects.base import ChatTranslator, Usage
from shared.errors import InvalidRequest
from shared.pipeline.frontend import FrontEnd, Inbound
from shared.pipeline.request import ChatParams

# https://platform.openai.com/docs/api-reference/images/create
MAX_IMAGES = 10
RESPONSE_FORMATS = frozenset({"url", "b64_json"})
_TEXT_FIELDS = ("size", "quality", "style", "background", "output_format", "moderation", "user")


def _bad(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid '{param}': {message}", param=param)


def check_images(body: Any) -> ChatParams:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    if not isinstance(body.get("model"), str) or not body["model"]:
        # OpenAI defaults to dall-e-2; a gateway in front of many providers asks which model.
        raise _bad("a model is required.", "model")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise _bad("a non-empty prompt is required.", "prompt")
    n = body.get("n", 1)
    if n is None:
        n = 1
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_IMAGES:
        raise _bad(f"expected an integer between 1 and {MAX_IMAGES}.", "n")
    for name in _TEXT_FIELDS:
        if body.get(name) is not None and not isinstance(body[name], str):
            raise _bad("expected a string.", name)
    fmt = body.get("response_format")
    if fmt is not None and fmt not in RESPONSE_FORMATS:
        raise _bad("expected url or b64_json.", "response_format")
    compression = body.get("output_compression")
    if compression is not None and (
        isinstance(compression, bool) or not isinstance(compression, int) or not 0 <= compression <= 100
    ):
        raise _bad("expected an integer between 0 and 100.", "output_compression")
    if body.get("stream"):
        raise _bad("streamed image generation is not supported.", "stream")
    kind = (str(body.get("quality") or ""), str(body.get("size") or ""))
    return ChatParams(
        stream=False, include_usage=False, n=1, needs=frozenset(), max_output=None, images=n, image_kind=kind
    )


class OpenAIImages(FrontEnd):
    api = "images"
    endpoint = "images"
    native_offers = "providers with an OpenAI-compatible image API"
    consumed = ("models", "provider", "route", "transforms")  # routing fields, as chat's
    modality = "image"
    elsewhere = {"text": "POST /v1/chat/completions", "embeddings": "POST /v1/embeddings"}

    def check(self, body: Any, max_n: int) -> ChatParams:
        return check_images(body)

    def inbound(self, body: Any) -> Inbound:
        return Inbound(body, native=body, native_only="image generation")

    def response(
        self, answer_body: dict[str, Any], tr: ChatTranslator, usage: Usage, cost: Decimal
    ) -> dict[str, Any]:
        reported = answer_body.get("usage")
        out: dict[str, Any] = dict(reported) if isinstance(reported, dict) else {
            "input_tokens": 0, "output_tokens": 0, "total_tokens": 0,
        }  # fmt: skip
        out["images"] = usage.images
        # A JSON number written from the exact decimal (as chat's usage.cost), never via a float.
        out["cost"] = orjson.Fragment(money(cost).encode())
        answer_body["usage"] = out
        return answer_body


IMAGES = OpenAIImages()
