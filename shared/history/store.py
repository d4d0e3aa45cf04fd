"""Chat history's data access (issue 18, SPEC §9): sessions and their messages, share links, the
per-user retention, on SQLite or PostgreSQL (infra/migrations/20261206200000_chat_history.sql).

Titles and contents are encrypted with the BYOK key ring (GATEWAYZ_ENCRYPTION_KEYS, Fernet, newest
key first; `reencrypt` style rotation works on these columns too). Everything else (model, role,
times, counts) stays plain, so lists filter, and retention deletes, in SQL.

Search over encrypted text: the server decrypts the caller's most recent sessions that pass the
plain filters (model, dates), at most `SEARCH_SESSIONS` of them, and matches the text
case-insensitively. A keyed-hash token index was the alternative: it finds whole words only (no
substrings), leaks how often each word occurs, and costs an index row per word on every write;
a personal history is small enough for a bounded scan, and the answer says when the bound cut it
(`truncated`). Every read is scoped to the owner: another user's session reads as absent (404).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.billing.ledger import new_id
from shared.errors import GatewayError
from shared.store import Database, Step, now_text

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet

SEARCH_SESSIONS = 200  # the most recent sessions a text search decrypts
TITLE_CHARS = 80
SESSION_ID_PREFIX = "ses"


class HistoryNotConfigured(GatewayError):
    """History content is encrypted at rest: without the key ring there is nothing to write with."""

    status = 503
    type = "service_unavailable"
    anthropic_type = "api_error"
    default_code = "encryption_not_configured"


class HistoryUnreadable(GatewayError):
    status = 503
    type = "service_unavailable"
    anthropic_type = "api_error"
    default_code = "history_unreadable"


def new_session_id() -> str:
    return f"{SESSION_ID_PREFIX}_{secrets.token_hex(12)}"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def title_of(messages: Sequence[tuple[str, str]]) -> str:
    """A session's first title: its first user message, on one line, cut at TITLE_CHARS."""
    text = next((t for role, t in messages if role == "user" and t.strip()), "") or "New chat"
    line = " ".join(text.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1] + "…"


@dataclass(slots=True)
class Turn:
    """One request's share of a session: its new messages and the answer."""

    user_id: str
    session_id: str
    continuing: bool  # the caller named the session (x-gatewayz-session-id)
    request_id: str
    model: str
    messages: list[tuple[str, str]]  # the request's messages (role, text), all of them
    answer: str


SESSION = "SELECT id, message_count FROM chat_sessions WHERE id = :id AND user_id = :user_id"
INSERT_SESSION = """
INSERT INTO chat_sessions (id, user_id, title, model, message_count, created_at, updated_at)
VALUES (:id, :user_id, :title, :model, :count, :now, :now)
"""
TOUCH_SESSION = """
UPDATE chat_sessions SET model = :model, message_count = message_count + :count, updated_at = :now
WHERE id = :id AND user_id = :user_id
"""


def insert_messages(count: int) -> str:
    """One INSERT of a turn's `count` messages (one statement: a statement is most of a small
    transaction's cost); each row's own values are `:id0`, `:seq0`, … and the rest shared."""
    rows = ", ".join(
        f"(:id{i}, :session_id, :user_id, :seq{i}, :role{i}, :content{i}, :model{i}, :request_id, :now)"
        for i in range(count)
    )
    return (
        "INSERT INTO chat_messages (id, session_id, user_id, seq, role, content, model, request_id, created_at) "
        f"VALUES {rows}"
    )


def list_sql(model: str | None, since: str | None, until: str | None) -> str:
    """The caller's sessions, newest first, with the filters given (a NULL parameter has no type
    on PostgreSQL: absent filters are left out of the statement)."""
    where = ["user_id = :user_id"]
    if model is not None:
        where.append("model = :model")
    if since is not None:
        where.append("updated_at >= :since")
    if until is not None:
        where.append("updated_at < :until")
    return (
        "SELECT id, title, model, message_count, created_at, updated_at FROM chat_sessions "
        f"WHERE {' AND '.join(where)} ORDER BY updated_at DESC, id DESC LIMIT :limit"
    )


MESSAGES = """
SELECT id, role, content, model, request_id, created_at FROM chat_messages
WHERE session_id = :id AND user_id = :user_id ORDER BY seq, created_at, id
"""
SHARED = """
SELECT s.session_id, s.user_id FROM chat_shares s
WHERE s.token_hash = :hash AND s.revoked_at IS NULL AND s.expires_at > :now
"""


class HistoryStore:
    def __init__(self, db: Database, keys: Sequence[str], default_retention_days: int) -> None:
        self.db = db
        self.keys = tuple(keys)
        self.default_retention_days = default_retention_days
        self.written = 0  # turns written by this process
        self.failed = 0  # turns that could not be written (logged; the answer was not affected)
        self._fernet: MultiFernet | None = None

    # --- encryption -------------------------------------------------------------------------------
    @property
    def configured(self) -> bool:
        return bool(self.keys)

    def _cipher(self) -> MultiFernet:
        if not self.keys:
            raise HistoryNotConfigured(
                "Chat history is not available: the operator must set GATEWAYZ_ENCRYPTION_KEYS "
                "(history is encrypted at rest)."
            )
        if self._fernet is None:
            from shared.accounts.byok import cipher  # loads cryptography: only where history is used

            self._fernet = cipher(self.keys)
        return self._fernet

    def _seal(self, text: str) -> str:
        return self._cipher().encrypt(text.encode()).decode("ascii")

    def _open(self, token: str) -> str:
        from cryptography.fernet import InvalidToken

        try:
            return self._cipher().decrypt(token.encode("ascii")).decode()
        except InvalidToken:
            raise HistoryUnreadable(
                "Stored history cannot be decrypted with the configured GATEWAYZ_ENCRYPTION_KEYS "
                "(the key it was written with was removed)."
            ) from None

    # --- writing ----------------------------------------------------------------------------------
    async def write(self, turn: Turn) -> str:
        """Add one request and its answer to its session (created when new); the session id."""
        now = now_text()
        known = None
        if turn.continuing:
            known = await self.db.fetch_one(SESSION, {"id": turn.session_id, "user_id": turn.user_id})
        messages = turn.messages
        steps: list[Step] = []
        if known is not None:
            session_id, seq = turn.session_id, int(known["message_count"])
            from shared.history.extract import new_turn

            messages = new_turn(messages)
        else:
            # A new session; a named session that is not the caller's (or no longer exists)
            # starts a new one under a fresh id rather than writing into someone else's.
            session_id, seq = turn.session_id, 0
            if turn.continuing:
                session_id = new_session_id()
        rows = [*messages, ("assistant", turn.answer)]
        session = {
            "id": session_id,
            "user_id": turn.user_id,
            "model": turn.model,
            "count": len(rows),
            "now": now,
        }
        if known is None:
            steps.append((INSERT_SESSION, {**session, "title": self._seal(title_of(messages))}))
        else:
            steps.append((TOUCH_SESSION, session))
        values: dict[str, Any] = {
            "session_id": session_id,
            "user_id": turn.user_id,
            "request_id": turn.request_id,
            "now": now,
        }
        for i, (role, text) in enumerate(rows):
            values.update(
                {
                    f"id{i}": new_id("msg"),
                    f"seq{i}": seq + i,
                    f"role{i}": role,
                    f"content{i}": self._seal(text),
                    f"model{i}": turn.model if role == "assistant" else None,
                }
            )
        steps.append((insert_messages(len(rows)), values))
        await self.db.transaction(steps)
        self.written += 1
        return session_id

    # --- reading ----------------------------------------------------------------------------------
    def _session_view(self, row: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": row["id"],
            "object": "chat.session",
            "title": self._open(row["title"]),
            "model": row["model"],
            "message_count": int(row["message_count"]),
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
        }

    async def sessions(
        self, user_id: str, *, model: str | None, since: str | None, until: str | None, limit: int
    ) -> list[dict[str, Any]]:
        params = {"user_id": user_id, "model": model, "since": since, "until": until, "limit": limit}
        return [self._session_view(r) for r in await self.db.fetch(list_sql(model, since, until), params)]

    async def search(
        self, user_id: str, text: str, *, model: str | None, since: str | None, until: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], bool]:
        """Sessions whose title or messages contain `text` (case-insensitive), newest first; and
        whether the scan stopped at its bound before the oldest session."""
        params = {
            "user_id": user_id,
            "model": model,
            "since": since,
            "until": until,
            "limit": SEARCH_SESSIONS + 1,
        }
        rows = await self.db.fetch(list_sql(model, since, until), params)
        truncated = len(rows) > SEARCH_SESSIONS
        rows = rows[:SEARCH_SESSIONS]
        needle = text.casefold()
        found: list[dict[str, Any]] = []
        for row in rows:
            view = self._session_view(row)
            snippet = _snippet(view["title"], needle)
            if snippet is None:
                for message in await self.db.fetch(MESSAGES, {"id": row["id"], "user_id": user_id}):
                    snippet = _snippet(self._open(message["content"]), needle)
                    if snippet is not None:
                        break
            if snippet is not None:
                found.append({**view, "match": snippet})
                if len(found) >= limit:
                    break
        return found, truncated

    async def session(self, user_id: str, session_id: str) -> dict[str, Any] | None:
        row = await self.db.fetch_one(
            "SELECT id, title, model, message_count, created_at, updated_at FROM chat_sessions "
            "WHERE id = :id AND user_id = :user_id",
            {"id": session_id, "user_id": user_id},
        )
        if row is None:
            return None
        messages = await self.db.fetch(MESSAGES, {"id": session_id, "user_id": user_id})
        return {
            **self._session_view(row),
            "messages": [
                {
                    "id": m["id"],
                    "role": m["role"],
                    "content": self._open(m["content"]),
                    "model": m["model"],
                    "request_id": m["request_id"],
                    "created_at": m["created_at"],
                }
                for m in messages
            ],
        }

    async def rename(self, user_id: str, session_id: str, title: str) -> bool:
        rows = await self.db.fetch(
            "UPDATE chat_sessions SET title = :title WHERE id = :id AND user_id = :user_id RETURNING id",
            {"title": self._seal(title), "id": session_id, "user_id": user_id},
        )
        return bool(rows)

    async def delete(self, user_id: str, session_id: str) -> bool:
        """Delete a session with its messages and share links."""
        params = {"id": session_id, "user_id": user_id}
        results = await self.db.transaction(
            [
                ("DELETE FROM chat_messages WHERE session_id = :id AND user_id = :user_id", params),
                ("DELETE FROM chat_shares WHERE session_id = :id AND user_id = :user_id", params),
                ("DELETE FROM chat_sessions WHERE id = :id AND user_id = :user_id RETURNING id", params),
            ]
        )
        return bool(results[-1])

    # --- share links ------------------------------------------------------------------------------
    async def share(self, user_id: str, session_id: str, ttl: timedelta) -> tuple[str, str] | None:
        """A new link's token and expiry (None: no such session of the user's)."""
        token = secrets.token_urlsafe(32)
        moment = datetime.now(UTC)
        expires_at = now_text(moment + ttl)
        rows = await self.db.fetch(
            "INSERT INTO chat_shares (token_hash, session_id, user_id, expires_at, revoked_at, created_at) "
            "SELECT :hash, id, user_id, :expires_at, NULL, :now FROM chat_sessions "
            "WHERE id = :id AND user_id = :user_id RETURNING token_hash",
            {
                "hash": token_hash(token),
                "id": session_id,
                "user_id": user_id,
                "expires_at": expires_at,
                "now": now_text(moment),
            },
        )
        return (token, expires_at) if rows else None

    async def revoke(self, user_id: str, session_id: str) -> int:
        """Revoke every live link of a session; how many."""
        rows = await self.db.fetch(
            "UPDATE chat_shares SET revoked_at = :now WHERE session_id = :id AND user_id = :user_id "
            "AND revoked_at IS NULL AND expires_at > :now RETURNING token_hash",
            {"now": now_text(), "id": session_id, "user_id": user_id},
        )
        return len(rows)

    async def shared(self, token: str) -> dict[str, Any] | None:
        """A shared session by its link's token: title, model, times and the messages' roles and
        text — never the owner, a key, a request id or a cost. None: unknown, expired or revoked."""
        link = await self.db.fetch_one(SHARED, {"hash": token_hash(token), "now": now_text()})
        if link is None:
            return None
        session = await self.session(link["user_id"], link["session_id"])
        if session is None:
            return None
        return {
            "object": "chat.shared_session",
            "title": session["title"],
            "model": session["model"],
            "created_at": session["created_at"],
            "updated_at": session["updated_at"],
            "messages": [
                {
                    "role": m["role"],
                    "content": m["content"],
                    "model": m["model"],
                    "created_at": m["created_at"],
                }
                for m in session["messages"]
            ],
        }

    # --- retention --------------------------------------------------------------------------------
    async def retention_days(self, user_id: str) -> int | None:
        row = await self.db.fetch_one(
            "SELECT history_retention_days FROM users WHERE id = :id", {"id": user_id}
        )
        return None if row is None else row["history_retention_days"]

    async def set_retention_days(self, user_id: str, days: int | None) -> None:
        await self.db.fetch(
            "UPDATE users SET history_retention_days = :days WHERE id = :id", {"days": days, "id": user_id}
        )

    async def purge(self) -> int:
        """Delete sessions (with their messages and links) whose last activity is older than their
        owner's retention; how many sessions."""
        default = self.default_retention_days
        spans = await self.db.fetch(
            "SELECT DISTINCT COALESCE(u.history_retention_days, :default) AS days FROM users u "
            "WHERE u.id IN (SELECT user_id FROM chat_sessions)",
            {"default": default},
        )
        deleted = 0
        for span in spans:
            days = int(span["days"])
            params = {
                "default": default,
                "days": days,
                "cutoff": now_text(datetime.now(UTC) - timedelta(days=days)),
            }
            expired = (
                "SELECT s.id FROM chat_sessions s JOIN users u ON u.id = s.user_id "
                "WHERE COALESCE(u.history_retention_days, :default) = :days AND s.updated_at < :cutoff"
            )
            results = await self.db.transaction(
                [
                    (f"DELETE FROM chat_messages WHERE session_id IN ({expired})", params),
                    (f"DELETE FROM chat_shares WHERE session_id IN ({expired})", params),
                    (f"DELETE FROM chat_sessions WHERE id IN ({expired}) RETURNING id", params),
                ]
            )
            deleted += len(results[-1])
        return deleted


def _snippet(text: str, needle: str) -> str | None:
    """Up to ~120 characters of `text` around the first match (None: no match)."""
    at = text.casefold().find(needle)
    if at < 0:
        return None
    start = max(0, at - 40)
    end = min(len(text), at + len(needle) + 80)
    return ("…" if start else "") + " ".join(text[start:end].split()) + ("…" if end < len(text) else "")
