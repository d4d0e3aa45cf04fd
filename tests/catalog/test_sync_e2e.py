"""Catalog sync end to end (issue 15 item 5), on SQLite and PostgreSQL, from recorded fixtures (no
network): the fakes serve OpenAI's, Anthropic's (paged), Gemini's (paged) and OpenRouter's model
lists, the price source is an OpenRouter-format file. `gatewayz catalog sync` runs as its own
process would (its own runtime), and a gateway that was already serving picks the overlay up:
a new model becomes callable (and is billed at its synced price), a removed one is a 404 that
says why, a price change is applied and reported, a pinned model's change is reported only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from shared.config import Settings
from tests.conftest import ADMIN_KEY, Account, gateway_settings, provision, start_gateway
from tests.harness import GatewayServer
from tests.store.support import BACKENDS, database_url

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "catalog_sync"
SYNCED = "openai,anthropic,google,openrouter"


def _fixture(name: str) -> Any:
    return orjson.loads((FIXTURES / name).read_bytes())


@pytest.fixture(params=BACKENDS)
def synced_gateway(
    request: pytest.FixtureRequest, tmp_path: Path, fakes: dict[str, Any]
) -> Iterator[tuple[GatewayServer, Settings, Account]]:
    with database_url(request.param, tmp_path) as url:
        settings = gateway_settings(
            fakes,
            url,
            GATEWAYZ_CATALOG_REFRESH_SECONDS="0.05",
            GATEWAYZ_CATALOG_SYNC_PROVIDERS=SYNCED,
            GATEWAYZ_CATALOG_PRICES=str(FIXTURES / "openrouter_models.json"),
        )
        account = provision(settings, "sync@example.com", Decimal(100))
        server = start_gateway(settings)
        try:
            yield server, settings, account
        finally:
            server.stop()


def _serve_lists(openai_fake: Any, anthropic_fake: Any, gemini_fake: Any) -> None:
    openai_fake.listings["openai"] = _fixture("openai_models.json")
    openai_fake.listings["openrouter"] = _fixture("openrouter_models.json")
    anthropic_fake.listings["models"] = _fixture("anthropic_models.json")["data"]
    gemini_fake.listings["models"] = _fixture("gemini_models.json")["models"]
    anthropic_fake.page_cap = 4  # 15 models: 4 pages by after_id
    gemini_fake.page_cap = 5  # 8 models: 2 pages by pageToken


def _cli(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str
) -> Any:
    """`gatewayz …` with the deployment's environment, off the main thread (it runs its own loop)."""
    from shared.cli import main

    for name, value in settings.env.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    result: list[int] = []
    worker = threading.Thread(target=lambda: result.append(main(list(argv))))
    worker.start()
    worker.join(120)
    out = capsys.readouterr()
    assert result == [0], out.err
    return orjson.loads(out.out)


