"""Feedback on answers (issue 18): thumbs, a 1–5 rating and a comment, on a message of the
caller's history or on one of the caller's requests (its `x-request-id`, or the gateway's own id
kept on history messages). A target that is not the caller's reads as absent (404). The operator
exports all of it (`GET /admin/feedback`, JSON or CSV).

Comments are kept as written (not encrypted): they are addressed to the operator, who reads them.
"""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, model_validator

from shared.accounts.requests import _Body
from shared.billing.ledger import new_id
from shared.errors import NotFound
from shared.store import Database, now_text

TargetId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,200}$")]
EXPORT_LIMIT = 10_000
COLUMNS = ("id", "user_id", "message_id", "request_id", "thumbs", "rating", "comment", "created_at")


class FeedbackIn(_Body):
    message_id: TargetId | None = None
    request_id: TargetId | None = None
    thumbs: Literal["up", "down"] | None = None
    rating: Annotated[int, Field(ge=1, le=5)] | None = None
    comment: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)] | None
    ) = None

    @model_validator(mode="after")
    def _one_target_and_something_said(self) -> FeedbackIn:
        if (self.message_id is None) == (self.request_id is None):
            raise ValueError("send exactly one of message_id and request_id")
        if self.thumbs is None and self.rating is None and self.comment is None:
            raise ValueError("nothing to record: send thumbs, rating or comment")
        return self


async def _owned(db: Database, user_id: str, body: FeedbackIn) -> dict[str, Any]:
    """The feedback's target as stored: the message (and its request), or the request."""
    if body.message_id is not None:
        row = await db.fetch_one(
            "SELECT id, request_id FROM chat_messages WHERE id = :id AND user_id = :user_id",
            {"id": body.message_id, "user_id": user_id},
        )
        if row is None:
            raise NotFound(f"No message {body.message_id!r} in your history.", param="message_id")
        return {"message_id": row["id"], "request_id": row["request_id"]}
    params = {"id": body.request_id, "user_id": user_id}
    row = await db.fetch_one(
        "SELECT request_id FROM request_records WHERE user_id = :user_id "
        "AND (request_id = :id OR client_request_id = :id)",
        params,
    ) or await db.fetch_one(
        "SELECT request_id FROM chat_messages WHERE user_id = :user_id AND request_id = :id", params
    )
    if row is None:
        raise NotFound(f"No request {body.request_id!r} of yours.", param="request_id")
    return {"message_id": None, "request_id": row["request_id"]}


async def add_feedback(db: Database, user_id: str, body: FeedbackIn) -> dict[str, Any]:
    target = await _owned(db, user_id, body)
    row = {
        "id": new_id("fb"),
        "user_id": user_id,
        **target,
        "thumbs": body.thumbs,
        "rating": body.rating,
        "comment": body.comment,
        "created_at": now_text(),
    }
    await db.fetch(
        "INSERT INTO chat_feedback (id, user_id, message_id, request_id, thumbs, rating, comment, created_at) "
        "VALUES (:id, :user_id, :message_id, :request_id, :thumbs, :rating, :comment, :created_at)",
        row,
    )
    out = {"object": "feedback", **row}
    del out["user_id"]
    return out


async def export(db: Database, since: str | None, until: str | None) -> list[dict[str, Any]]:
    where = ["1 = 1"]
    if since is not None:
        where.append("created_at >= :since")
    if until is not None:
        where.append("created_at < :until")
    return await db.fetch(
        f"SELECT {', '.join(COLUMNS)} FROM chat_feedback WHERE {' AND '.join(where)} "
        "ORDER BY created_at, id LIMIT :limit",
        {"since": since, "until": until, "limit": EXPORT_LIMIT},
    )


def as_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        # A cell starting with = + - @ is a formula to a spreadsheet: quote it as text.
        writer.writerow({k: _cell(row.get(k)) for k in COLUMNS})
    return out.getvalue()


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return "" if value is None else value
