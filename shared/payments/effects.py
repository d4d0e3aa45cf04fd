"""What a webhook event changes (`Plan`), and the lookups its handlers share: which user an
object belongs to (SPEC §6's metadata contract, else what earlier events recorded)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.errors import InternalError
from shared.runtime import Runtime
from shared.store import Step, now_text

USER_KEY = "gatewayz_user_id"
KIND_KEY = "gatewayz_kind"


@dataclass
class Plan:
    """An event's statements (each guarded by the event's claim, `EVENT_CLAIMED`) and for whom."""

    steps: list[Step] = field(default_factory=list)
    user_id: str | None = None
    status: str = "processed"  # or "ignored": stored, counted, nothing changed
    invalidate_keys: bool = False  # a plan or a freeze changed: drop the key caches everywhere
    after: list[Callable[[], Awaitable[None]]] = field(default_factory=list)  # notifications


Handler = Callable[[Runtime, dict[str, Any], dict[str, Any]], Awaitable[Plan]]


class UnappliedEvent(InternalError):
    """An event that should change an account and cannot (its user is unknown): a 500, so that
    Stripe retries it and the operator sees it failing in Stripe's dashboard."""


def metadata(obj: dict[str, Any] | None) -> dict[str, Any]:
    meta = (obj or {}).get("metadata")
    return meta if isinstance(meta, dict) else {}


def text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def ref_id(value: Any) -> str | None:
    """An expandable reference: the id string, or the expanded object's id."""
    if isinstance(value, dict):
        return text(value.get("id"))
    return text(value)


async def known_user(rt: Runtime, user_id: str | None) -> str:
    if (
        user_id is None
        or await rt.db.fetch_one("SELECT id FROM users WHERE id = :id", {"id": user_id}) is None
    ):
        raise UnappliedEvent(f"The event names no known Gatewayz user ({user_id!r}).")
    return user_id


async def user_by_customer(rt: Runtime, customer: str | None) -> str | None:
    if customer is None:
        return None
    row = await rt.db.fetch_one("SELECT id FROM users WHERE stripe_customer_id = :c", {"c": customer})
    return None if row is None else str(row["id"])


def event_time(event: dict[str, Any]) -> str:
    created = event.get("created")
    moment = datetime.fromtimestamp(created, UTC) if isinstance(created, int) else datetime.now(UTC)
    return now_text(moment)
