"""The OpenAPI document of every app (`/openapi.json`, `/docs`): every route, FastAPI's and the
plain fast ones, with its request and response schemas.

Why the document is completed here: Gatewayz routes read their bodies themselves (strict models
parsed in the route; the inference bodies read raw, for speed), so FastAPI cannot see them in a
signature, and the inference routes are plain Starlette routes that FastAPI does not document at
all. Each endpoint carries a `Doc` instead — `documented(...)` on a FastAPI route, `fast_route(...)`
to register a plain one — and shared.openapi.document merges them into FastAPI's own document,
once, on the first request for it. Nothing here runs per request, and nothing of it at start-up:
a `Doc` names its schemas (`"accounts.Me"`: `Me` in shared/openapi/accounts.py), and those
modules of document-only pydantic models (~60 ms of imports) load with the first document.

A new plain route (`/v1/messages`, …) is one `@fast_route(router, path, ...)`: it is called straight
from the middleware like the others (shared.app.direct_routes) and documented like them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import APIRouter
from pydantic import BaseModel

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])
# A schema: a model class, or "module.Name" of shared/openapi/<module>.py (loaded with the document).
Schema = type[BaseModel] | str

INFERENCE_HEADERS = (
    "x-request-id",
    "x-gatewayz-provider",
    "x-gatewayz-model",
    "x-gatewayz-cost",
    "x-gatewayz-attempts",
    "x-gatewayz-session-id",
    "x-gatewayz-overhead-ms",
    "x-gatewayz-dropped-params",
    "x-gatewayz-adjusted-params",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
)


@dataclass(frozen=True, slots=True)
class Doc:
    summary: str
    response: Schema
    request: Schema | None = None
    stream: Schema | None = None  # the event of a `stream: true` answer (SSE)
    errors: tuple[int, ...] = ()
    headers: tuple[str, ...] = ("x-request-id",)
    tag: str = ""
    error: Schema = "base.ErrorEnvelope"  # the envelope of this route's errors


def documented(
    summary: str,
    *,
    response: Schema,
    request: Schema | None = None,
    stream: Schema | None = None,
    errors: Sequence[int] = (),
    headers: Sequence[str] = ("x-request-id",),
    tag: str = "",
    error: Schema = "base.ErrorEnvelope",
) -> Callable[[Endpoint], Endpoint]:
    """Attach the route's `Doc` to its endpoint (for routes whose schemas FastAPI cannot see)."""
    doc = Doc(summary, response, request, stream, tuple(errors), tuple(headers), tag, error)

    def mark(endpoint: Endpoint) -> Endpoint:
        endpoint.openapi_doc = doc  # type: ignore[attr-defined]
        return endpoint

    return mark


def fast_route(
    router: APIRouter,
    path: str,
    *,
    methods: Sequence[str],
    summary: str,
    response: Schema,
    request: Schema | None = None,
    stream: Schema | None = None,
    errors: Sequence[int] = (),
    headers: Sequence[str] = INFERENCE_HEADERS,
    tag: str = "",
    error: Schema = "base.ErrorEnvelope",
) -> Callable[[Endpoint], Endpoint]:
    """Register a plain fast route with its OpenAPI description: a Starlette `Route` with a fixed
    path, which the middleware calls directly (no FastAPI validation, dependency solving or
    routing on the hot path), documented in `/openapi.json` like any other."""

    def register(endpoint: Endpoint) -> Endpoint:
        documented(
            summary,
            response=response,
            request=request,
            stream=stream,
            errors=errors,
            headers=headers,
            tag=tag,
            error=error,
        )(endpoint)
        router.add_route(path, endpoint, methods=list(methods))
        return endpoint

    return register


def doc_of(route: Any) -> Doc | None:
    doc = getattr(getattr(route, "endpoint", None), "openapi_doc", None)
    return doc if isinstance(doc, Doc) else None
