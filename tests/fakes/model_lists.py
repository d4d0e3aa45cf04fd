"""The vendors' model-list endpoints, for the fakes (what the catalog sync reads).

- OpenAI-compatible `GET /v1/models` (https://platform.openai.com/docs/api-reference/models/list):
  `{"object": "list", "data": [{"id", "object": "model", "created", "owned_by"}]}`, the vendor's
  auth header required. OpenRouter's `GET /api/v1/models` answers its richer document (the one
  the price source reads too: https://openrouter.ai/docs/api-reference/list-available-models).
- Anthropic `GET /v1/models` (https://docs.anthropic.com/en/api/models-list): `x-api-key` (or a
  bearer token) and `anthropic-version` required; `limit` 1–1000 (default 20), `after_id` /
  `before_id`; `{"data": [{"type": "model", "id", "display_name", "created_at"}], "has_more",
  "first_id", "last_id"}`.
- Gemini `GET /v1beta/models` (https://ai.google.dev/api/models#method:-models.list): a key
  (`x-goog-api-key` or `?key=`); `pageSize` (default 50, at most 1000) and `pageToken`;
  `{"models": [{"name": "models/…", "supportedGenerationMethods", "inputTokenLimit", …}],
  "nextPageToken"}` (no token on the last page).
A fake serves a list only once a test set one (`listings[...]`); `page_cap` makes the fake page
below what the caller asked for, as a vendor may.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web


def anthropic_models(
    request: web.Request, models: list[dict[str, Any]], page_cap: int | None
) -> web.Response:
    from tests.fakes.anthropic_fake import VERSIONS, anthropic_error

    auth = request.headers.get("authorization", "")
    if not request.headers.get("x-api-key") and not (auth.startswith("Bearer ") and auth[7:].strip()):
        return anthropic_error(401, "x-api-key header is required")
    version = request.headers.get("anthropic-version")
    if not version or version not in VERSIONS:
        return anthropic_error(400, "anthropic-version: header is required")
    unknown = set(request.query) - {"limit", "after_id", "before_id"}
    if unknown:
        return anthropic_error(400, f"{sorted(unknown)[0]}: Extra inputs are not permitted")
    try:
        limit = int(request.query.get("limit", "20"))
    except ValueError:
        return anthropic_error(400, "limit: Input should be a valid integer")
    if not 1 <= limit <= 1000:
        return anthropic_error(400, "limit: Input should be between 1 and 1000")
    ids = [m["id"] for m in models]
    start = 0
    if "after_id" in request.query:
        if request.query["after_id"] not in ids:
            return anthropic_error(400, "after_id: unknown model id")
        start = ids.index(request.query["after_id"]) + 1
    size = min(limit, page_cap or limit)
    page = models[start : start + size]
    return web.json_response(
        {
            "data": page,
            "has_more": start + size < len(models),
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
        }
    )


def gemini_models(request: web.Request, models: list[dict[str, Any]], page_cap: int | None) -> web.Response:
    from tests.fakes.gemini_fake import google_error

    if not (request.headers.get("x-goog-api-key") or request.query.get("key")):
        return google_error(
            403, "Method doesn't allow unregistered callers (callers without established identity)."
        )
    unknown = set(request.query) - {"pageSize", "pageToken", "key"}
    if unknown:
        return google_error(400, f'Invalid JSON payload received. Unknown name "{sorted(unknown)[0]}"')
    try:
        size = int(request.query.get("pageSize", "50"))
    except ValueError:
        return google_error(400, "Invalid value at 'page_size' (TYPE_INT32)")
    size = min(max(size, 1), 1000, page_cap or 1000)
    token = request.query.get("pageToken", "")
    if token and not (token.startswith("p") and token[1:].isdigit()):
        return google_error(400, "Invalid page token.")
    start = int(token[1:]) if token else 0
    body: dict[str, Any] = {"models": models[start : start + size]}
    if start + size < len(models):
        body["nextPageToken"] = f"p{start + size}"
    return web.json_response(body)


def openai_models(request: web.Request, document: dict[str, Any], auth_header: str) -> web.Response:
    from tests.fakes.openai_fake import openai_error

    auth = request.headers.get(auth_header, "")
    if not auth or (auth_header == "authorization" and not auth.startswith("Bearer ")):
        return openai_error(401, "You didn't provide an API key.")
    return web.json_response(document)
