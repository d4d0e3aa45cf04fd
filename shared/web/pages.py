"""The user's pages: overview, API keys, credits (SPEC §5).

Each page reads and writes through the JSON API (`shared.web.gateway`) with the signed-in key;
what it shows is what `GET /v1/...` answers to a script holding that key.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from shared.web import gateway, spend
from shared.web.base import (
    Ctx,
    Leave,
    checked_form,
    error_page,
    signed_in,
    stripe_configured,
    web_page,
)
from shared.web.render import PAGE_HEADERS, field, lines, usd

router = APIRouter(include_in_schema=False)
KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
CURSOR = re.compile(r"^[A-Za-z0-9._:=-]{1,64}$")
SCOPES = ("inference", "read", "keys", "billing", "admin")
# credit_transactions.type (infra/migrations/20261129000000_init.sql)
LEDGER_TYPES = (
    "grant",
    "adjustment",
    "usage",
    "purchase",
    "refund",
    "allowance",
    "trial",
    "coupon",
    "referral",
)
LEDGER_PAGE = 20
LEDGER_SCAN = 10  # pages of 100 read for one filtered page view
SPEND_DAYS = 30  # the keys page's spend column
RATE_FIELDS = (
    "requests_per_minute",
    "requests_per_day",
    "tokens_per_minute",
    "tokens_per_day",
    "concurrency",
)


def cursor_param(request: Request) -> str | None:
    value = request.query_params.get("cursor")
    return value if value and CURSOR.match(value) else None


def see_other(target: str) -> Response:
    return RedirectResponse(target, status_code=303, headers=dict(PAGE_HEADERS))


# --- overview ----------------------------------------------------------------------------------


def spend_chart(daily: list[dict[str, Any]], days: int) -> dict[str, Any]:
    """uPlot's data for daily spend by model over the last `days` days (zeros where none)."""
    today = datetime.now(UTC).date()
    dates = [(today - timedelta(days=days - 1 - i)).isoformat() for i in range(days)]
    by_model: dict[str, dict[str, Decimal]] = defaultdict(dict)
    for row in daily:
        by_model[row["model"]][row["date"]] = Decimal(row["cost"])
    return {
        "x": [int(datetime.fromisoformat(d).replace(tzinfo=UTC).timestamp()) for d in dates],
        "series": [
            {"label": model, "values": [float(costs.get(d, 0)) for d in dates]}  # a picture, not a sum
            for model, costs in sorted(by_model.items())
        ],
    }


def totals(daily: list[dict[str, Any]]) -> dict[str, Any]:
    today = datetime.now(UTC).date().isoformat()
    month = today[:7]
    return {
        "today": sum((Decimal(r["cost"]) for r in daily if r["date"] == today), Decimal(0)),
        "month": sum((Decimal(r["cost"]) for r in daily if r["date"].startswith(month)), Decimal(0)),
        "requests": sum(int(r["requests"]) for r in daily),
    }


@router.get("/dashboard")
@web_page
async def overview(request: Request) -> Response:
    ctx = await signed_in(request)
    credits = await ctx.api("GET", "/v1/credits", query={"limit": 5})
    usage = await ctx.api("GET", "/v1/usage", query={"days": 31, "limit": 1})
    daily = usage.data["daily"] if usage.ok else []
    return ctx.render(
        "overview.html",
        credits=credits.data if credits.ok else None,
        credits_error=None if credits.ok else credits.message,
        totals=totals(daily),
        chart=spend_chart(daily, 30),
        usage_error=None if usage.ok else usage.message,
    )


# --- keys ----------------------------------------------------------------------------------------


