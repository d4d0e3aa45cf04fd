"""Chat history's store (`shared.history.store`) on SQLite and on the real PostgreSQL: turns land
encrypted, a continued session gains only its new turn, search finds text inside the ciphertexts,
everything is its owner's only, delete erases messages and links, retention purges, and share
links stop at expiry or revocation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography.fernet import Fernet

from shared.history.store import HistoryStore, Turn, new_session_id
from shared.store import Database, now_text
from tests.store.support import new_user

KEY = Fernet.generate_key().decode()


def turn(
    user_id: str, text: str, answer: str, *, session_id: str | None = None, model: str = "openai/gpt-4o"
) -> Turn:
    return Turn(
        user_id=user_id,
        session_id=session_id or new_session_id(),
        continuing=session_id is not None,
        request_id=f"req_{text[:8]}",
        model=model,
        messages=[("system", "Be brief."), ("user", text)],
        answer=answer,
    )


async def test_a_turn_is_stored_encrypted_and_read_back_by_its_owner_only(db: Database) -> None:
    owner, stranger = await new_user(db), await new_user(db)
    store = HistoryStore(db, [KEY], 90)
    sid = await store.write(turn(owner, "What is the capital of France?", "Paris."))
    rows = await db.fetch(
        "SELECT role, content FROM chat_messages WHERE session_id = :s ORDER BY seq", {"s": sid}
    )
    assert [r["role"] for r in rows] == ["system", "user", "assistant"]
    assert all("Paris" not in r["content"] and "France" not in r["content"] for r in rows)  # ciphertext
    (title_row,) = await db.fetch("SELECT title FROM chat_sessions WHERE id = :s", {"s": sid})
    assert "France" not in title_row["title"]

    session = await store.session(owner, sid)
    assert session is not None
    assert session["title"] == "What is the capital of France?"
    assert [(m["role"], m["content"]) for m in session["messages"]] == [
        ("system", "Be brief."),
        ("user", "What is the capital of France?"),
        ("assistant", "Paris."),
    ]
    assert await store.session(stranger, sid) is None
    assert not await store.rename(stranger, sid, "mine now")
    assert not await store.delete(stranger, sid)
    assert await store.share(stranger, sid, timedelta(days=1)) is None
    assert (await store.session(owner, sid) or {})["title"] == "What is the capital of France?"


async def test_continuing_adds_only_the_new_turn_and_a_foreign_session_is_never_written(db: Database) -> None:
    owner, stranger = await new_user(db), await new_user(db)
    store = HistoryStore(db, [KEY], 90)
    sid = await store.write(turn(owner, "Hi", "Hello!"))
    follow = Turn(
        user_id=owner,
        session_id=sid,
        continuing=True,
        request_id="req_2",
        model="anthropic/claude-sonnet-4.5",
        messages=[("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello!"), ("user", "And you?")],
        answer="Fine.",
    )
    assert await store.write(follow) == sid
    session = await store.session(owner, sid)
    assert session is not None
    assert [m["content"] for m in session["messages"]] == ["Be brief.", "Hi", "Hello!", "And you?", "Fine."]
    assert session["message_count"] == 5 and session["model"] == "anthropic/claude-sonnet-4.5"

    # The stranger names the owner's session: a new session of the stranger's, the owner's untouched.
    other = await store.write(turn(stranger, "Sneaky", "No.", session_id=sid))
    assert other != sid
    assert (await store.session(owner, sid) or {})["message_count"] == 5
    assert (await store.session(stranger, other) or {})["title"] == "Sneaky"


async def test_search_finds_text_inside_encrypted_messages_and_filters_by_model_and_date(
    db: Database,
) -> None:
    owner, stranger = await new_user(db), await new_user(db)
    store = HistoryStore(db, [KEY], 90)
    first = await store.write(turn(owner, "Tell me about volcanoes", "Magma rises."))
    second = await store.write(turn(owner, "Cook pasta", "Boil water.", model="anthropic/claude-sonnet-4.5"))
    await store.write(turn(stranger, "volcanoes too", "Lava."))

    found, truncated = await store.search(owner, "MAGMA", model=None, since=None, until=None, limit=20)
    assert [s["id"] for s in found] == [first] and not truncated
    assert "Magma" in found[0]["match"]
    found, _ = await store.search(owner, "volcano", model=None, since=None, until=None, limit=20)
    assert [s["id"] for s in found] == [first]  # the stranger's session is not searched
    found, _ = await store.search(owner, "water", model="openai/gpt-4o", since=None, until=None, limit=20)
    assert found == []
    listed = await store.sessions(
        owner, model="anthropic/claude-sonnet-4.5", since=None, until=None, limit=20
    )
    assert [s["id"] for s in listed] == [second]
    later = now_text(datetime.now(UTC) + timedelta(minutes=1))
    assert await store.sessions(owner, model=None, since=later, until=None, limit=20) == []
    assert len(await store.sessions(owner, model=None, since=None, until=later, limit=20)) == 2


async def test_delete_erases_messages_and_links(db: Database) -> None:
    owner = await new_user(db)
    store = HistoryStore(db, [KEY], 90)
    sid = await store.write(turn(owner, "Forget me", "Done."))
    made = await store.share(owner, sid, timedelta(days=1))
    assert made is not None
    assert await store.delete(owner, sid)
    assert await db.fetch("SELECT id FROM chat_messages WHERE session_id = :s", {"s": sid}) == []
    assert await db.fetch("SELECT token_hash FROM chat_shares WHERE session_id = :s", {"s": sid}) == []
    assert await store.shared(made[0]) is None
    assert not await store.delete(owner, sid)


async def test_share_links_expire_and_revoke_and_show_nothing_of_the_owner(db: Database) -> None:
    owner = await new_user(db)
    store = HistoryStore(db, [KEY], 90)
    sid = await store.write(turn(owner, "Share this", "Shared answer."))
    made = await store.share(owner, sid, timedelta(days=1))
    assert made is not None
    token, _ = made
    view = await store.shared(token)
    assert view is not None
    assert [m["content"] for m in view["messages"]] == ["Be brief.", "Share this", "Shared answer."]
    text = repr(view)
    assert owner not in text and "req_" not in text and "user_id" not in text and "cost" not in text
    # Only a hash of the token is stored.
    assert await db.fetch("SELECT token_hash FROM chat_shares WHERE token_hash = :t", {"t": token}) == []

    expired = await store.share(owner, sid, timedelta(seconds=-1))
    assert expired is not None and await store.shared(expired[0]) is None
    assert await store.revoke(owner, sid) == 1  # the live link (the expired one is dead already)
    assert await store.shared(token) is None


async def test_retention_purges_old_sessions_by_each_owners_setting(db: Database) -> None:
    short, default = await new_user(db), await new_user(db)
    store = HistoryStore(db, [KEY], 90)
    await store.set_retention_days(short, 1)
    old_short = await store.write(turn(short, "old", "x"))
    new_short = await store.write(turn(short, "new", "y"))
    old_default = await store.write(turn(default, "two days", "z"))
    two_days_ago = now_text(datetime.now(UTC) - timedelta(days=2))
    for sid in (old_short, old_default):
        await db.fetch(
            "UPDATE chat_sessions SET updated_at = :t WHERE id = :s", {"t": two_days_ago, "s": sid}
        )

    assert await store.purge() >= 1
    assert await store.session(short, old_short) is None
    assert await db.fetch("SELECT id FROM chat_messages WHERE session_id = :s", {"s": old_short}) == []
    assert await store.session(short, new_short) is not None
    assert await store.session(default, old_default) is not None  # 2 days < the default 90
    assert await store.retention_days(short) == 1 and await store.retention_days(default) is None
