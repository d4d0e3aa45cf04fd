"""OpenAI's `POST /v1/images/generations` for the OpenAI fake
(https://platform.openai.com/docs/api-reference/images/create), strict per model as OpenAI is:

- `gpt-image-1`: no `response_format` or `style` (400 "Unknown parameter"), quality
  low/medium/high/auto, sizes 1024x1024, 1536x1024, 1024x1536, auto; always `b64_json`, with
  token `usage` (input with its text/image split, output: the image tokens of OpenAI's table for
  the quality and size, times n).
- `dall-e-3`: n=1 only, quality standard/hd, style vivid/natural, sizes 1024x1024, 1792x1024,
  1024x1792, `response_format` url (the default) or b64_json, a `revised_prompt`, no usage.
- any other model (OpenAI-compatible hosts): the common fields, n images, url or b64_json.

The image is a tiny PNG; a URL points at the fake itself (nothing is fetched by the gateway).
A scripted `Reply` with a non-200 status answers with OpenAI's error instead.
"""

from __future__ import annotations

import asyncio
import base64
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

if TYPE_CHECKING:
    from tests.fakes.openai_fake import OpenAIFake

# A 1x1 transparent PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
COMMON = frozenset({"prompt", "model", "n", "size", "response_format", "user"})
GPT_IMAGE_FIELDS = {
    "prompt", "model", "n", "size", "quality", "background", "output_format", "output_compression",
    "moderation", "user", "partial_images", "stream",
}  # fmt: skip
FIELDS = {"gpt-image-1": frozenset(GPT_IMAGE_FIELDS), "dall-e-3": COMMON | {"quality", "style"}}
SIZES = {
    "gpt-image-1": ("1024x1024", "1536x1024", "1024x1536", "auto"),
    "dall-e-3": ("1024x1024", "1792x1024", "1024x1792"),
}
QUALITIES = {"gpt-image-1": ("low", "medium", "high", "auto"), "dall-e-3": ("standard", "hd")}
# https://platform.openai.com/docs/guides/image-generation#cost-and-latency: output tokens an image.
GPT_IMAGE_TOKENS = {
    ("low", "1024x1024"): 272, ("low", "1024x1536"): 408, ("low", "1536x1024"): 400,
    ("medium", "1024x1024"): 1056, ("medium", "1024x1536"): 1584, ("medium", "1536x1024"): 1568,
    ("high", "1024x1024"): 4160, ("high", "1024x1536"): 6240, ("high", "1536x1024"): 6208,
}  # fmt: skip


def image_tokens(quality: str, size: str) -> int:
    quality = "medium" if quality == "auto" else quality
    size = "1024x1024" if size == "auto" else size
    return GPT_IMAGE_TOKENS[(quality, size)]


async def images_generations(fake: OpenAIFake, request: web.Request) -> web.Response:
    from tests.fakes.openai_fake import openai_error

    model = await _peek_model(request)
    checked = await fake._validated(request, FIELDS.get(model, COMMON))
    if isinstance(checked, web.Response):
        return checked
    body, rec, _ = checked
    if not isinstance(body.get("prompt"), str) or not body["prompt"]:
        return openai_error(400, "Missing required parameter: 'prompt'.", param="prompt")
    n = body.get("n", 1)
    if model == "dall-e-3" and n != 1:
        return openai_error(
            400, "Invalid 'n': integer above maximum value. Expected a value <= 1.", param="n"
        )
    size = body.get("size", "1024x1024" if model != "gpt-image-1" else "auto")
    if model in SIZES and size not in SIZES[model]:
        return openai_error(
            400, f"Invalid value: '{size}'. Supported values are: {SIZES[model]}.", param="size"
        )
    quality = body.get("quality", "standard" if model == "dall-e-3" else "auto")
    if model in QUALITIES and quality not in QUALITIES[model]:
        return openai_error(400, f"Invalid value: '{quality}'.", param="quality")
    reply = fake.next_reply(model)
    if reply.delay:
        await asyncio.sleep(reply.delay)
    if reply.status != 200:
        return openai_error(reply.status, reply.error_message, retry_after=reply.retry_after)
    b64 = model == "gpt-image-1" or body.get("response_format") == "b64_json"
    data: list[dict[str, Any]] = []
    for i in range(n):
        image: dict[str, Any] = (
            {"b64_json": base64.b64encode(PNG).decode()} if b64 else {"url": f"{fake.url}/images/img-{i}.png"}
        )
        if model == "dall-e-3":
            image["revised_prompt"] = f"A detailed rendering of: {body['prompt']}"
        data.append(image)
    out: dict[str, Any] = {"created": 1_760_000_000, "data": data}
    if model == "gpt-image-1":
        output = image_tokens(quality, size) * n
        out.update(background="opaque", output_format="png", quality=quality, size=size)
        out["usage"] = {
            "input_tokens": reply.input,
            "input_tokens_details": {"text_tokens": reply.input, "image_tokens": 0},
            "output_tokens": output,
            "total_tokens": reply.input + output,
        }
    rec.completed = True
    return web.Response(body=orjson.dumps(out), content_type="application/json")


async def _peek_model(request: web.Request) -> str:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return ""
    return body.get("model", "") if isinstance(body, dict) and isinstance(body.get("model"), str) else ""
