"""The operators' pages (issue 19 §3): the audit log (`GET /admin/audit`: filters, pages, what a
grant's reason says, shown as text) and incidents on the health page (`GET /v1/status`), for a
provider the probes found dead."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_KEY, gateway_settings, provision, start_gateway
from tests.fakes.openai_fake import OpenAIFake
from tests.fakes.server import FakeServer, Reply
from tests.harness import GatewayServer
from tests.web.browser import serious_violations, shot, sign_in
from tests.web.conftest import WebUser, csrf_of, make_user, page_text, signed_in_client

CRON = "cron-secret-for-the-dashboard-tests"


def test_the_audit_log_shows_a_grant_and_its_reason_as_text(
    web_gateway: GatewayServer, web_user: WebUser
) -> None:
    admin = make_user(web_gateway, role="admin")
    client = signed_in_client(web_gateway, admin.key)
    token = csrf_of(page_text(client, "/dashboard/admin/users"))
    reason = "goodwill <img src=x onerror=alert(1)>"
    answer = client.post(
        f"/dashboard/admin/users/{web_user.id}/credits",
        data={"csrf_token": token, "amount": "3", "reason": reason},
    )
    assert answer.status_code == 303
    html = page_text(client, f"/dashboard/admin/audit?action=credits.*&target={web_user.id}")
    rows = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0].split("<tr>")[1:]
    assert len(rows) == 2  # the grant, then the user's initial credits
    newest = rows[0]
    assert "credits.grant" in newest and admin.id in newest
    assert "goodwill &lt;img src=x onerror=alert(1)&gt;" in newest and "<img" not in html
    assert "initial credits" in rows[1]
    # Another action's filter does not show it; a filter the API cannot read is its 400.
    assert "credits.grant" not in page_text(
        client, f"/dashboard/admin/audit?action=key.*&target={web_user.id}"
    )
    bad = client.get("/dashboard/admin/audit?since=yesterday-ish")
    assert bad.status_code == 400 and "since" in bad.text


def test_the_audit_log_pages(web_gateway: GatewayServer) -> None:
    admin = make_user(web_gateway, role="admin")
    target = make_user(web_gateway)
    for i in range(52):  # more than one page of 50
        answer = httpx.post(
            f"{web_gateway.url}/admin/users/{target.id}/credits",
            headers={"authorization": f"Bearer {ADMIN_KEY}"},
            json={"amount": "0.01", "reason": f"seed {i}"},
        )
        assert answer.status_code == 200
    client = signed_in_client(web_gateway, admin.key)
    first = page_text(client, f"/dashboard/admin/audit?target={target.id}&action=credits.grant")
    assert "seed 51" in first and "seed 1<" not in first
    older = first.split('rel="next"', 1)[0].rsplit('href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    assert f"target={target.id}" in older  # the filters stay on the next page
    second = page_text(client, older)
    assert "seed 0<" in second and "seed 1<" in second and "seed 51" not in second


@pytest.fixture
def probing(
    fakes: dict[str, FakeServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[GatewayServer]:
    monkeypatch.setenv("CRON_SECRET", CRON)
    settings = gateway_settings(
        fakes,
        f"sqlite:///{tmp_path / 'gatewayz.db'}",
        GATEWAYZ_PROBE_MODELS="openai/gpt-4o",  # offered by openai and openrouter
        GATEWAYZ_BREAKER_MIN_REQUESTS="1",
        GATEWAYZ_BREAKER_COOLDOWN="0.5",
        GATEWAYZ_INCIDENT_AFTER="0",
    )
    provision(settings, "probe@example.com", Decimal(0))  # migrates the database
    server = start_gateway(settings)
    yield server
    server.stop()


def probe(gateway: GatewayServer) -> dict[str, Any]:
    answer = httpx.get(
        f"{gateway.url}/internal/jobs/probes", headers={"authorization": f"Bearer {CRON}"}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_the_health_page_shows_incidents_and_their_end(
    page: Any, probing: GatewayServer, openai_fake: OpenAIFake
) -> None:
    openai_fake.script("gpt-4o", Reply(status=503))
    assert probe(probing)["incidents_opened"] == 2
    admin = make_user(probing, role="admin")
    sign_in(page, probing, admin.key)
    page.get_by_role("link", name="Health").click()
    rows = page.locator("#incidents tbody tr").all_inner_texts()
    assert sorted(r.split("\t")[:3] for r in rows) == [
        ["ongoing", "openai", "every model"],
        ["ongoing", "openai", "openai/gpt-4o"],
    ]
    assert "0.00%" in page.locator("tr", has_text="OpenAI").first.inner_text()
    shot(page, "admin-health-incidents")
    assert not serious_violations(page)

    time.sleep(0.6)  # the breakers' cooldown: the next probe is their trial, and succeeds
    assert probe(probing)["incidents_resolved"] == 2
    page.reload()
    assert {r.split("\t")[0] for r in page.locator("#incidents tbody tr").all_inner_texts()} == {"resolved"}
