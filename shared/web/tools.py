"""The user's other pages: usage (and its CSV), the models catalog, the playground, settings.

The playground streams through the real `POST /v1/chat/completions` (shared.web.gateway.stream):
the answer, its cost and its attempts are the gateway's own, billed like any other request.
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from decimal import Decimal
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from shared.web import gateway, spend
from shared.web.base import Leave, checked_form, error_page, signed_in, web_page
from shared.web.pages import cursor_param, see_other, spend_chart
from shared.web.render import PAGE_HEADERS, field

router = APIRouter(include_in_schema=False)
PROVIDER_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
CSV_PAGES = 50  # 5,000 requests per export: the API's own page size times this
ROLES = ("system", "user", "assistant")
PASSED_HEADERS = (
    "x-gatewayz-attempts",
    "x-gatewayz-model",
    "x-gatewayz-provider",
    "x-request-id",
    "retry-after",
)


def days_param(request: Request) -> int:
    text = request.query_params.get("days", "30")
    return min(max(int(text), 1), 90) if text.isdigit() else 30


# --- usage ---------------------------------------------------------------------------------------


def breakdown(daily: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Totals per model over the period, most expensive first."""
    rows: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"requests": 0, "errors": 0, "input_tokens": 0, "output_tokens": 0, "cost": Decimal(0)}
    )
    for row in daily:
        total = rows[row["model"]]
        for name in ("requests", "errors", "input_tokens", "output_tokens"):
            total[name] += int(row[name])
        total["cost"] += Decimal(row["cost"])
    return sorted(({"model": m, **t} for m, t in rows.items()), key=lambda r: (-r["cost"], r["model"]))


@router.get("/dashboard/usage")
@web_page
async def usage(request: Request) -> Response:
    ctx = await signed_in(request)
    days = days_param(request)
    answer = await ctx.api(
        "GET", "/v1/usage", query={"days": days, "limit": 50, "cursor": cursor_param(request)}
    )
    empty: dict[str, Any] = {"data": [], "daily": [], "has_more": False, "next_cursor": None}
    data: dict[str, Any] = answer.data if answer.ok else empty
    by_provider = await spend.summary(ctx, days, "provider")
    by_key = await spend.summary(ctx, days, "key")
    names = await spend.key_names(ctx)
    return ctx.render(
        "usage.html",
        status=200 if answer.ok else answer.status,
        days=days,
        usage=data,
        models=breakdown(data["daily"]),
        chart=spend_chart(data["daily"], days),
        providers=spend.totals_by(by_provider.rows, "provider"),
        provider_chart=spend_chart(spend.daily_by(by_provider.rows, "provider"), days),
        keys=[
            {**r, "label": names.get(r["name"], r["name"])} for r in spend.totals_by(by_key.rows, "key_id")
        ],
        key_chart=spend_chart(spend.daily_by(by_key.rows, "key_id", names), days),
        error=(None if answer.ok else answer.message) or by_provider.error or by_key.error,
        paged=bool(cursor_param(request)),
    )


def csv_cell(value: Any) -> str:
    """A CSV cell a spreadsheet will not run as a formula (a model id is the caller's text)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


CSV_COLUMNS = (
    "created_at", "request_id", "key_id", "model", "provider", "endpoint", "status", "http_status",
    "input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens",
    "cost", "estimated", "byok", "latency_ms",
)  # fmt: skip


@router.get("/dashboard/usage.csv")
@web_page
async def usage_csv(request: Request) -> Response:
    """The period's requests (the `days` the page shows, not older ones), newest first."""
    ctx = await signed_in(request)
    days = days_param(request)
    recent = await spend.records_since(ctx, days, max_pages=CSV_PAGES)
    if recent.error is not None:
        return error_page(recent.status, recent.error)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for record in recent.rows:
        writer.writerow([csv_cell(record.get(c)) for c in CSV_COLUMNS])
    headers = {
        **PAGE_HEADERS,
        "content-disposition": f'attachment; filename="gatewayz-usage-{days}d.csv"',
    }
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)


# --- models --------------------------------------------------------------------------------------


@router.get("/dashboard/models")
@web_page
async def models(request: Request) -> Response:
    ctx = await signed_in(request)
    q = (request.query_params.get("q") or "").strip()[:200]
    provider = (request.query_params.get("provider") or "").strip()
    provider = provider if PROVIDER_ID.match(provider) else ""
    answer = await ctx.api("GET", "/v1/models", query={"q": q, "provider": provider, "limit": 1000})
    listing = await ctx.api("GET", "/v1/providers")
    providers = listing.data.get("data", []) if listing.ok and isinstance(listing.data, dict) else []
    template = "models_table.html" if request.headers.get("hx-request") == "true" else "models.html"
    return ctx.render(
        template,
        status=200 if answer.ok else answer.status,
        models=answer.data["data"] if answer.ok else [],
        error=None if answer.ok else answer.message,
        q=q,
        provider=provider,
        providers=providers,
    )


# --- playground ----------------------------------------------------------------------------------