def _admin(gateway: GatewayServer, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    return httpx.request(method, f"{gateway.url}{path}", headers=headers, timeout=30, **kwargs)


def _wait_for_refresh() -> None:
    time.sleep(0.15)  # past GATEWAYZ_CATALOG_REFRESH_SECONDS: the next request looks for the overlay


def test_sync_adds_removes_and_reprices_on_a_running_gateway(
    synced_gateway: tuple[GatewayServer, Settings, Account],
    openai_fake: Any,
    anthropic_fake: Any,
    gemini_fake: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import anthropic
    import openai

    gateway, settings, account = synced_gateway
    with (
        openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=account.key, max_retries=0, timeout=30) as sdk,
        anthropic.Anthropic(base_url=gateway.url, api_key=account.key, max_retries=0, timeout=30) as claude,
    ):
        _sync_and_check(
            gateway, settings, sdk, claude, openai_fake, anthropic_fake, gemini_fake, monkeypatch, capsys
        )


def _sync_and_check(
    gateway: GatewayServer,
    settings: Settings,
    sdk: Any,
    claude: Any,
    openai_fake: Any,
    anthropic_fake: Any,
    gemini_fake: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import anthropic
    import openai

    hello = [{"role": "user", "content": "hi"}]

    # Before: the bundle lacks Opus 6 and still serves Claude Sonnet 4.
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.create(model="claude-opus-6", max_tokens=32, messages=hello)  # type: ignore[arg-type]
    sdk.chat.completions.create(model="anthropic/claude-sonnet-4", messages=hello)  # type: ignore[arg-type]
    assert _admin(gateway, "GET", "/admin/catalog/diff").json() == {"id": None, "pinned": []}

    pin = _admin(gateway, "POST", "/admin/catalog/pins", json={"model": "gpt-4o", "pinned": True})
    assert pin.status_code == 200 and pin.json() == {"model": "openai/gpt-4o", "pinned": True}

    _serve_lists(openai_fake, anthropic_fake, gemini_fake)
    report = _cli(settings, monkeypatch, capsys, "catalog", "sync")

    assert report["providers"] == {
        "anthropic": {"status": "ok", "listed": 15},
        "google": {"status": "ok", "listed": 7},  # AQA answers no method the gateway calls
        "openai": {"status": "ok", "listed": 17},
        "openrouter": {"status": "ok", "listed": 92},
    }
    pages = [r for r in anthropic_fake.requests if r.path == "/v1/models"]
    assert len(pages) == 4 and [p.query.get("after_id") is None for p in pages] == [True, False, False, False]
    assert all(
        p.headers["x-api-key"] == "sk-test-anthropic" and p.headers["anthropic-version"] for p in pages
    )
    assert len([r for r in gemini_fake.requests if r.path == "/v1beta/models"]) == 2
    assert report["added"] == [
        {
            "model": "anthropic/claude-opus-6",
            "providers": ["anthropic", "openrouter"],
            "pricing": {"prompt": "6", "completion": "30", "cache_read": "0.6", "cache_write": "7.5"},
        }
    ]
    assert report["removed"] == [
        {"model": "anthropic/claude-sonnet-4", "providers": ["anthropic", "openrouter"]}
    ]
    changes = {(c["model"], c["provider"]): c for c in report["price_changes"]}
    assert set(changes) == {
        ("anthropic/claude-sonnet-4.6", "anthropic"),
        ("anthropic/claude-sonnet-4.6", "openrouter"),
        ("openai/gpt-4o", "openai"),
        ("openai/gpt-4o", "openrouter"),
    }
    assert changes["anthropic/claude-sonnet-4.6", "anthropic"]["applied"] is True
    assert changes["anthropic/claude-sonnet-4.6", "anthropic"]["to"]["prompt"] == "2.5"
    assert (
        changes["openai/gpt-4o", "openai"]["applied"] is False
        and changes["openai/gpt-4o", "openai"]["pinned"]
    )
    unpriced = {(u["provider"], u["native_id"]) for u in report["unpriced"]}
    # Listed without a price: never served. (gpt-4o-2024-08-06 is a snapshot of gpt-4o, not new.)
    assert unpriced == {
        ("google", "gemini-3-flash-exp"),
        ("openai", "whisper-1"),
        ("openrouter", "openrouter/auto"),
    }

    _wait_for_refresh()
    # The new model is callable by the vendor's own spelling, and billed at its synced price.
    raw = claude.messages.with_raw_response.create(model="claude-opus-6", max_tokens=32, messages=hello)  # type: ignore[arg-type]
    message = raw.parse()
    assert raw.headers["x-gatewayz-model"] == "anthropic/claude-opus-6"
    usage = message.usage
    expected = (Decimal(usage.input_tokens) * 6 + Decimal(usage.output_tokens) * 30) / Decimal(1_000_000)
    assert Decimal(raw.headers["x-gatewayz-cost"]) == expected * settings.markup
    # The removed one is a 404 that says why, on every route that names it.
    with pytest.raises(openai.NotFoundError) as gone:
        sdk.chat.completions.create(model="anthropic/claude-sonnet-4", messages=hello)  # type: ignore[arg-type]
    assert "no longer available" in str(gone.value) and "catalog sync" in str(gone.value)
    model_page = httpx.get(
        f"{gateway.url}/v1/models/claude-sonnet-4", headers={"authorization": f"Bearer {sdk.api_key}"}
    )
    assert model_page.status_code == 404 and "no longer available" in model_page.json()["error"]["message"]
    listed = {m["id"]: m for m in httpx.get(f"{gateway.url}/v1/models", timeout=30).json()["data"]}
    assert "anthropic/claude-opus-6" in listed and "anthropic/claude-sonnet-4" not in listed
    # Applied: Sonnet 4.6 at $2.5 (× the 1.25 markup); pinned: GPT-4o keeps $2.5 / $10.
    assert listed["anthropic/claude-sonnet-4.6"]["pricing"]["prompt"] == "3.125"
    assert listed["openai/gpt-4o"]["pricing"]["completion"] == "12.5"

    # The diff: the admin route and the CLI show the stored report.
    diff = _admin(gateway, "GET", "/admin/catalog/diff").json()
    assert diff["id"] == report["id"] and diff["pinned"] == ["openai/gpt-4o"]
    assert diff["price_changes"] == report["price_changes"]
    assert _cli(settings, monkeypatch, capsys, "catalog", "diff")["id"] == report["id"]

    # The scheduled entry (the Vercel cron route) with the same inputs changes nothing more.
    monkeypatch.setenv("CRON_SECRET", "cron-secret-0123456789")
    again = httpx.get(
        f"{gateway.url}/internal/jobs/catalog-sync",
        headers={"authorization": "Bearer cron-secret-0123456789"},
        timeout=60,
    )
    assert again.status_code == 200, again.text
    rerun = again.json()
    assert rerun["added"] == [] and rerun["removed"] == [] and rerun["restored"] == []
    assert {c["model"] for c in rerun["price_changes"]} == {"openai/gpt-4o"}  # still pinned, still reported
    assert all(not c["applied"] for c in rerun["price_changes"])


def test_a_failed_list_leaves_that_providers_models_alone(
    synced_gateway: tuple[GatewayServer, Settings, Account],
    tmp_path: Path,
    openai_fake: Any,
    anthropic_fake: Any,
    gemini_fake: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    gateway, settings, _ = synced_gateway
    # Anthropic's list is not served (a 404), the others are.
    openai_fake.listings["openai"] = _fixture("openai_models.json")
    openai_fake.listings["openrouter"] = _fixture("openrouter_models.json")
    gemini_fake.listings["models"] = _fixture("gemini_models.json")["models"]
    written = tmp_path / "overlay.json"
    report = _cli(settings, monkeypatch, capsys, "catalog", "sync", "--dry-run", "--output", str(written))
    assert report["providers"]["anthropic"]["status"] == "error"
    assert "HTTP 404" in report["providers"]["anthropic"]["error"]
    # OpenRouter dropped Claude Sonnet 4; Anthropic's offer stays, since its list said nothing.
    assert report["removed"] == []
    assert {
        "model": "anthropic/claude-sonnet-4",
        "provider": "openrouter",
        "native_id": "anthropic/claude-sonnet-4",
    } in report["offers_removed"]
    # A dry run stores nothing; the overlay written as a file is a catalog file the gateway takes.
    assert _admin(gateway, "GET", "/admin/catalog/diff").json()["id"] is None
    from shared.catalog import build_catalog

    from_file = build_catalog(str(written))
    assert "anthropic/claude-opus-6" in from_file.models  # priced by OpenRouter, listed by it
    assert [o.provider for o in from_file.models["anthropic/claude-sonnet-4"].offers] == ["anthropic"]
    # A price source that cannot be read stops the run (an outage, exit 2), and stores nothing.
    from shared.cli import main

    failed: list[int] = []
    worker = threading.Thread(
        target=lambda: failed.append(main(["catalog", "sync", "--prices", "/nonexistent.json"]))
    )
    worker.start()
    worker.join(120)
    assert failed == [2] and "price source /nonexistent.json" in capsys.readouterr().err
    assert _admin(gateway, "GET", "/admin/catalog/diff").json()["id"] is None


def test_admin_catalog_routes_refuse_bad_input_and_other_callers(
    synced_gateway: tuple[GatewayServer, Settings, Account],
) -> None:
    gateway, _, account = synced_gateway
    assert httpx.get(f"{gateway.url}/admin/catalog/diff").status_code == 401
    user = httpx.get(f"{gateway.url}/admin/catalog/diff", headers={"authorization": f"Bearer {account.key}"})
    assert user.status_code == 403
    unknown = _admin(gateway, "POST", "/admin/catalog/pins", json={"model": "no/such-model", "pinned": True})
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "model"
    for body in ({"model": "gpt-4o"}, {"model": "gpt-4o", "pinned": "yes"}, {"model": "", "pinned": True}):
        assert _admin(gateway, "POST", "/admin/catalog/pins", json=body).status_code == 400
    assert _admin(gateway, "GET", "/admin/catalog/diff").json()["pinned"] == []  # nothing was written
    # Pins are audited like every admin change.
    assert (
        _admin(gateway, "POST", "/admin/catalog/pins", json={"model": "gpt-4o", "pinned": True}).status_code
        == 200
    )
    assert (
        _admin(gateway, "POST", "/admin/catalog/pins", json={"model": "gpt-4o", "pinned": False}).status_code
        == 200
    )
    actions = [
        e["action"] for e in _admin(gateway, "GET", "/admin/audit?target=openai/gpt-4o").json()["data"]
    ]
    assert actions == ["catalog.unpin", "catalog.pin"]
    assert _admin(gateway, "GET", "/admin/catalog/diff").json()["pinned"] == []
