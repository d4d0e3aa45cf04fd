"""Schemas of `POST /v1/images/generations` for the OpenAPI document (SPEC §2.3): OpenAI's request
and images response (https://platform.openai.com/docs/api-reference/images), with the gateway's
routing fields and `usage.cost`. Fields pass through to the upstream as written."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.openapi.base import Shape
from shared.openapi.inference import Routing


class ImageRequest(Routing):
    model: str = Field(description="An image model (`output_modalities` includes `image`)")
    prompt: str
    n: int | None = Field(default=None, description="1 to 10 images; the reservation covers each")
    size: str | None = None
    quality: str | None = None
    style: str | None = None
    response_format: Literal["url", "b64_json"] | None = None
    background: str | None = None
    output_format: str | None = None
    output_compression: int | None = None
    moderation: str | None = None
    user: str | None = None


class Image(Shape):
    b64_json: str | None = None
    url: str | None = Field(default=None, description="The upstream's own URL: the gateway stores no image")
    revised_prompt: str | None = None


class ImagesUsage(Shape):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    images: int
    cost: float = Field(description="USD charged for the request")


class ImagesResponse(Shape):
    created: int
    data: list[Image]
    usage: ImagesUsage
