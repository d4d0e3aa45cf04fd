"""The chat history routes' work (functions/history.py): the caller's sessions, search, share
links, retention setting; each call is scoped to the caller's user, so another user's session is
a 404 like a missing one."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from pydantic import Field, StringConstraints

from shared.accounts.requests import _Body, time_param
from shared.auth import Principal
from shared.errors import InvalidRequest, NotFound, PermissionDenied
from shared.history.store import SESSION_ID_PREFIX, HistoryStore
from shared.runtime import Runtime

MAX_SHARE_SECONDS = 365 * 86_400
DEFAULT_SHARE_SECONDS = 7 * 86_400
MAX_RETENTION_DAYS = 3650


class SessionUpdate(_Body):
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class ShareIn(_Body):
    expires_in: Annotated[int, Field(ge=60, le=MAX_SHARE_SECONDS)] = Field(
        default=DEFAULT_SHARE_SECONDS, description="seconds until the link stops working"
    )


class HistorySettingsIn(_Body):
    retention_days: Annotated[int, Field(ge=1, le=MAX_RETENTION_DAYS)] | None = Field(
        description="days a session is kept after its last message; null: the gateway's default"
    )


def owner(principal: Principal) -> str:
    if principal.user_id is None:
        raise PermissionDenied("Chat history belongs to a user: use that user's API key.")
    return principal.user_id


def _store(rt: Runtime) -> HistoryStore:
    return rt.history


def _missing(session_id: str) -> NotFound:
    return NotFound(f"No session {session_id[:80]!r} in your history.", param="id", code="session_not_found")


def _checked_id(session_id: str) -> str:
    if not session_id.startswith(SESSION_ID_PREFIX + "_") or len(session_id) > 64:
        raise _missing(session_id)
    return session_id


async def list_sessions(
    rt: Runtime,
    principal: Principal,
    q: str | None,
    model: str | None,
    since: str | None,
    until: str | None,
    limit: int,
) -> dict[str, Any]:
    user_id = owner(principal)
    after, before = time_param(since, "since"), time_param(until, "until")
    if q is not None:
        text = q.strip()
        if not text or len(text) > 200:
            raise InvalidRequest("q: search text of 1 to 200 characters.", param="q")
        found, truncated = await _store(rt).search(
            user_id, text, model=model, since=after, until=before, limit=limit
        )
        return {"object": "list", "data": found, "truncated": truncated}
    sessions = await _store(rt).sessions(user_id, model=model, since=after, until=before, limit=limit)
    return {"object": "list", "data": sessions, "truncated": False}


async def get_session(rt: Runtime, principal: Principal, session_id: str) -> dict[str, Any]:
    session = await _store(rt).session(owner(principal), _checked_id(session_id))
    if session is None:
        raise _missing(session_id)
    return session


async def rename_session(
    rt: Runtime, principal: Principal, session_id: str, body: SessionUpdate
) -> dict[str, Any]:
    user_id = owner(principal)
    if not await _store(rt).rename(user_id, _checked_id(session_id), body.title):
        raise _missing(session_id)
    return await get_session(rt, principal, session_id)


async def delete_session(rt: Runtime, principal: Principal, session_id: str) -> dict[str, Any]:
    if not await _store(rt).delete(owner(principal), _checked_id(session_id)):
        raise _missing(session_id)
    return {"id": session_id, "object": "chat.session", "deleted": True}


async def share_session(
    rt: Runtime, principal: Principal, session_id: str, body: ShareIn, base_url: str
) -> dict[str, Any]:
    made = await _store(rt).share(
        owner(principal), _checked_id(session_id), timedelta(seconds=body.expires_in)
    )
    if made is None:
        raise _missing(session_id)
    token, expires_at = made
    return {
        "object": "chat.share",
        "session_id": session_id,
        "token": token,
        "url": f"{base_url.rstrip('/')}/v1/shared/{token}",
        "expires_at": expires_at,
    }


async def revoke_shares(rt: Runtime, principal: Principal, session_id: str) -> dict[str, Any]:
    user_id = owner(principal)
    store = _store(rt)
    if await store.session(user_id, _checked_id(session_id)) is None:
        raise _missing(session_id)
    return {
        "object": "chat.share",
        "session_id": session_id,
        "revoked": await store.revoke(user_id, session_id),
    }


async def shared_session(rt: Runtime, token: str) -> dict[str, Any]:
    view = await _store(rt).shared(token) if 20 <= len(token) <= 100 else None
    if view is None:
        raise NotFound(
            "This shared conversation does not exist, has expired or was revoked.", code="share_not_found"
        )
    return view


async def history_settings(rt: Runtime, principal: Principal) -> dict[str, Any]:
    days = await _store(rt).retention_days(owner(principal))
    return _settings_view(rt, days)


async def update_history_settings(
    rt: Runtime, principal: Principal, body: HistorySettingsIn
) -> dict[str, Any]:
    user_id = owner(principal)
    await _store(rt).set_retention_days(user_id, body.retention_days)
    return _settings_view(rt, body.retention_days)


def _settings_view(rt: Runtime, days: int | None) -> dict[str, Any]:
    default = rt.history.default_retention_days
    return {
        "object": "history.settings",
        "retention_days": days,
        "effective_retention_days": default if days is None else days,
        "available": rt.history.configured,
    }
