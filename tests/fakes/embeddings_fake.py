"""Embeddings endpoints of the fakes: OpenAI's `POST /v1/embeddings`
(https://platform.openai.com/docs/api-reference/embeddings/create) and Gemini's
`models/{model}:batchEmbedContents` (https://ai.google.dev/api/embeddings), strict like the vendors:
unknown fields, empty inputs, a wrong `encoding_format`, `dimensions` on a model without it, and
a request whose model differs from the path's are 400s in the vendor's envelope.

Vectors are deterministic and exactly representable in float32 (k/1024), so a test can compare
the floats of one call with the base64 of another bit for bit. `base64` is OpenAI's: little-endian
float32 bytes. A scripted `Reply` answers (its `input` is the usage's prompt_tokens, a non-200
status the vendor's error).
"""

from __future__ import annotations

import asyncio
import base64
import struct
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from tests.fakes.server import Reply

if TYPE_CHECKING:
    from tests.fakes.gemini_fake import GeminiFake
    from tests.fakes.openai_fake import OpenAIFake

OPENAI_FIELDS = frozenset({"input", "model", "dimensions", "encoding_format", "user"})
# https://docs.mistral.ai/api/endpoint/embeddings: output_dimension (not dimensions), no user.
VENDOR_FIELDS = {
    "mistral": frozenset(
        {"input", "model", "output_dimension", "output_dtype", "encoding_format", "metadata"}
    )
}
# Models with a native length and whether `dimensions` may shorten it (OpenAI: only the -3 models).
DIMENSIONS: dict[str, tuple[int, bool]] = {
    "text-embedding-3-small": (1536, True),
    "text-embedding-3-large": (3072, True),
    "text-embedding-ada-002": (1536, False),
    "gemini-embedding-001": (3072, True),
}
DEFAULT_DIMENSIONS = (8, True)
GEMINI_FIELDS = frozenset({"model", "content", "taskType", "title", "outputDimensionality"})


def vector(seed: str, size: int) -> list[float]:
    """A vector that depends on the input, every value a float32 exactly."""
    base = sum(seed.encode()) % 512
    return [((base + 37 * j) % 1024 - 512) / 1024 for j in range(size)]


def _seed(item: Any) -> str:
    return item if isinstance(item, str) else ",".join(str(t) for t in item)


async def _reply(fake: Any, model: str) -> Reply:
    reply: Reply = fake.next_reply(model)
    if reply.delay:
        await asyncio.sleep(reply.delay)
    return reply


async def openai_embeddings(fake: OpenAIFake, request: web.Request) -> web.Response:
    from tests.fakes.openai_fake import openai_error

    vendor = request.match_info.get("prefix", "").strip("/").split("/")[0]
    checked = await fake._validated(request, VENDOR_FIELDS.get(vendor, OPENAI_FIELDS))
    if isinstance(checked, web.Response):
        return checked
    body, rec, _ = checked
    if "output_dimension" in body:
        body = {**body, "dimensions": body["output_dimension"]}
    raw = body.get("input")
    items = (
        [raw] if isinstance(raw, str) or (isinstance(raw, list) and raw and isinstance(raw[0], int)) else raw
    )
    if not isinstance(items, list) or not items or any(item in ("", []) for item in items):
        return openai_error(400, "'$.input' is invalid. Please check the API reference.", param="input")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        return openai_error(
            400, f"Invalid value for 'encoding_format': {encoding!r}", param="encoding_format"
        )
    size, shortens = DIMENSIONS.get(body["model"], DEFAULT_DIMENSIONS)
    dims = body.get("dimensions")
    if dims is not None:
        if not shortens:
            return openai_error(400, "This model does not support specifying dimensions.", param="dimensions")
        size = dims
    reply = await _reply(fake, body["model"])
    if reply.status != 200:
        return openai_error(reply.status, reply.error_message, retry_after=reply.retry_after)
    data = []
    for i, item in enumerate(items):
        values = vector(_seed(item), size)
        encoded: Any = (
            base64.b64encode(struct.pack(f"<{size}f", *values)).decode() if encoding == "base64" else values
        )
        data.append({"object": "embedding", "index": i, "embedding": encoded})
    rec.completed = True
    out = {
        "object": "list",
        "data": data,
        "model": body["model"],
        "usage": {"prompt_tokens": reply.input, "total_tokens": reply.input},
    }
    return web.Response(body=orjson.dumps(out), content_type="application/json")


async def gemini_batch_embed(fake: GeminiFake, request: web.Request, model: str, body: Any) -> web.Response:
    from tests.fakes.gemini_fake import _json, google_error

    def invalid(message: str) -> web.Response:
        violation = {
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"description": message}],
        }
        return google_error(400, message, details=[violation])

    if not isinstance(body, dict) or set(body) != {"requests"} or not isinstance(body["requests"], list):
        return invalid('Invalid JSON payload received. Expected exactly "requests".')
    if not body["requests"]:
        return invalid("* BatchEmbedContentsRequest.requests: at least one request is required")
    sizes = []
    for i, one in enumerate(body["requests"]):
        if not isinstance(one, dict) or set(one) - GEMINI_FIELDS:
            unknown = sorted(set(one) - GEMINI_FIELDS) if isinstance(one, dict) else ["?"]
            return invalid(f"Invalid JSON payload received. Unknown name \"{unknown[0]}\" at 'requests[{i}]'")
        if one.get("model") != f"models/{model}":
            return invalid(
                f"Model names should match. requests[{i}].model is {one.get('model')!r}, "
                f"the request's is 'models/{model}'."
            )
        parts = (one.get("content") or {}).get("parts")
        if not isinstance(parts, list) or not parts or not all(isinstance(p.get("text"), str) for p in parts):
            return invalid(f"* BatchEmbedContentsRequest.requests[{i}].content: contents must not be empty")
        sizes.append((" ".join(p["text"] for p in parts), one.get("outputDimensionality")))
    reply = await _reply(fake, model)
    if reply.status != 200:
        return google_error(reply.status, reply.error_message, retry_after=reply.retry_after)
    full = DIMENSIONS.get(model, DEFAULT_DIMENSIONS)[0]
    fake.requests[-1].completed = True
    return _json({"embeddings": [{"values": vector(text, dims or full)} for text, dims in sizes]})
