"""The dashboard's chat history switches (issue 19, settings "history on/off"): a key created with
history on, a key's history turned on and off from the settings page, the retention saved — each
through the same JSON routes a script uses (`PATCH /v1/keys/{id}`, `PATCH /v1/history/settings`),
and a chat request made with a key whose history the page turned on is found in `/v1/sessions`."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from tests.conftest import gateway_settings, provision, start_gateway
from tests.fakes.server import FakeServer
from tests.harness import GatewayServer
from tests.web.conftest import csrf_of, make_user, page_text, signed_in_client


@pytest.fixture(scope="module")
def history_gateway(
    fakes: dict[str, FakeServer], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayServer]:
    db = f"sqlite:///{tmp_path_factory.mktemp('web-history') / 'gatewayz.db'}"
    settings = gateway_settings(fakes, db, GATEWAYZ_ENCRYPTION_KEYS=Fernet.generate_key().decode())
    provision(settings, "bootstrap-history@example.com", 0)  # migrates the database
    server = start_gateway(settings)
    yield server
    server.stop()


def api(gateway: GatewayServer, key: str, method: str, path: str, **kwargs: Any) -> Any:
    answer = httpx.request(
        method, gateway.url + path, headers={"authorization": f"Bearer {key}"}, timeout=20, **kwargs
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def post_form(client: httpx.Client, path: str, data: dict[str, str]) -> httpx.Response:
    token = csrf_of(page_text(client, "/dashboard/settings"))
    return client.post(path, data={**data, "csrf_token": token})


def test_history_is_switched_per_key_and_its_retention_saved(history_gateway: GatewayServer) -> None:
    user = make_user(history_gateway)
    client = signed_in_client(history_gateway, user.key)

    # A key created with the box checked keeps history; the API says so.
    token = csrf_of(page_text(client, "/dashboard/keys"))
    made = client.post(
        "/dashboard/keys", data={"name": "with-history", "store_history": "true", "csrf_token": token}
    )
    assert made.status_code == 201, made.text
    keys = {k["name"]: k for k in api(history_gateway, user.key, "GET", "/v1/keys")["data"]}
    assert keys["with-history"]["store_history"] is True

    # The settings page turns the sign-in key's history on, then off, through PATCH /v1/keys/{id}.
    own = next(k for k in keys.values() if k["name"] != "with-history")
    assert own["store_history"] is False
    html = page_text(client, "/dashboard/settings")
    assert f"Turn history on for {own['name']}" in html
    assert html.count("<h2>Chat history</h2>") == 1 and re.search(r"<title>Settings[^<]*</title>", html)
    answer = post_form(client, f"/dashboard/keys/{own['id']}/history", {"store_history": "true"})
    assert answer.status_code == 303 and answer.headers["location"] == "/dashboard/settings?done=history"
    assert api(history_gateway, user.key, "GET", f"/v1/keys/{own['id']}")["store_history"] is True

    # A request with that key is recorded: the session appears (written after the answer).
    chat = api(
        history_gateway,
        user.key,
        "POST",
        "/v1/chat/completions",
        json={"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "remember the dashboard"}]},
    )
    assert chat["choices"]
    deadline = time.monotonic() + 10
    sessions: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not sessions:
        sessions = api(history_gateway, user.key, "GET", "/v1/sessions")["data"]
        time.sleep(0.05)
    assert sessions and "remember the dashboard" in sessions[0]["title"]

    answer = post_form(client, f"/dashboard/keys/{own['id']}/history", {"store_history": "false"})
    assert answer.status_code == 303
    assert api(history_gateway, user.key, "GET", f"/v1/keys/{own['id']}")["store_history"] is False

    # Retention: saved through PATCH /v1/history/settings, blank back to the default.
    answer = post_form(client, "/dashboard/settings/history", {"retention_days": "7"})
    assert answer.status_code == 303
    assert api(history_gateway, user.key, "GET", "/v1/history/settings")["retention_days"] == 7
    assert re.search(r'name="retention_days"[^>]*value="7"', page_text(client, "/dashboard/settings"))
    answer = post_form(client, "/dashboard/settings/history", {"retention_days": ""})
    assert answer.status_code == 303
    assert api(history_gateway, user.key, "GET", "/v1/history/settings")["retention_days"] is None

    # Bad input is the API's 400 on the page, and changes nothing.
    answer = post_form(client, "/dashboard/settings/history", {"retention_days": "0"})
    assert answer.status_code == 400
    assert api(history_gateway, user.key, "GET", "/v1/history/settings")["retention_days"] is None


def test_the_history_forms_need_the_csrf_token(history_gateway: GatewayServer) -> None:
    user = make_user(history_gateway)
    client = signed_in_client(history_gateway, user.key)
    key_id = api(history_gateway, user.key, "GET", "/v1/keys")["data"][0]["id"]
    for path, data in (
        (f"/dashboard/keys/{key_id}/history", {"store_history": "true"}),
        ("/dashboard/settings/history", {"retention_days": "7"}),
    ):
        assert client.post(path, data=data).status_code == 403, path
    assert api(history_gateway, user.key, "GET", f"/v1/keys/{key_id}")["store_history"] is False
    assert api(history_gateway, user.key, "GET", "/v1/history/settings")["retention_days"] is None


def test_without_a_key_ring_the_page_says_history_is_unavailable(web_gateway: GatewayServer) -> None:
    user = make_user(web_gateway)
    client = signed_in_client(web_gateway, user.key)
    assert "Chat history is not available on this gateway" in page_text(client, "/dashboard/settings")