def key_body(form: dict[str, list[str]]) -> dict[str, Any]:
    """The JSON of `POST /v1/keys` from the form: blanks left out (the API's defaults apply)."""
    body: dict[str, Any] = {"name": field(form, "name") or "default"}
    if field(form, "environment") in ("live", "test"):
        body["environment"] = field(form, "environment")
    scopes = [s for s in form.get("scopes", []) if s in SCOPES]
    if scopes:
        body["scopes"] = scopes
    if field(form, "expires_at"):
        body["expires_at"] = field(form, "expires_at")  # the API says what it cannot read
    for name in ("ip_allowlist", "allowed_origins", "allowed_models"):
        if lines(form, name):
            body[name] = lines(form, name)
    spend = {p: field(form, f"spend_{p}") for p in ("day", "month", "total") if field(form, f"spend_{p}")}
    if spend:
        body["spend_limits"] = spend
    rates: dict[str, Any] = {}
    for name in RATE_FIELDS:
        text = field(form, name)
        if text:
            rates[name] = int(text) if text.isdigit() else text  # not a number: the API's 400 names it
    if rates:
        body["rate_limits"] = rates
    if field(form, "store_history") == "true":
        body["store_history"] = True
    return body


async def keys_page(ctx: Ctx, status: int = 200, **extra: Any) -> Response:
    listing = await ctx.api("GET", "/v1/keys")
    if not listing.ok and not extra.get("error"):
        extra["error"] = listing.message
    keys = listing.data["data"] if listing.ok else []
    by_key = await spend.summary(ctx, SPEND_DAYS, "key")
    spent = {row["name"]: row for row in spend.totals_by(by_key.rows, "key_id")}
    return ctx.render(
        "keys.html",
        spent=spent,
        spend_days=SPEND_DAYS,
        status=status if listing.ok else listing.status,
        keys=keys,
        session_key_last4=ctx.key[-4:],
        scopes=SCOPES,
        rate_fields=RATE_FIELDS,
        **{"new_key": None, "error": None, "notice": None, "rotated": False, **extra},
    )


@router.get("/dashboard/keys")
@web_page
async def keys(request: Request) -> Response:
    ctx = await signed_in(request)
    done = request.query_params.get("done")
    notice = {"revoked": "The key was revoked.", "updated": "The key was updated."}.get(done or "")
    return await keys_page(ctx, notice=notice)


@router.post("/dashboard/keys")
@web_page
async def create_key(request: Request) -> Response:
    ctx = await signed_in(request)
    form = await checked_form(ctx)
    answer = await ctx.api("POST", "/v1/keys", json=key_body(form))
    if not answer.ok:
        return await keys_page(ctx, status=answer.status, error=answer.message)
    return await keys_page(ctx, status=201, new_key=answer.data)


def key_path(key_id: str) -> str:
    if not KEY_ID.match(key_id):
        raise Leave(error_page(404, "No such key."))
    return f"/v1/keys/{key_id}"


@router.post("/dashboard/keys/{key_id}/rotate")
@web_page
async def rotate_key(request: Request, key_id: str) -> Response:
    ctx = await signed_in(request)
    form = await checked_form(ctx)
    grace = field(form, "grace_seconds") or "0"
    body = {"grace_seconds": int(grace) if grace.isdigit() else grace}
    answer = await ctx.api("POST", key_path(key_id) + "/rotate", json=body)
    if not answer.ok:
        return await keys_page(ctx, status=answer.status, error=answer.message)
    return await keys_page(ctx, new_key=answer.data, rotated=True)


@router.post("/dashboard/keys/{key_id}/revoke")
@web_page
async def revoke_key(request: Request, key_id: str) -> Response:
    ctx = await signed_in(request)
    await checked_form(ctx)
    answer = await ctx.api("DELETE", key_path(key_id))
    if not answer.ok:
        return await keys_page(ctx, status=answer.status, error=answer.message)
    return see_other("/dashboard/keys?done=revoked")


@router.post("/dashboard/keys/{key_id}/disabled")
@web_page
async def toggle_key(request: Request, key_id: str) -> Response:
    ctx = await signed_in(request)
    form = await checked_form(ctx)
    answer = await ctx.api("PATCH", key_path(key_id), json={"disabled": field(form, "disabled") == "true"})
    if not answer.ok:
        return await keys_page(ctx, status=answer.status, error=answer.message)
    return see_other("/dashboard/keys?done=updated")


@router.post("/dashboard/keys/{key_id}/history")
@web_page
async def toggle_history(request: Request, key_id: str) -> Response:
    """A key's chat history on or off (`PATCH /v1/keys/{id}` with `store_history`)."""
    ctx = await signed_in(request)
    form = await checked_form(ctx)
    body = {"store_history": field(form, "store_history") == "true"}
    answer = await ctx.api("PATCH", key_path(key_id), json=body)
    if not answer.ok:
        return error_page(answer.status, answer.message)
    return see_other("/dashboard/settings?done=history")


