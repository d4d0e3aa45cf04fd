"""The catalog routes (SPEC §2.4) and the gateway's generic HTTP behaviour, over real HTTP."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.catalog import build_catalog
from shared.config import Settings
from shared.runtime import Runtime
from shared.server import create_server_app
from tests.conftest import Account, gateway_settings
from tests.harness import GatewayServer


def get(gateway: Any, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{gateway.url}{path}", params=params)


def test_models_list_shape(gateway: Any) -> None:
    body = get(gateway, "/v1/models").json()
    assert body["object"] == "list" and body["has_more"] is False
    assert len(body["data"]) == len(build_catalog().models)
    gpt = next(m for m in body["data"] if m["id"] == "openai/gpt-4o")
    assert gpt["object"] == "model" and gpt["owned_by"] == "openai" and gpt["context_length"] == 128000
    assert gpt["pricing"]["prompt"] == "3.125" and gpt["pricing"]["cache_read"] == "1.5625"
    assert all(isinstance(v, str) for v in gpt["pricing"].values())  # money is decimal strings
    assert gpt["architecture"]["input_modalities"][0] == "text"
    assert {"tools", "response_format"} <= set(gpt["supported_parameters"])
    assert {p["provider"] for p in gpt["providers"]} == {"openai", "openrouter"}
    assert gpt["status"] == "available" and "gpt-4o" in gpt["aliases"]


def test_models_filters_and_pagination(gateway: Any) -> None:
    groq = get(gateway, "/v1/models", provider="groq").json()["data"]
    assert groq and all(any(p["provider"] == "groq" for p in m["providers"]) for m in groq)
    images = get(gateway, "/v1/models", modality="image").json()["data"]
    # Image input (vision models) or image output (image generation models).
    assert images and all(
        "image" in m["architecture"]["input_modalities"] + m["architecture"]["output_modalities"]
        for m in images
    )
    assert any(m["architecture"]["output_modalities"] == ["image"] for m in images)
    found = get(gateway, "/v1/models", q="LLAMA").json()["data"]
    assert found and all("llama" in (m["id"] + m["name"]).lower() for m in found)
    page1 = get(gateway, "/v1/models", limit=5).json()
    page2 = get(gateway, "/v1/models", limit=5, after=page1["last_id"]).json()
    assert page1["has_more"] and len(page1["data"]) == 5
    assert page2["data"][0]["id"] > page1["last_id"]
    assert not {m["id"] for m in page1["data"]} & {m["id"] for m in page2["data"]}


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": "many"}, {"provider": "nope"}])
def test_bad_catalog_queries_are_400_in_the_envelope(gateway: Any, params: dict[str, Any]) -> None:
    resp = get(gateway, "/v1/models", **params)
    assert resp.status_code == 400
    assert resp.json()["error"]["type"] == "invalid_request_error"


def test_one_model_by_id_alias_and_404(gateway: Any) -> None:
    assert get(gateway, "/v1/models/openai/gpt-4o").json()["id"] == "openai/gpt-4o"
    assert get(gateway, "/v1/models/claude-sonnet-4").json()["id"] == "anthropic/claude-sonnet-4"
    missing = get(gateway, "/v1/models/nobody/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


def test_providers_and_gateways(gateway: Any) -> None:
    providers = {p["id"]: p for p in get(gateway, "/v1/providers").json()["data"]}
    assert len(providers) == 32
    # Bedrock is configured by the AWS credentials of the test environment (SigV4), not a key.
    assert providers["openai"]["configured"] and providers["aws-bedrock"]["configured"]
    gateways = get(gateway, "/v1/gateways").json()["data"]
    assert {"slug", "name", "color", "priority", "site_url"} <= set(gateways[0])
    text = get(gateway, "/v1/providers").text
    assert "sk-test" not in text and "AKID" not in text  # no secret in public routes


def test_health_routes(gateway: Any) -> None:
    assert get(gateway, "/health").json() == {"status": "ok"}
    ready = get(gateway, "/health/ready").json()
    assert ready["status"] == "ready" and ready["providers_configured"] >= 30
    assert ready["database"] == "sqlite" and ready["limits"] == "memory"
    status = get(gateway, "/v1/status").json()
    assert {p["id"] for p in status["providers"]} >= {"openai", "anthropic"}


def test_readiness_fails_while_the_database_does_not_answer(fakes: dict[str, Any]) -> None:
    # Nothing listens on port 1: a load balancer must take this instance out of rotation.
    settings = gateway_settings(fakes, "postgresql://gatewayz@127.0.0.1:1/test?connect_timeout=1")
    app = create_server_app(settings)
    app.state.runtime = Runtime.build(settings)
    server = GatewayServer(app).start()
    try:
        ready = httpx.get(f"{server.url}/health/ready", timeout=10)
        assert ready.status_code == 503
        error = ready.json()["error"]
        assert error["code"] == "dependency_unavailable" and "database" in error["message"]
        assert httpx.get(f"{server.url}/health").status_code == 200  # liveness does no I/O
    finally:
        server.stop()


def test_unknown_route_and_method_use_the_envelope(gateway: Any) -> None:
    missing = get(gateway, "/v1/nothing-here")
    assert (
        missing.status_code == 404
        and missing.json()["error"]["request_id"] == missing.headers["x-request-id"]
    )
    wrong = httpx.delete(f"{gateway.url}/v1/models")
    assert wrong.status_code == 405 and "error" in wrong.json()
    # The inference routes are dispatched straight from the middleware for their own method only.
    read = httpx.get(f"{gateway.url}/v1/chat/completions")
    assert read.status_code == 405 and read.json()["error"]["request_id"] == read.headers["x-request-id"]


def test_oversized_body_is_413(gateway: Any, account: Account) -> None:
    resp = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        content=b"x" * (33 * 1024 * 1024),
        headers={"authorization": f"Bearer {account.key}", "content-type": "application/json"},
        timeout=30,
    )
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "request_too_large"


def test_operator_catalog_file_extends_the_bundled_one(tmp_path: Path) -> None:
    extra = {
        "models": [
            {
                "id": "acme/house-model",
                "name": "Acme House Model",
                "owned_by": "acme",
                "created": 1700000000,
                "context_length": 32768,
                "offers": [
                    {
                        "provider": "local",
                        "native_id": "house",
                        "pricing": {"prompt": "0.1", "completion": "0.2"},
                    }
                ],
            }
        ],
        "aliases": {"house": "acme/house-model"},
    }
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(extra))
    settings = Settings.from_env({"GATEWAYZ_CATALOG_FILE": str(path), "GATEWAYZ_MARKUP": "2"})
    app = create_server_app(settings)
    app.state.runtime = Runtime.build(settings)
    server = GatewayServer(app).start()
    try:
        model = httpx.get(f"{server.url}/v1/models/house").json()
        assert model["id"] == "acme/house-model" and Decimal(model["pricing"]["prompt"]) == Decimal("0.2")
        assert httpx.get(f"{server.url}/v1/models/openai/gpt-4o").status_code == 200  # the bundled ones stay
    finally:
        server.stop()
