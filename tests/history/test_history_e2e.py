"""Chat history end to end (issue 18): the official SDKs against a gateway on loopback (SQLite,
with an encryption key ring), the fake upstreams at the HTTP edge.

History is written for opted-in requests only (header, key attribute, Responses `store: true`),
streamed or not, on chat and on Messages (translated and native); a failing write leaves the
answer intact; search finds; another user gets 404; share links are public, expire, revoke and
show no secret or cost; retention deletes; feedback is owner-only and exported to admins.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import anthropic
import httpx
import openai
import pytest
from cryptography.fernet import Fernet

from shared.config import Settings
from shared.store import now_text
from tests.conftest import ADMIN_KEY, Account, gateway_settings, provision, start_gateway
from tests.fakes.server import FakeServer, Reply
from tests.harness import GatewayServer
from tests.store.support import query

KEY = Fernet.generate_key().decode()
GPT, GPT_NATIVE = "openai/gpt-4o", "gpt-4o"
CLAUDE, CLAUDE_NATIVE = "claude-opus-5-5", "claude-opus-5-5"
ON = {"x-gatewayz-history": "on"}


class Gw:
    def __init__(self, server: GatewayServer, settings: Settings, alice: Account, bob: Account) -> None:
        self.server = server
        self.settings = settings
        self.alice = alice
        self.bob = bob
        self.http = httpx.Client(base_url=server.url, timeout=20)

    def call(self, method: str, path: str, who: Account | None = None, **kwargs: Any) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if who is not None:
            headers["authorization"] = f"Bearer {who.key}"
        return self.http.request(method, path, headers=headers, **kwargs)

    def sessions(self, who: Account, **params: Any) -> list[dict[str, Any]]:
        response = self.call("GET", "/v1/sessions", who, params=params)
        assert response.status_code == 200, response.text
        return list(response.json()["data"])

    def session(self, who: Account, session_id: str) -> dict[str, Any]:
        response = self.call("GET", f"/v1/sessions/{session_id}", who)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return query(self.settings.database_url, sql, params)

    def openai(self, who: Account) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.server.url}/v1", api_key=who.key, max_retries=0, timeout=20)


@pytest.fixture(scope="module")
def gw(fakes: dict[str, FakeServer], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gw]:
    db = f"sqlite:///{tmp_path_factory.mktemp('history') / 'gatewayz.db'}"
    settings = gateway_settings(fakes, db, GATEWAYZ_ENCRYPTION_KEYS=KEY)
    alice = provision(settings, "alice-history@example.com", Decimal(100))
    bob = provision(settings, "bob-history@example.com", Decimal(100))
    gateway = Gw(start_gateway(settings), settings, alice, bob)
    yield gateway
    gateway.http.close()
    gateway.server.stop()


@pytest.fixture(autouse=True)
def _fresh_history(request: pytest.FixtureRequest, fakes: dict[str, FakeServer]) -> Iterator[None]:
    for fake in fakes.values():
        fake.reset()
    yield
    if "gw" in request.fixturenames:
        gw: Gw = request.getfixturevalue("gw")
        for table in ("chat_messages", "chat_shares", "chat_sessions", "chat_feedback"):
            gw.rows(f"DELETE FROM {table}")


def test_history_is_written_for_opted_in_requests_only_streamed_or_not(
    gw: Gw, fakes: dict[str, FakeServer]
) -> None:
    openai_fake = fakes["openai"]
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}]
    with gw.openai(gw.alice) as sdk:
        openai_fake.script(GPT_NATIVE, Reply(text="Not recorded."))
        sdk.chat.completions.create(model=GPT, messages=messages)  # type: ignore[arg-type]
        assert gw.sessions(gw.alice) == []

        openai_fake.script(GPT_NATIVE, Reply(text="Paris is the capital."))
        raw = sdk.chat.completions.with_raw_response.create(model=GPT, messages=messages, extra_headers=ON)  # type: ignore[arg-type]
        answer = raw.parse()
        assert answer.choices[0].message.content == "Paris is the capital."
        session_id = raw.headers["x-gatewayz-session-id"]

        openai_fake.script(GPT_NATIVE, Reply(text="Streamed answer in pieces.", chunks=4))
        stream = sdk.chat.completions.with_raw_response.create(
            model=GPT,
            messages=[{"role": "user", "content": "Stream please"}],
            stream=True,
            extra_headers=ON,
        )
        streamed_id = stream.headers["x-gatewayz-session-id"]
        text = "".join(c.choices[0].delta.content or "" for c in stream.parse() if c.choices)
        assert text == "Streamed answer in pieces."

    listed = gw.sessions(gw.alice)
    assert {s["id"] for s in listed} == {session_id, streamed_id}
    whole = gw.session(gw.alice, session_id)
    assert whole["title"] == "Capital of France?" and whole["model"] == GPT
    assert [(m["role"], m["content"]) for m in whole["messages"]] == [
        ("system", "Be brief."),
        ("user", "Capital of France?"),
        ("assistant", "Paris is the capital."),
    ]
    assert [m["content"] for m in gw.session(gw.alice, streamed_id)["messages"]] == [
        "Stream please",
        "Streamed answer in pieces.",
    ]
    # At rest: ciphertext only.
    stored = gw.rows("SELECT content FROM chat_messages")
    assert stored and all("Paris" not in r["content"] and "Stream" not in r["content"] for r in stored)
    assert gw.sessions(gw.bob) == []


def test_messages_native_and_translated_are_recorded_stream_and_not(
    gw: Gw, fakes: dict[str, FakeServer]
) -> None:
    fakes["anthropic"].script(
        CLAUDE_NATIVE, Reply(text="Native whole."), Reply(text="Native streamed.", chunks=3)
    )
    fakes["openai"].script(GPT_NATIVE, Reply(text="Translated streamed.", chunks=2))
    with anthropic.Anthropic(
        base_url=gw.server.url, api_key=gw.alice.key, max_retries=0, timeout=20, default_headers=ON
    ) as sdk:
        message = sdk.messages.create(
            model=CLAUDE, max_tokens=50, messages=[{"role": "user", "content": "native please"}]
        )
        assert message.content[0].text == "Native whole."  # type: ignore[union-attr]
        with sdk.messages.stream(
            model=CLAUDE, max_tokens=50, messages=[{"role": "user", "content": "native stream"}]
        ) as stream:
            assert stream.get_final_text() == "Native streamed."
        with sdk.messages.stream(
            model=GPT, max_tokens=50, messages=[{"role": "user", "content": "translated stream"}]
        ) as stream:
            assert stream.get_final_text() == "Translated streamed."

    by_title = {s["title"]: s for s in gw.sessions(gw.alice)}
    assert set(by_title) == {"native please", "native stream", "translated stream"}
    answers = {t: gw.session(gw.alice, s["id"])["messages"][-1]["content"] for t, s in by_title.items()}
    assert answers == {
        "native please": "Native whole.",
        "native stream": "Native streamed.",
        "translated stream": "Translated streamed.",
    }


def test_a_key_with_store_history_records_and_the_header_turns_it_off(
    gw: Gw, fakes: dict[str, FakeServer]
) -> None:
    keys = gw.call("GET", "/v1/keys", gw.alice).json()["data"]
    patched = gw.call("PATCH", f"/v1/keys/{keys[0]['id']}", gw.alice, json={"store_history": True})
    assert patched.status_code == 200, patched.text
    assert patched.json()["store_history"] is True
    assert (
        gw.call("PATCH", f"/v1/keys/{keys[0]['id']}", gw.alice, json={"store_history": "yes"}).status_code
        == 400
    )

    fakes["openai"].script(GPT_NATIVE, Reply(text="kept"), Reply(text="not kept"))
    try:
        with gw.openai(gw.alice) as sdk:
            sdk.chat.completions.create(model=GPT, messages=[{"role": "user", "content": "by key"}])
            sdk.chat.completions.create(
                model=GPT,
                messages=[{"role": "user", "content": "opted out"}],
                extra_headers={"x-gatewayz-history": "off"},
            )
    finally:  # the other tests expect a key without history by default
        off = gw.call("PATCH", f"/v1/keys/{keys[0]['id']}", gw.alice, json={"store_history": False})
        assert off.json()["store_history"] is False
    assert [s["title"] for s in gw.sessions(gw.alice)] == ["by key"]


def test_responses_store_true_is_recorded(gw: Gw, fakes: dict[str, FakeServer]) -> None:
    fakes["openai"].script(GPT_NATIVE, Reply(text="Stored response."))
    with gw.openai(gw.alice) as sdk:
        sdk.responses.create(model=GPT, input="remember this", store=True)
    (session,) = gw.sessions(gw.alice)
    assert [m["content"] for m in gw.session(gw.alice, session["id"])["messages"]] == [
        "remember this",
        "Stored response.",
    ]


def test_a_session_continues_with_its_header(gw: Gw, fakes: dict[str, FakeServer]) -> None:
    fakes["openai"].script(GPT_NATIVE, Reply(text="Hello!"), Reply(text="Fine, thanks."))
    with gw.openai(gw.alice) as sdk:
        first = sdk.chat.completions.with_raw_response.create(
            model=GPT, messages=[{"role": "user", "content": "Hi"}], extra_headers=ON
        )
        session_id = first.headers["x-gatewayz-session-id"]
        again = sdk.chat.completions.with_raw_response.create(
            model=GPT,
            messages=[
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "How are you?"},
            ],
            extra_headers={**ON, "x-gatewayz-session-id": session_id},
        )
        assert again.headers["x-gatewayz-session-id"] == session_id
    session = gw.session(gw.alice, session_id)
    assert [m["content"] for m in session["messages"]] == ["Hi", "Hello!", "How are you?", "Fine, thanks."]
    assert len(gw.sessions(gw.alice)) == 1


def test_bad_history_headers_are_a_400_that_changes_nothing(gw: Gw) -> None:
    balance = gw.rows("SELECT balance_pico FROM users WHERE id = :u", {"u": gw.alice.user_id})
    body = {"model": GPT, "messages": [{"role": "user", "content": "x"}]}
    for headers in ({"x-gatewayz-history": "maybe"}, {**ON, "x-gatewayz-session-id": "ses_../../etc"}):
        response = gw.call("POST", "/v1/chat/completions", gw.alice, json=body, headers=headers)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] in ("x-gatewayz-history", "x-gatewayz-session-id")
    assert gw.rows("SELECT balance_pico FROM users WHERE id = :u", {"u": gw.alice.user_id}) == balance
    assert gw.sessions(gw.alice) == []


def test_a_failing_history_write_does_not_fail_the_answer(gw: Gw, fakes: dict[str, FakeServer]) -> None:
    fakes["openai"].script(GPT_NATIVE, Reply(text="Still answered."), Reply(text="Still streamed.", chunks=2))
    failed = gw.server.runtime.history.failed
    gw.rows("ALTER TABLE chat_messages RENAME TO chat_messages_away")  # the write's table is gone
    try:
        with gw.openai(gw.alice) as sdk:
            answer = sdk.chat.completions.create(
                model=GPT, messages=[{"role": "user", "content": "fail the write"}], extra_headers=ON
            )
            assert answer.choices[0].message.content == "Still answered."
            stream = sdk.chat.completions.create(
                model=GPT,
                messages=[{"role": "user", "content": "fail it too"}],
                stream=True,
                extra_headers=ON,
            )
            assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Still streamed."
    finally:
        gw.rows("ALTER TABLE chat_messages_away RENAME TO chat_messages")
    assert gw.server.runtime.history.failed == failed + 2
    assert gw.sessions(gw.alice) == []  # the transaction left nothing half-written


def test_search_finds_and_another_user_gets_404(gw: Gw, fakes: dict[str, FakeServer]) -> None:
    fakes["openai"].script(GPT_NATIVE, Reply(text="Volcanoes erupt magma."), Reply(text="Boil the water."))
    with gw.openai(gw.alice) as sdk:
        for prompt in ("Tell me about volcanoes", "How to cook pasta"):
            sdk.chat.completions.create(
                model=GPT, messages=[{"role": "user", "content": prompt}], extra_headers=ON
            )
    found = gw.sessions(gw.alice, q="MAGMA")
    assert [s["title"] for s in found] == ["Tell me about volcanoes"] and "magma" in found[0]["match"]
    assert gw.sessions(gw.alice, q="nothing like this") == []
    assert gw.sessions(gw.bob, q="magma") == []
    assert len(gw.sessions(gw.alice, model=GPT)) == 2 and gw.sessions(gw.alice, model="x/y") == []
    assert gw.call("GET", "/v1/sessions", gw.alice, params={"since": "yesterday"}).status_code == 400

    session_id = found[0]["id"]
    for method, path, body in (
        ("GET", f"/v1/sessions/{session_id}", None),
        ("PATCH", f"/v1/sessions/{session_id}", {"title": "mine"}),
        ("DELETE", f"/v1/sessions/{session_id}", None),
        ("POST", f"/v1/sessions/{session_id}/share", {}),
        ("DELETE", f"/v1/sessions/{session_id}/share", None),
    ):
        response = gw.call(method, path, gw.bob, json=body)
        assert response.status_code == 404, (method, path, response.text)
    message_id = gw.session(gw.alice, session_id)["messages"][-1]["id"]
    stolen = gw.call("POST", "/v1/feedback", gw.bob, json={"message_id": message_id, "thumbs": "down"})
    assert stolen.status_code == 404
    assert gw.session(gw.alice, session_id)["title"] == "Tell me about volcanoes"  # untouched

    renamed = gw.call("PATCH", f"/v1/sessions/{session_id}", gw.alice, json={"title": "Geology"})
    assert renamed.status_code == 200 and renamed.json()["title"] == "Geology"
    assert gw.call("DELETE", f"/v1/sessions/{session_id}", gw.alice).json()["deleted"] is True
    assert gw.call("GET", f"/v1/sessions/{session_id}", gw.alice).status_code == 404
    assert gw.rows("SELECT id FROM chat_messages WHERE session_id = :s", {"s": session_id}) == []


def test_a_share_link_is_public_read_only_expires_and_revokes(gw: Gw, fakes: dict[str, FakeServer]) -> None:
    fakes["openai"].script(GPT_NATIVE, Reply(text="Shareable answer."))
    with gw.openai(gw.alice) as sdk:
        raw = sdk.chat.completions.with_raw_response.create(
            model=GPT, messages=[{"role": "user", "content": "Share me"}], extra_headers=ON
        )
    session_id = raw.headers["x-gatewayz-session-id"]
    share = gw.call("POST", f"/v1/sessions/{session_id}/share", gw.alice, json={"expires_in": 3600})
    assert share.status_code == 200, share.text
    url = share.json()["url"]
    assert url.startswith(gw.server.url) and share.json()["token"] in url

    public = httpx.get(url, timeout=10)  # no key
    assert public.status_code == 200, public.text
    body = public.json()
    assert [(m["role"], m["content"]) for m in body["messages"]] == [
        ("user", "Share me"),
        ("assistant", "Shareable answer."),
    ]
    page = httpx.get(url, headers={"accept": "text/html"}, timeout=10)  # a browser opening the link
    assert page.headers["content-type"].startswith("text/html")
    assert "Shareable answer." in page.text and "<script" not in page.text
    for secret in (
        gw.alice.key,
        gw.alice.user_id,
        "cost",
        "request_id",
        "user_id",
        raw.headers["x-request-id"],
    ):
        assert secret not in public.text and secret not in page.text

    assert (
        gw.call("POST", f"/v1/sessions/{session_id}/share", gw.alice, json={"expires_in": 5}).status_code
        == 400
    )
    assert gw.call("DELETE", f"/v1/sessions/{session_id}/share", gw.alice).json()["revoked"] == 1
    assert httpx.get(url, timeout=10).status_code == 404

    later = gw.call("POST", f"/v1/sessions/{session_id}/share", gw.alice, json={}).json()
    gw.rows(
        "UPDATE chat_shares SET expires_at = '2020-01-01T00:00:00.000000Z' WHERE session_id = :s",
        {"s": session_id},
    )
    assert httpx.get(later["url"], timeout=10).status_code == 404
    assert httpx.get(f"{gw.server.url}/v1/shared/{'x' * 43}", timeout=10).status_code == 404


def test_retention_setting_and_the_purge_job(
    gw: Gw, fakes: dict[str, FakeServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = gw.call("GET", "/v1/history/settings", gw.alice).json()
    assert settings == {
        "object": "history.settings",
        "retention_days": None,
        "effective_retention_days": 90,
        "available": True,
    }
    assert gw.call("PATCH", "/v1/history/settings", gw.alice, json={"retention_days": 0}).status_code == 400
    patched = gw.call("PATCH", "/v1/history/settings", gw.alice, json={"retention_days": 1})
    assert patched.json()["effective_retention_days"] == 1

    fakes["openai"].script(GPT_NATIVE, Reply(text="old"), Reply(text="fresh"), Reply(text="bob's"))
    made = {}
    for who, prompt in ((gw.alice, "old chat"), (gw.alice, "fresh chat"), (gw.bob, "bob chat")):
        with gw.openai(who) as sdk:
            raw = sdk.chat.completions.with_raw_response.create(
                model=GPT, messages=[{"role": "user", "content": prompt}], extra_headers=ON
            )
            made[prompt] = raw.headers["x-gatewayz-session-id"]
    three_days_ago = now_text(datetime.now(UTC) - timedelta(days=3))
    for prompt in ("old chat", "bob chat"):
        gw.rows(
            "UPDATE chat_sessions SET updated_at = :t WHERE id = :s", {"t": three_days_ago, "s": made[prompt]}
        )

    assert gw.call("GET", "/internal/jobs/purge-history").status_code == 401  # no CRON_SECRET set
    monkeypatch.setenv("CRON_SECRET", "cron-secret-for-history-tests")
    wrong = gw.call("GET", "/internal/jobs/purge-history", headers={"authorization": "Bearer wrong"})
    assert wrong.status_code == 401
    purged = gw.call(
        "GET",
        "/internal/jobs/purge-history",
        headers={"authorization": "Bearer cron-secret-for-history-tests"},
    )
    assert purged.status_code == 200, purged.text
    assert purged.json() == {"deleted_sessions": 1}
    # Alice keeps 1 day: her 3-day-old session goes, messages too; Bob's default is 90 days.
    assert [s["id"] for s in gw.sessions(gw.alice)] == [made["fresh chat"]]
    assert gw.rows("SELECT id FROM chat_messages WHERE session_id = :s", {"s": made["old chat"]}) == []
    assert [s["id"] for s in gw.sessions(gw.bob)] == [made["bob chat"]]
    gw.call("PATCH", "/v1/history/settings", gw.alice, json={"retention_days": None})


def test_feedback_on_a_message_or_a_request_and_the_admin_export(
    gw: Gw, fakes: dict[str, FakeServer]
) -> None:
    fakes["openai"].script(GPT_NATIVE, Reply(text="Rate me."), Reply(text="Unrecorded."))
    with gw.openai(gw.alice) as sdk:
        raw = sdk.chat.completions.with_raw_response.create(
            model=GPT, messages=[{"role": "user", "content": "feedback please"}], extra_headers=ON
        )
        plain = sdk.chat.completions.with_raw_response.create(
            model=GPT, messages=[{"role": "user", "content": "no history"}]
        )
    message_id = gw.session(gw.alice, raw.headers["x-gatewayz-session-id"])["messages"][-1]["id"]
    on_message = gw.call(
        "POST", "/v1/feedback", gw.alice, json={"message_id": message_id, "thumbs": "up", "rating": 5}
    )
    assert on_message.status_code == 200, on_message.text
    assert on_message.json()["message_id"] == message_id and on_message.json()["rating"] == 5
    request_id = plain.headers["x-request-id"]
    on_request = gw.call(
        "POST", "/v1/feedback", gw.alice, json={"request_id": request_id, "comment": "=HYPERLINK(1)"}
    )
    assert on_request.status_code == 200, on_request.text
    assert (
        gw.call("POST", "/v1/feedback", gw.bob, json={"request_id": request_id, "rating": 1}).status_code
        == 404
    )
    for bad in (
        {"message_id": message_id, "rating": 6},
        {"message_id": message_id},
        {"message_id": message_id, "request_id": request_id, "thumbs": "up"},
        {"thumbs": "up"},
        {"message_id": message_id, "thumbs": "sideways"},
    ):
        assert gw.call("POST", "/v1/feedback", gw.alice, json=bad).status_code == 400, bad

    assert gw.call("GET", "/admin/feedback", gw.alice).status_code in (401, 403)
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    exported = gw.call("GET", "/admin/feedback", headers=admin)
    assert exported.status_code == 200, exported.text
    rows = exported.json()["data"]
    assert [(r["user_id"], r["thumbs"], r["rating"]) for r in rows] == [
        (gw.alice.user_id, "up", 5),
        (gw.alice.user_id, None, None),
    ]
    as_csv = gw.call("GET", "/admin/feedback", headers=admin, params={"format": "csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    parsed = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert parsed[1]["comment"] == "'=HYPERLINK(1)"  # a formula is written as text


def test_store_history_needs_the_key_ring(gateway: GatewayServer, account: Account) -> None:
    """The default test gateway has no GATEWAYZ_ENCRYPTION_KEYS: history cannot be turned on."""
    headers = {"authorization": f"Bearer {account.key}"}
    made = httpx.post(f"{gateway.url}/v1/keys", headers=headers, json={"store_history": True}, timeout=10)
    assert made.status_code == 400 and made.json()["error"]["code"] == "history_not_available"
