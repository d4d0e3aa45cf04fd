"""Schemas of `POST /v1/embeddings` for the OpenAPI document (SPEC §2.3): OpenAI's embeddings
request and list (https://platform.openai.com/docs/api-reference/embeddings), with the gateway's
routing fields and `usage.cost`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.openapi.base import Shape
from shared.openapi.inference import Routing


class EmbeddingsRequest(Routing):
    model: str = Field(description="An embedding model (`output_modalities` includes `embeddings`)")
    input: str | list[str] | list[int] | list[list[int]] = Field(
        description="A string, an array of strings (up to 2048), a token array or an array of them"
    )
    dimensions: int | None = Field(default=None, description="Shorter vectors, where the model supports it")
    encoding_format: Literal["float", "base64"] | None = Field(
        default=None, description="base64: little-endian float32 bytes"
    )
    user: str | None = None


class Embedding(Shape):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingsUsage(Shape):
    prompt_tokens: int
    total_tokens: int
    cost: float = Field(description="USD charged for the request")
    estimated: bool | None = Field(default=None, description="True when the upstream reported no usage")


class EmbeddingList(Shape):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingsUsage
