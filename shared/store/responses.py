"""Stored responses (`POST /v1/responses` with `store: true`): what a conversation needs to continue
by `previous_response_id`, kept per user for a retention period (GATEWAYZ_RESPONSES_RETENTION_DAYS).

A row holds one response as the caller received it (`response`: its output, usage and cost) and
the whole input it answered (`items`: the items of the conversation it continued, then its own
input), so a continuation is one read by primary key, and deleting one response never breaks
another. Rows are visible to their owner only: another user's id reads as absent. Expired rows are
never read, and the scheduled job deletes them (`purge`).

Writes happen after the answer, off its latency: `keep` starts a task and returns; a failed write
is logged, never raised (the caller already has the answer). A continuation that arrives before
the write landed on this instance waits for it (`get`); `drain` waits for writes still under way
before the database closes.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from shared.store import Database, now_text

log = logging.getLogger("gatewayz")
DRAIN_S = 15.0  # seconds a closing runtime waits for writes still under way

INSERT = """
INSERT INTO stored_responses (id, user_id, model, items, response, created_at, expires_at)
VALUES (:id, :user_id, :model, :items, :response, :now, :expires_at)
"""
SELECT = """
SELECT items, response FROM stored_responses
WHERE id = :id AND user_id = :user_id AND expires_at > :now
"""
DELETE = (
    "DELETE FROM stored_responses WHERE id = :id AND user_id = :user_id AND expires_at > :now RETURNING id"
)
PURGE = "DELETE FROM stored_responses WHERE expires_at <= :now RETURNING id"


@dataclass(frozen=True, slots=True)
class StoredResponse:
    items: list[dict[str, Any]]  # the input it answered, history included
    raw: str  # the response object as returned (JSON text: its cost stays the exact decimal written)

    @property
    def conversation(self) -> list[dict[str, Any]]:
        """The items a continuation starts from: the input, then what the model answered."""
        response = orjson.loads(self.raw)
        return [*self.items, *(response.get("output") or ())]


class ResponseStore:
    def __init__(self, db: Database, retention: timedelta) -> None:
        self.db = db
        self.retention = retention
        self._pending: dict[str, asyncio.Task[None]] = {}

    def keep(self, user_id: str, items: list[dict[str, Any]], response: dict[str, Any]) -> None:
        """Store a response in the background (the caller's answer does not wait for it)."""
        moment = datetime.now(UTC)
        params = {
            "id": response["id"],
            "user_id": user_id,
            "model": str(response.get("model") or ""),
            "items": orjson.dumps(items).decode(),
            "response": orjson.dumps(response).decode(),
            "now": now_text(moment),
            "expires_at": now_text(moment + self.retention),
        }
        task = asyncio.ensure_future(self._write(params))
        self._pending[params["id"]] = task
        task.add_done_callback(lambda _: self._pending.pop(params["id"], None))

    async def _write(self, params: dict[str, Any]) -> None:
        try:
            await self.db.fetch(INSERT, params)
        except Exception:
            log.exception("storing response %s failed: it cannot be continued or retrieved", params["id"])

    async def _landed(self, response_id: str) -> None:
        task = self._pending.get(response_id)
        if task is not None:
            await asyncio.wait({task})

    async def get(self, user_id: str, response_id: str) -> StoredResponse | None:
        """The user's stored response, unexpired (None for another user's, as for none)."""
        await self._landed(response_id)
        row = await self.db.fetch_one(SELECT, {"id": response_id, "user_id": user_id, "now": now_text()})
        if row is None:
            return None
        return StoredResponse(orjson.loads(row["items"]), str(row["response"]))

    async def delete(self, user_id: str, response_id: str) -> bool:
        await self._landed(response_id)
        rows = await self.db.fetch(DELETE, {"id": response_id, "user_id": user_id, "now": now_text()})
        return bool(rows)

    async def purge(self) -> int:
        """Delete expired responses; how many."""
        return len(await self.db.fetch(PURGE, {"now": now_text()}))

    async def drain(self) -> None:
        if self._pending:
            await asyncio.wait(set(self._pending.values()), timeout=DRAIN_S)
