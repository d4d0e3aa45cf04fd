"""The operators' pages (admin role): users (suspend, reactivate, grant credits with a reason),
the audit log, and provider health with its incidents. They call the admin JSON routes with the
signed-in key, so a user without the admin role and scope gets the API's own 403, shown as the
page's answer."""

from __future__ import annotations

import os
import re
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from shared.web.base import checked_form, error_page, signed_in, web_page
from shared.web.pages import cursor_param, see_other
from shared.web.render import field

router = APIRouter(include_in_schema=False)
USER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# `GET /admin/audit`'s filters, passed as typed (the API says what it cannot read).
AUDIT_FILTERS = ("action", "actor", "actor_type", "target", "target_type", "since")


@router.get("/dashboard/admin/users")
@web_page
async def users(request: Request) -> Response:
    ctx = await signed_in(request)
    answer = await ctx.api("GET", "/admin/users", query={"limit": 50, "cursor": cursor_param(request)})
    if not answer.ok:
        return error_page(answer.status, answer.message)
    q = (request.query_params.get("q") or "").strip().lower()[:200]
    rows = [u for u in answer.data["data"] if q in u["email"]]
    return ctx.render(
        "admin_users.html",
        users=rows,
        page=answer.data,
        q=q,
        idempotency=os.urandom(12).hex(),  # one grant per form shown: a double submit replays
        notice=request.query_params.get("done"),
    )


def user_path(user_id: str) -> str | None:
    return f"/admin/users/{user_id}" if USER_ID.match(user_id) else None


@router.post("/dashboard/admin/users/{user_id}/credits")
@web_page
async def grant(request: Request, user_id: str) -> Response:
    ctx = await signed_in(request)
    form = await checked_form(ctx)
    path = user_path(user_id)
    if path is None:
        return error_page(404, "No such user.")
    body = {"amount": field(form, "amount"), "reason": field(form, "reason")}
    if re.fullmatch(r"[0-9a-f]{24}", field(form, "idempotency_key")):
        body["idempotency_key"] = "web-" + field(form, "idempotency_key")
    answer = await ctx.api("POST", path + "/credits", json=body)
    if not answer.ok:
        return error_page(answer.status, answer.message)
    return see_other("/dashboard/admin/users?done=credited")


@router.post("/dashboard/admin/users/{user_id}/status")
@web_page
async def set_status(request: Request, user_id: str) -> Response:
    ctx = await signed_in(request)
    form = await checked_form(ctx)
    path = user_path(user_id)
    if path is None:
        return error_page(404, "No such user.")
    answer = await ctx.api("PATCH", path, json={"status": field(form, "status")})
    if not answer.ok:
        return error_page(answer.status, answer.message)
    return see_other("/dashboard/admin/users?done=updated")


@router.get("/dashboard/admin/health")
@web_page
async def health(request: Request) -> Response:
    ctx = await signed_in(request)
    if not ctx.is_admin:
        return error_page(403, "This page is for operators (the admin role).")
    answer = await ctx.api("GET", "/v1/status")
    ready = await ctx.api("GET", "/health/ready")
    if not answer.ok:
        return error_page(answer.status, answer.message)
    return ctx.render("admin_health.html", status_data=answer.data, ready=ready.data, ready_ok=ready.ok)


@router.get("/dashboard/admin/audit")
@web_page
async def audit(request: Request) -> Response:
    ctx = await signed_in(request)
    filters = {name: (request.query_params.get(name) or "").strip()[:200] for name in AUDIT_FILTERS}
    answer = await ctx.api(
        "GET", "/admin/audit", query={**filters, "limit": 50, "cursor": cursor_param(request)}
    )
    if answer.status in (401, 403):
        return error_page(answer.status, answer.message)
    empty = {"data": [], "has_more": False, "next_cursor": None}
    more = {k: v for k, v in filters.items() if v}
    return ctx.render(
        "admin_audit.html",
        status=200 if answer.ok else answer.status,
        audit=answer.data if answer.ok else empty,
        filters=filters,
        filter_query=urlencode(more),
        error=None if answer.ok else answer.message,
        paged=bool(cursor_param(request)),
    )
