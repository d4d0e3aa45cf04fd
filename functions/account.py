"""The account function (SPEC §5): the caller's own profile, API keys, credits and usage.

Every route needs a user key with the route's scope: `read` for the profile, credits and usage,
`keys` for key management. The work is in `shared.views.self_service` and `.usage`. The deployed
function also serves the BYOK routes of `functions.provider_keys` (`/v1/provider-keys`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from functions import provider_keys
from shared.accounts.requests import KeyCreate, KeyRotate, KeyUpdate, parse_body
from shared.app import function_app, runtime_of
from shared.auth import KeyManager, Reader
from shared.observe.lambda_handler import lambda_handler
from shared.openapi import documented
from shared.views import analytics, self_service, usage

# The BYOK routes (`/v1/provider-keys`) belong to this function: its router starts with them.
router = APIRouter(routes=list(provider_keys.router.routes))
# Annotated, not shared `Query(...)` defaults: FastAPI copies the former per parameter but writes
# each parameter's alias into the latter, so one shared default would read the wrong name.
Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(min_length=1, max_length=64)]
Day = Annotated[str | None, Query(min_length=1, max_length=10)]  # YYYY-MM-DD, checked by the view
Word = Annotated[str | None, Query(min_length=1, max_length=64)]


@router.get("/v1/me")
@documented("Your profile and balance (scope read)", response="accounts.Me", errors=(401, 403), tag="account")
async def me(request: Request, principal: Reader) -> dict[str, Any]:
    return await self_service.me(runtime_of(request), principal)


@router.get("/v1/keys")
@documented(
    "List your API keys, without secrets (scope keys)",
    response="accounts.ApiKeyList",
    errors=(401, 403),
    tag="keys",
)
async def list_keys(request: Request, principal: KeyManager) -> dict[str, Any]:
    return await self_service.list_keys(runtime_of(request), principal)


@router.post("/v1/keys")
@documented(
    "Create an API key; without scopes it gets yours (scope keys)",
    request=KeyCreate,
    response="accounts.NewApiKey",
    errors=(400, 401, 403),
    tag="keys",
)
async def create_key(request: Request, principal: KeyManager) -> dict[str, Any]:
    body = await parse_body(request, KeyCreate)
    return await self_service.create_key(runtime_of(request), principal, body)


@router.get("/v1/keys/{key_id}")
@documented("One of your API keys", response="accounts.ApiKey", errors=(401, 403, 404), tag="keys")
async def get_key(request: Request, principal: KeyManager, key_id: str) -> dict[str, Any]:
    return await self_service.get_key(runtime_of(request), principal, key_id)


@router.patch("/v1/keys/{key_id}")
@documented(
    "Change a key (left out: kept; null: cleared)",
    request=KeyUpdate,
    response="accounts.ApiKey",
    errors=(400, 401, 403, 404),
    tag="keys",
)
async def update_key(request: Request, principal: KeyManager, key_id: str) -> dict[str, Any]:
    body = await parse_body(request, KeyUpdate)
    return await self_service.update_key(runtime_of(request), principal, key_id, body)


@router.post("/v1/keys/{key_id}/rotate")
@documented(
    "Rotate a key: a new secret; the old one is revoked after the grace period",
    request=KeyRotate,
    response="accounts.NewApiKey",
    errors=(400, 401, 403, 404, 409),
    tag="keys",
)
async def rotate_key(request: Request, principal: KeyManager, key_id: str) -> dict[str, Any]:
    body = await parse_body(request, KeyRotate)
    return await self_service.rotate_key(runtime_of(request), principal, key_id, body)


@router.delete("/v1/keys/{key_id}")
@documented(
    "Revoke a key (the row stays for the ledger)",
    response="accounts.ApiKey",
    errors=(401, 403, 404),
    tag="keys",
)
async def revoke_key(request: Request, principal: KeyManager, key_id: str) -> dict[str, Any]:
    return await self_service.revoke_key(runtime_of(request), principal, key_id)


@router.get("/v1/credits")
@documented(
    "Balance, holds and the ledger, newest first (scope read)",
    response="accounts.CreditsPage",
    errors=(400, 401, 403),
    tag="account",
)
async def credits(
    request: Request, principal: Reader, limit: Limit = 20, cursor: Cursor = None
) -> dict[str, Any]:
    assert principal.user_id is not None
    return await usage.credits_page(runtime_of(request), principal.user_id, limit=limit, cursor=cursor)


@router.get("/v1/usage")
@documented(
    "Per-request records and daily totals per model (scope read)",
    response="accounts.UsagePage",
    errors=(400, 401, 403),
    tag="account",
)
async def usage_report(
    request: Request,
    principal: Reader,
    days: Annotated[int, Query(ge=1, le=usage.MAX_DAYS)] = 30,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> dict[str, Any]:
    assert principal.user_id is not None
    return await usage.usage_page(
        runtime_of(request), principal.user_id, days=days, limit=limit, cursor=cursor
    )


@router.get("/v1/usage/summary")
@documented(
    "Usage per day or hour by key, model and provider, from the rollups; CSV with format=csv (scope read)",
    response="analytics.UsageSummary",
    errors=(400, 401, 403),
    tag="account",
)
async def usage_summary(
    request: Request,
    principal: Reader,
    start: Day = None,
    end: Day = None,
    granularity: Word = "day",
    group_by: Word = None,
    format: Word = None,
) -> Any:
    assert principal.user_id is not None
    return await analytics.summary_answer(
        request,
        runtime_of(request),
        start=start,
        end=end,
        granularity=granularity,
        group_by=group_by,
        fmt=format,
        allowed=analytics.USER_GROUPS,
        user_id=principal.user_id,
    )


@router.get("/v1/activity")
@documented(
    "Your activity: requests, spend, top models, use and last use per key (scope read)",
    response="analytics.Activity",
    errors=(400, 401, 403),
    tag="account",
)
async def activity(
    request: Request, principal: Reader, days: Annotated[int, Query(ge=1, le=analytics.MAX_DAYS)] = 30
) -> dict[str, Any]:
    assert principal.user_id is not None
    return await analytics.activity(runtime_of(request), principal.user_id, days)


app = function_app([router], title="Gatewayz account")
handler = lambda_handler(app, "account")
