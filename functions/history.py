"""The history function (issue 18, SPEC §9): chat history sessions, share links, feedback.

`/v1/sessions` lists (filtered by model and dates, or searched with `q`), reads, renames and
deletes the caller's sessions; `POST`/`DELETE /v1/sessions/{id}/share` makes and revokes public
read-only links, read at `GET /v1/shared/{token}` without a key; `POST /v1/feedback` rates an
answer; `GET`/`PATCH /v1/history/settings` holds the caller's retention; `GET /admin/feedback`
exports feedback. Reads take the `read` scope, changes the `inference` scope (the scope whose
requests make history). Logic lives in shared.history.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from starlette.responses import HTMLResponse, Response

from shared.accounts.requests import parse_body, time_param
from shared.app import function_app, runtime_of
from shared.auth import Admin, Inference, Reader
from shared.history import feedback, views
from shared.observe.lambda_handler import lambda_handler
from shared.openapi import documented

router = APIRouter()
Limit = Annotated[int, Query(ge=1, le=100)]


@router.get("/v1/sessions")
@documented(
    "List your chat history sessions, newest first; `q` searches their text",
    response="history.SessionList",
    errors=(400, 401, 403),
    tag="history",
)
async def list_sessions(
    request: Request,
    principal: Reader,
    q: str | None = None,
    model: str | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: Limit = 20,
) -> dict[str, Any]:
    return await views.list_sessions(runtime_of(request), principal, q, model, since, until, limit)


@router.get("/v1/sessions/{session_id}")
@documented(
    "Read a session with its messages", response="history.Session", errors=(401, 403, 404), tag="history"
)
async def get_session(request: Request, principal: Reader, session_id: str) -> dict[str, Any]:
    return await views.get_session(runtime_of(request), principal, session_id)


@router.patch("/v1/sessions/{session_id}")
@documented(
    "Rename a session",
    request=views.SessionUpdate,
    response="history.Session",
    errors=(400, 401, 403, 404),
    tag="history",
)
async def rename_session(request: Request, principal: Inference, session_id: str) -> dict[str, Any]:
    body = await parse_body(request, views.SessionUpdate)
    return await views.rename_session(runtime_of(request), principal, session_id, body)


@router.delete("/v1/sessions/{session_id}")
@documented(
    "Delete a session, its messages and its share links",
    response="history.SessionDeleted",
    errors=(401, 403, 404),
    tag="history",
)
async def delete_session(request: Request, principal: Inference, session_id: str) -> dict[str, Any]:
    return await views.delete_session(runtime_of(request), principal, session_id)


@router.post("/v1/sessions/{session_id}/share")
@documented(
    "Make a read-only public link to a session, with an expiry",
    request=views.ShareIn,
    response="history.Share",
    errors=(400, 401, 403, 404),
    tag="history",
)
async def share_session(request: Request, principal: Inference, session_id: str) -> dict[str, Any]:
    body = await parse_body(request, views.ShareIn)
    rt = runtime_of(request)
    return await views.share_session(rt, principal, session_id, body, str(request.base_url))


@router.delete("/v1/sessions/{session_id}/share")
@documented(
    "Revoke every link to a session",
    response="history.ShareRevoked",
    errors=(401, 403, 404),
    tag="history",
)
async def revoke_shares(request: Request, principal: Inference, session_id: str) -> dict[str, Any]:
    return await views.revoke_shares(runtime_of(request), principal, session_id)


@router.get("/v1/shared/{token}")
@documented(
    "A shared session (public, no key): its title and messages, nothing about its owner; "
    "an HTML page for a browser (Accept: text/html)",
    response="history.SharedSession",
    errors=(404,),
    tag="history",
)
async def shared_session(request: Request, token: str) -> Any:
    view = await views.shared_session(runtime_of(request), token)
    if "text/html" in request.headers.get("accept", ""):
        from shared.history.page import render

        return HTMLResponse(render(view), headers={"cache-control": "no-store"})
    return view


@router.post("/v1/feedback")
@documented(
    "Rate an answer: thumbs, a 1-5 rating and a comment, on a message or a request",
    request=feedback.FeedbackIn,
    response="history.Feedback",
    errors=(400, 401, 403, 404),
    tag="history",
)
async def post_feedback(request: Request, principal: Inference) -> dict[str, Any]:
    body = await parse_body(request, feedback.FeedbackIn)
    return await feedback.add_feedback(runtime_of(request).db, views.owner(principal), body)


@router.get("/v1/history/settings")
@documented(
    "Your chat history settings", response="history.HistorySettings", errors=(401, 403), tag="history"
)
async def get_settings(request: Request, principal: Reader) -> dict[str, Any]:
    return await views.history_settings(runtime_of(request), principal)


@router.patch("/v1/history/settings")
@documented(
    "Set how long your chat history is kept",
    request=views.HistorySettingsIn,
    response="history.HistorySettings",
    errors=(400, 401, 403),
    tag="history",
)
async def patch_settings(request: Request, principal: Inference) -> dict[str, Any]:
    body = await parse_body(request, views.HistorySettingsIn)
    return await views.update_history_settings(runtime_of(request), principal, body)


@router.get("/admin/feedback")
@documented(
    "Export feedback (JSON, or CSV with format=csv)",
    response="history.FeedbackExport",
    errors=(400, 401, 403),
    tag="admin",
)
async def export_feedback(
    request: Request,
    principal: Admin,
    since: str | None = None,
    until: str | None = None,
    format: Literal["json", "csv"] = "json",
) -> Any:
    rows = await feedback.export(
        runtime_of(request).db, time_param(since, "since"), time_param(until, "until")
    )
    if format == "csv":
        return Response(feedback.as_csv(rows), media_type="text/csv; charset=utf-8")
    return {"object": "list", "data": rows}


app = function_app([router], title="Gatewayz history")
handler = lambda_handler(app, "history")
