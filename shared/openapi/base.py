"""The base of the document-only schemas, and the error envelope every OpenAI-shaped route uses."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Shape(BaseModel):
    """A schema for the OpenAPI document only: it never validates a request or an answer."""

    model_config = ConfigDict(defer_build=True, extra="allow")


class ErrorDetail(Shape):
    message: str
    type: str
    param: str | None = None
    code: str | None = None
    request_id: str


class ErrorEnvelope(Shape):
    """Every error of the OpenAI-shaped routes (SPEC §10)."""

    error: ErrorDetail
