"""A gateway with the dashboard (the local server's app, as `gatewayz serve`) in front of the fake
upstreams, on a SQLite database of its own, and its users: created through the admin API."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_KEY, gateway_settings, start_gateway
from tests.fakes.server import FakeServer
from tests.harness import GatewayServer
from tests.web.browser import launch, new_page


@dataclass
class WebUser:
    id: str
    email: str
    key: str


@pytest.fixture(scope="session")
def web_gateway(
    fakes: dict[str, FakeServer], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayServer]:
    db = f"sqlite:///{tmp_path_factory.mktemp('web') / 'gatewayz.db'}"
    from tests.conftest import provision

    provision(gateway_settings(fakes, db), "bootstrap@example.com", 0)  # migrates the database
    server = start_gateway(gateway_settings(fakes, db))
    yield server
    server.stop()


def make_user(gateway: GatewayServer, role: str = "user", credits: str = "10") -> WebUser:
    email = f"{role}-{os.urandom(5).hex()}@example.com"
    answer = httpx.post(
        f"{gateway.url}/admin/users",
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
        json={"email": email, "role": role, "credits": credits, "plan": "pro"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return WebUser(body["user"]["id"], email, body["key"]["key"])


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', html)
    assert found, "the page has no CSRF token"
    return found.group(1)


def signed_in_client(gateway: GatewayServer, key: str) -> httpx.Client:
    """An HTTP client with a dashboard session (through the sign-in form, as a browser would).
    The cookies are Secure: httpx keeps them for http://127.0.0.1 only if told it is secure, so
    they are carried by hand."""
    answer = sign_in(gateway, key)
    assert answer.status_code == 303, answer.text
    client = httpx.Client(base_url=gateway.url, timeout=20, follow_redirects=False)
    OPEN.append(client)
    client.cookies.set("gz_session", answer.cookies["gz_session"])
    return client


OPEN: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().close()


def sign_in(gateway: GatewayServer, key: str, **extra: str) -> httpx.Response:
    """The sign-in form, fetched then posted with its token and pre-session cookie."""
    form = httpx.get(f"{gateway.url}/sign-in")
    pre = form.cookies["gz_presession"]
    return httpx.post(
        f"{gateway.url}/sign-in",
        data={"api_key": key, "csrf_token": csrf_of(form.text), **extra},
        headers={"cookie": f"gz_presession={pre}"},
    )


@pytest.fixture
def web_user(web_gateway: GatewayServer) -> WebUser:
    return make_user(web_gateway)


def page_text(client: httpx.Client, path: str) -> Any:
    answer = client.get(path)
    assert answer.status_code == 200, (path, answer.status_code, answer.text[:500])
    return answer.text


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    yield from new_page(browser)
