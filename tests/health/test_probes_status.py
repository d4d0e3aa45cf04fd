"""Scheduled probes, incidents and the status page (issue 15), against the fake upstream over HTTP:
a probe run with one dead provider opens its breakers and incidents, which `/status` (HTML) and
`/v1/status` show; when it recovers the next run resolves them. The cron route wants the secret."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import gateway_settings, provision, start_gateway
from tests.fakes.openai_fake import OpenAIFake
from tests.fakes.server import Reply

SECRET = "cron-secret-for-the-probe-tests"


@pytest.fixture
def probing(fakes: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("CRON_SECRET", SECRET)
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
    try:
        yield server.url
    finally:
        server.stop()


def probe(url: str) -> dict[str, Any]:
    r = httpx.get(f"{url}/internal/jobs/probes", headers={"authorization": f"Bearer {SECRET}"}, timeout=30)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_the_cron_route_refuses_a_call_without_the_secret(probing: str, openai_fake: OpenAIFake) -> None:
    assert httpx.get(f"{probing}/internal/jobs/probes", timeout=10).status_code == 401
    wrong = httpx.get(f"{probing}/internal/jobs/probes", headers={"authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401
    assert openai_fake.requests == []  # nothing was probed


def test_a_dead_provider_opens_an_incident_the_status_page_shows_and_recovery_resolves(
    probing: str, openai_fake: OpenAIFake
) -> None:
    openai_fake.script("gpt-4o", Reply(status=503))
    run = probe(probing)
    assert run == {"probed": 2, "failed": 1, "incidents_opened": 2, "incidents_resolved": 0}
    bodies = openai_fake.bodies_for("gpt-4o") + openai_fake.bodies_for("openai/gpt-4o")
    assert [b["max_tokens"] for b in bodies] == [1, 1]  # cheap

    status = httpx.get(f"{probing}/v1/status", timeout=10).json()
    ongoing = {(i["provider"], i["model"]) for i in status["incidents"] if i["status"] == "ongoing"}
    assert ongoing == {("openai", "openai/gpt-4o"), ("openai", None)}
    assert status["uptime"]["openai"]["24h"] == 0.0 and status["uptime"]["openrouter"]["24h"] == 1.0
    providers = {p["id"]: p["status"] for p in status["providers"]}
    assert providers["openai"] == "degraded" and providers["openrouter"] == "operational"
    page = httpx.get(f"{probing}/status", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "ongoing: openai / openai/gpt-4o" in page.text and "max-age" in page.headers["cache-control"]

    time.sleep(0.6)  # the cooldown: half-open, and the next probe is its trial
    run = probe(probing)
    assert run == {"probed": 2, "failed": 0, "incidents_opened": 0, "incidents_resolved": 2}
    status = httpx.get(f"{probing}/v1/status", timeout=10).json()
    assert {i["status"] for i in status["incidents"]} == {"resolved"}
    assert status["breakers"] == []
    assert status["uptime"]["openai"]["24h"] == 0.5
    assert "No incidents" not in httpx.get(f"{probing}/status", timeout=10).text  # resolved ones stay listed