# --- credits -------------------------------------------------------------------------------------


async def ledger(ctx: Ctx, kind: str, cursor: str | None) -> tuple[gateway.Answer, dict[str, Any]]:
    """A page of the ledger (`GET /v1/credits`), of one type when `kind` is set: the API pages
    every type, so older pages are read (bounded) until a page of that type is found; "Older"
    then continues from the last row read."""
    if not kind:
        answer = await ctx.api("GET", "/v1/credits", query={"limit": LEDGER_PAGE, "cursor": cursor})
        return answer, answer.data if answer.ok else {}
    rows: list[dict[str, Any]] = []
    for _ in range(LEDGER_SCAN):
        answer = await ctx.api("GET", "/v1/credits", query={"limit": 100, "cursor": cursor})
        if not answer.ok:
            return answer, {}
        page = answer.data["data"]
        for i, row in enumerate(page):
            cursor = row["id"]
            if row["type"] == kind:
                rows.append(row)
                if len(rows) == LEDGER_PAGE:
                    more = i + 1 < len(page) or answer.data["has_more"]
                    return answer, {**answer.data, "data": rows, "has_more": more, "next_cursor": cursor}
        if not answer.data["has_more"]:
            return answer, {**answer.data, "data": rows, "has_more": False, "next_cursor": None}
    # Scanned as far as one page view may: "Older" continues the scan.
    return answer, {**answer.data, "data": rows, "has_more": True, "next_cursor": cursor}


async def credits_page(ctx: Ctx, status: int = 200, **extra: Any) -> Response:
    request = ctx.request
    kind = request.query_params.get("type") or ""
    kind = kind if kind in LEDGER_TYPES else ""
    answer, data = await ledger(ctx, kind, cursor_param(request))
    return ctx.render(
        "credits.html",
        status=answer.status if not answer.ok else status,
        credits=data if answer.ok else None,
        rows=data.get("data", []),
        kind=kind,
        kinds=LEDGER_TYPES,
        paged=bool(cursor_param(request)),
        **{"error": None if answer.ok else answer.message, "notice": None, **extra},
    )


@router.get("/dashboard/credits")
@web_page
async def credits(request: Request) -> Response:
    return await credits_page(await signed_in(request))


@router.post("/dashboard/credits/redeem")
@web_page
async def redeem(request: Request) -> Response:
    """A coupon through the payments route (`POST /v1/billing/redeem`): credits at once, or a
    bonus on the next top-up; the API's refusal (unknown, expired, used) is the page's message."""
    ctx = await signed_in(request)
    form = await checked_form(ctx)
    answer = await ctx.api("POST", "/v1/billing/redeem", json={"code": field(form, "code")})
    if not answer.ok:
        return await credits_page(ctx, status=answer.status, error=answer.message)
    done = answer.data
    if done.get("kind") == "credits":
        notice = f"Coupon {done['code']} redeemed: {usd(done['credits'], 2)} added to your balance."
    else:
        notice = f"Coupon {done['code']} redeemed: {done['bonus_percent']}% extra on your next top-up."
    return await credits_page(ctx, notice=notice)


@router.post("/dashboard/credits/top-up")
@web_page
async def top_up(request: Request) -> Response:
    """Stripe Checkout through the payments route (`POST /v1/billing/checkout`), where configured."""
    ctx = await signed_in(request)
    form = await checked_form(ctx)
    if not stripe_configured(request):
        return error_page(404, "Top-up is not available on this deployment.")
    answer = await ctx.api("POST", "/v1/billing/checkout", json={"amount_usd": field(form, "amount")})
    url = answer.data.get("url") if answer.ok and isinstance(answer.data, dict) else None
    if not isinstance(url, str) or not url.startswith("https://"):
        message = answer.message if not answer.ok else "The payment page could not be opened."
        return error_page(answer.status if not answer.ok else 502, message)
    return RedirectResponse(url, status_code=303, headers=dict(PAGE_HEADERS))
