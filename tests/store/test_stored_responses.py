"""Stored responses (`shared.store.responses`) on SQLite and on the real PostgreSQL: a response is
its owner's only, continues with its whole conversation, is gone after DELETE or its retention
(and purged then), waits for nothing on the way in — and a write that fails is logged, never raised."""

from __future__ import annotations

import logging
from datetime import timedelta

import orjson
import pytest

from shared.store import Database
from shared.store.responses import ResponseStore
from tests.store.support import new_user

ITEMS = [{"type": "message", "role": "user", "content": "My name is Ada."}]


def response(rid: str) -> dict[str, object]:
    part = {"type": "output_text", "annotations": [], "text": "Hello Ada."}
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [part],
    }
    # The cost as the gateway writes it: an exact decimal that a float would not keep.
    usage = {"input_tokens": 5, "output_tokens": 2, "cost": orjson.Fragment(b"0.000012345678901")}
    return {"id": rid, "object": "response", "model": "openai/gpt-4o", "output": [message], "usage": usage}


async def test_a_stored_response_is_read_back_by_its_owner_only(db: Database) -> None:
    owner, stranger = await new_user(db), await new_user(db)
    store = ResponseStore(db, timedelta(days=30))
    store.keep(owner, ITEMS, response("resp_owned1"))  # not awaited: a read waits for it
    stored = await store.get(owner, "resp_owned1")
    assert stored is not None
    assert stored.items == ITEMS
    assert b'"cost":0.000012345678901' in stored.raw.encode()  # the exact text, not a float's
    assert stored.conversation[0]["content"] == "My name is Ada."
    assert stored.conversation[-1]["id"] == "msg_1"  # the input, then what the model answered
    assert await store.get(stranger, "resp_owned1") is None
    assert not await store.delete(stranger, "resp_owned1")
    assert await store.get(owner, "resp_owned1") is not None  # a stranger's delete changed nothing


async def test_delete_removes_it_once(db: Database) -> None:
    owner = await new_user(db)
    store = ResponseStore(db, timedelta(days=30))
    store.keep(owner, ITEMS, response("resp_gone1"))
    assert await store.delete(owner, "resp_gone1")
    assert await store.get(owner, "resp_gone1") is None
    assert not await store.delete(owner, "resp_gone1")


async def test_expired_responses_are_never_read_and_are_purged(db: Database) -> None:
    owner = await new_user(db)
    ResponseStore(db, timedelta(days=-1)).keep(owner, ITEMS, response("resp_old1"))
    store = ResponseStore(db, timedelta(days=30))
    store.keep(owner, ITEMS, response("resp_new1"))
    await store.drain()
    assert await store.get(owner, "resp_old1") is None
    assert not await store.delete(owner, "resp_old1")
    assert await store.purge() >= 1
    left = await db.fetch("SELECT id FROM stored_responses WHERE id IN ('resp_old1', 'resp_new1')")
    assert [r["id"] for r in left] == ["resp_new1"]


async def test_a_failed_write_is_logged_not_raised(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    owner = await new_user(db)
    store = ResponseStore(db, timedelta(days=30))
    store.keep(owner, ITEMS, response("resp_twice1"))
    await store.drain()
    with caplog.at_level(logging.ERROR, logger="gatewayz"):
        store.keep(owner, [], response("resp_twice1"))  # the same id again: the insert fails
        await store.drain()
    assert "storing response resp_twice1 failed" in caplog.text
    stored = await store.get(owner, "resp_twice1")
    assert stored is not None and stored.items == ITEMS  # the first write stands
