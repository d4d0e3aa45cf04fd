"""The admin function (SPEC §5, §8): users, plans, credit grants and adjustments, the audit log,
the catalog sync's diff and price pins.

Every route needs the bootstrap `GATEWAYZ_ADMIN_KEY` or an admin user's key with the `admin`
scope. The work is in `shared.views.admin`; each change is audited with its actor and IP.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from shared.accounts.requests import CreditChange, UserCreate, UserUpdate, parse_body, time_param
from shared.app import function_app, runtime_of
from shared.auth import Admin
from shared.observe.lambda_handler import lambda_handler
from shared.openapi import documented
from shared.views import admin, analytics, catalog_admin

router = APIRouter()
# Annotated, not shared `Query(...)` defaults: FastAPI copies the former per parameter but writes
# each parameter's alias into the latter, so one shared default would read the wrong name.
Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(min_length=1, max_length=64)]
Filter = Annotated[str | None, Query(min_length=1, max_length=200)]


@router.post("/admin/users")
@documented(
    "Create a user with credits and a first key",
    request=UserCreate,
    response="accounts.UserCreated",
    errors=(400, 401, 403, 409),
    tag="admin",
)
async def create_user(request: Request, principal: Admin) -> dict[str, Any]:
    body = await parse_body(request, UserCreate)
    return await admin.create_user(runtime_of(request), principal, body)


@router.get("/admin/users")
@documented("List users", response="accounts.UserList", errors=(400, 401, 403), tag="admin")
async def list_users(
    request: Request, principal: Admin, limit: Limit = 20, cursor: Cursor = None
) -> dict[str, Any]:
    return await admin.list_users(runtime_of(request), limit=limit, cursor=cursor)


@router.get("/admin/users/{user_id}")
@documented("One user with their keys", response="accounts.UserWithKeys", errors=(401, 403, 404), tag="admin")
async def get_user(request: Request, principal: Admin, user_id: str) -> dict[str, Any]:
    return await admin.get_user(runtime_of(request), user_id)


@router.patch("/admin/users/{user_id}")
@documented(
    "Suspend or reactivate a user, change their plan or role",
    request=UserUpdate,
    response="accounts.User",
    errors=(400, 401, 403, 404),
    tag="admin",
)
async def update_user(request: Request, principal: Admin, user_id: str) -> dict[str, Any]:
    body = await parse_body(request, UserUpdate)
    return await admin.update_user(runtime_of(request), principal, user_id, body)


@router.post("/admin/users/{user_id}/credits")
@documented(
    "Grant (amount > 0) or claw back (< 0) credits, idempotent with a key",
    request=CreditChange,
    response="accounts.CreditTransaction",
    errors=(400, 401, 403, 404, 409),
    tag="admin",
)
async def change_credits(request: Request, principal: Admin, user_id: str) -> dict[str, Any]:
    body = await parse_body(request, CreditChange)
    return await admin.change_credits(runtime_of(request), principal, user_id, body)


@router.get("/admin/audit")
@documented("The audit log, newest first", response="accounts.AuditPage", errors=(400, 401, 403), tag="admin")
async def audit(
    request: Request,
    principal: Admin,
    actor: Filter = None,
    actor_type: Filter = None,
    action: Filter = None,
    target: Filter = None,
    target_type: Filter = None,
    since: Annotated[str | None, Query(max_length=64)] = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> dict[str, Any]:
    filters = {
        "actor": actor,
        "actor_type": actor_type,
        "action": action,
        "target": target,
        "target_type": target_type,
        "since": time_param(since, "since"),
        "cursor": cursor,
    }
    return await admin.audit_page(runtime_of(request), filters, limit=limit)


@router.get("/admin/catalog/diff")
@documented(
    "The last catalog sync's diff (models added, removed, re-priced; changes not applied to pinned "
    "models) and the pinned models",
    response="catalog.CatalogSyncReport",
    errors=(401, 403),
    tag="admin",
)
async def catalog_diff(request: Request, principal: Admin) -> dict[str, Any]:
    return await catalog_admin.diff(runtime_of(request))


@router.post("/admin/catalog/pins")
@documented(
    "Pin (or unpin) a model's prices: catalog syncs report its upstream price changes, never apply them",
    request=catalog_admin.CatalogPin,
    response="catalog.CatalogPinResult",
    errors=(400, 401, 403, 404),
    tag="admin",
)
async def catalog_pin(request: Request, principal: Admin) -> dict[str, Any]:
    body = await parse_body(request, catalog_admin.CatalogPin)
    return await catalog_admin.pin(runtime_of(request), principal, body)


@router.get("/admin/analytics")
@documented(
    "Usage across users, by day or hour x user, key, model, provider (the summary's shape; CSV with format=csv)",
    response="analytics.UsageSummary",
    errors=(400, 401, 403),
    tag="admin",
)
async def usage_analytics(
    request: Request,
    principal: Admin,
    start: Filter = None,
    end: Filter = None,
    granularity: Filter = "day",
    group_by: Filter = None,
    user_id: Filter = None,
    format: Filter = None,
) -> Any:
    return await analytics.summary_answer(
        request,
        runtime_of(request),
        start=start,
        end=end,
        granularity=granularity,
        group_by=group_by,
        fmt=format,
        allowed=analytics.ADMIN_GROUPS,
        user_id=user_id,
    )


app = function_app([router], title="Gatewayz admin")
handler = lambda_handler(app, "admin")