@router.get("/dashboard/playground")
@web_page
async def playground(request: Request) -> Response:
    ctx = await signed_in(request)
    answer = await ctx.api("GET", "/v1/models", query={"limit": 1000})
    ids = [m["id"] for m in answer.data["data"] if m.get("status") == "available"] if answer.ok else []
    return ctx.render("playground.html", model_ids=ids, default_model="openai/gpt-4o-mini")


def chat_body(data: Any) -> dict[str, Any]:
    """The chat request of the playground's form: a model, the conversation, a few parameters.
    Anything else is refused here; the gateway validates the rest as it would from a script."""
    if not isinstance(data, dict) or not isinstance(data.get("model"), str):
        raise ValueError("send a model and messages")
    messages = data.get("messages")
    if not isinstance(messages, list) or not 1 <= len(messages) <= 200:
        raise ValueError("send 1 to 200 messages")
    for message in messages:
        if not (
            isinstance(message, dict)
            and set(message) == {"role", "content"}
            and message["role"] in ROLES
            and isinstance(message["content"], str)
        ):
            raise ValueError("each message is a role (system, user, assistant) and its text")
    body: dict[str, Any] = {
        "model": data["model"],
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    for name in ("temperature", "top_p", "max_tokens"):
        value = data.get(name)
        if value is not None and value != "":
            body[name] = value
    return body


@router.post("/dashboard/playground/chat")
@web_page
async def playground_chat(request: Request) -> Response:
    ctx = await signed_in(request)
    await checked_form(ctx)  # the token comes in the X-CSRF-Token header; the body is JSON
    try:
        body = chat_body(orjson.loads(await request.body()))
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise Leave(
            Response(
                orjson.dumps(
                    {"error": {"message": f"Playground request: {exc}", "type": "invalid_request_error"}}
                ),
                status_code=400,
                media_type="application/json",
            )
        ) from None
    context = gateway.stream(request, "/v1/chat/completions", key=ctx.key, json=body)
    answer = await context.__aenter__()
    headers = {k: answer.headers[k] for k in PASSED_HEADERS if k in answer.headers}
    headers["cache-control"] = "no-store"

    async def relay() -> Any:
        try:
            async for chunk in answer.chunks:
                yield chunk
        finally:
            await context.__aexit__(None, None, None)

    return StreamingResponse(
        relay(),
        status_code=answer.status,
        media_type=answer.headers.get("content-type", "text/event-stream"),
        headers=headers,
    )


# --- settings: the user's own provider keys (BYOK) and chat history ------------------------------

SETTINGS_NOTICES = {
    "saved": "Provider key saved.",
    "deleted": "Provider key deleted.",
    "history": "Chat history retention saved.",
}


@router.get("/dashboard/settings")
@web_page
async def settings(request: Request) -> Response:
    ctx = await signed_in(request)
    answer = await ctx.api("GET", "/v1/provider-keys")
    listing = await ctx.api("GET", "/v1/providers")
    history = await ctx.api("GET", "/v1/history/settings")
    keys = await ctx.api("GET", "/v1/keys")
    providers = listing.data.get("data", []) if listing.ok and isinstance(listing.data, dict) else []
    return ctx.render(
        "settings.html",
        status=200 if answer.ok else answer.status,
        provider_keys=answer.data["data"] if answer.ok else [],
        providers=providers,
        history=history.data if history.ok else None,
        keys=[k for k in keys.data["data"] if not k.get("revoked")] if keys.ok else [],
        error=None if answer.ok else answer.message,
        notice=SETTINGS_NOTICES.get(request.query_params.get("done") or ""),
    )


@router.post("/dashboard/settings/history")
@web_page
async def history_retention(request: Request) -> Response:
    """The user's chat history retention (`PATCH /v1/history/settings`); blank: the default."""
    ctx = await signed_in(request)
    form = await checked_form(ctx)
    days = field(form, "retention_days")
    body = {"retention_days": (int(days) if days.isdigit() else days) if days else None}
    answer = await ctx.api("PATCH", "/v1/history/settings", json=body)
    if not answer.ok:
        return error_page(answer.status, answer.message)
    return see_other("/dashboard/settings?done=history")


@router.post("/dashboard/settings/provider-keys")
@web_page
async def put_provider_key(request: Request) -> Response:
    ctx = await signed_in(request)
    form = await checked_form(ctx)
    provider = field(form, "provider")
    if not PROVIDER_ID.match(provider):
        return error_page(400, "Choose a provider.")
    answer = await ctx.api("PUT", f"/v1/provider-keys/{provider}", json={"api_key": field(form, "api_key")})
    if not answer.ok:
        return error_page(answer.status, answer.message)
    return see_other("/dashboard/settings?done=saved")


@router.post("/dashboard/settings/provider-keys/{provider}/delete")
@web_page
async def delete_provider_key(request: Request, provider: str) -> Response:
    ctx = await signed_in(request)
    await checked_form(ctx)
    if not PROVIDER_ID.match(provider):
        return error_page(404, "No such provider.")
    answer = await ctx.api("DELETE", f"/v1/provider-keys/{provider}")
    if not answer.ok:
        return error_page(answer.status, answer.message)
    return see_other("/dashboard/settings?done=deleted")
