"""Schemas of the chat history routes for the OpenAPI document (issue 18, SPEC §9): the shapes
of shared.history. Times are ISO 8601 UTC strings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.openapi.base import Shape


class SessionSummary(Shape):
    id: str = Field(description="ses_ and 24 hex digits; send it as x-gatewayz-session-id to continue")
    object: Literal["chat.session"] = "chat.session"
    title: str
    model: str = Field(description="the model of the last answer")
    message_count: int
    created_at: str
    updated_at: str
    match: str | None = Field(default=None, description="with q: the text around the first match")


class SessionList(Shape):
    object: Literal["list"] = "list"
    data: list[SessionSummary]
    truncated: bool = Field(description="with q: the search stopped at its bound of recent sessions")


class Message(Shape):
    id: str
    role: str
    content: str
    model: str | None = None
    request_id: str | None = None
    created_at: str


class Session(SessionSummary):
    messages: list[Message]


class SessionDeleted(Shape):
    id: str
    object: Literal["chat.session"] = "chat.session"
    deleted: bool


class Share(Shape):
    object: Literal["chat.share"] = "chat.share"
    session_id: str
    token: str
    url: str = Field(description="the public read-only link (GET, no key)")
    expires_at: str


class ShareRevoked(Shape):
    object: Literal["chat.share"] = "chat.share"
    session_id: str
    revoked: int = Field(description="links revoked now")


class SharedMessage(Shape):
    role: str
    content: str
    model: str | None = None
    created_at: str


class SharedSession(Shape):
    object: Literal["chat.shared_session"] = "chat.shared_session"
    title: str
    model: str
    created_at: str
    updated_at: str
    messages: list[SharedMessage]


class Feedback(Shape):
    object: Literal["feedback"] = "feedback"
    id: str
    message_id: str | None = None
    request_id: str | None = None
    thumbs: Literal["up", "down"] | None = None
    rating: int | None = None
    comment: str | None = None
    created_at: str


class FeedbackRow(Feedback):
    user_id: str


class FeedbackExport(Shape):
    object: Literal["list"] = "list"
    data: list[FeedbackRow]


class HistorySettings(Shape):
    object: Literal["history.settings"] = "history.settings"
    retention_days: int | None = Field(description="your own retention; null: the gateway's default")
    effective_retention_days: int
    available: bool = Field(description="false: the operator has not configured history encryption")


class PurgeResult(Shape):
    deleted_sessions: int
