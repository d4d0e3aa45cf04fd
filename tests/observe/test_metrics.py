"""`/metrics` of the server (issue 16): after real requests through the official SDK, each series
is there with the right labels and values; the token protects it; no secret reaches a label."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.observe import prometheus
from tests.conftest import ADMIN_KEY, Account, gateway_settings, provision, start_gateway
from tests.fakes.openai_fake import OpenAIFake
from tests.fakes.server import Reply
from tests.harness import GatewayServer

TOKEN = "metrics-token-for-the-test-0123"
MODEL = "openai/gpt-4o"  # openai first, openrouter second
ASK = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def observed(
    fakes: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GatewayServer, Account]]:
    mp = pytest.MonkeyPatch()
    mp.setenv("GATEWAYZ_METRICS_TOKEN", TOKEN)
    prometheus.reset()
    settings = gateway_settings(fakes, f"sqlite:///{tmp_path_factory.mktemp('observe') / 'g.db'}")
    account = provision(settings, "observed@example.com", Decimal(100))
    server = start_gateway(settings)
    try:
        yield server, account
    finally:
        server.stop()
        prometheus.reset()
        mp.undo()


def scrape(server: GatewayServer) -> dict[str, list[tuple[dict[str, str], float]]]:
    raw = httpx.get(f"{server.url}/metrics", headers={"authorization": f"Bearer {TOKEN}"})
    assert raw.status_code == 200
    assert raw.headers["content-type"].startswith("text/plain")
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(raw.text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def value(series: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(v for got, v in series.get(name, []) if all(got.get(k) == x for k, x in labels.items()))


def test_metrics_want_the_token(observed: tuple[GatewayServer, Account]) -> None:
    server, _ = observed
    assert httpx.get(f"{server.url}/metrics").status_code == 401
    assert httpx.get(f"{server.url}/metrics", headers={"authorization": "Bearer wrong"}).status_code == 401


def test_requests_failovers_tokens_cost_and_refusals_are_counted(
    observed: tuple[GatewayServer, Account], openai_fake: OpenAIFake
) -> None:
    server, account = observed
    before = scrape(server)
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key=account.key, max_retries=0) as sdk:
        openai_fake.script("gpt-4o", Reply(status=503))  # fails over to openrouter
        openai_fake.script("openai/gpt-4o", Reply(text="second"))
        raw = sdk.chat.completions.with_raw_response.create(model=MODEL, messages=ASK)
        usage = raw.parse().usage
        cost = Decimal(raw.headers["x-gatewayz-cost"])
        stream = sdk.chat.completions.create(model=MODEL, messages=ASK, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert httpx.get(f"{server.url}/v1/models/no/such-model").status_code == 404
    after = scrape(server)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    route = "/v1/chat/completions"
    assert delta("gatewayz_http_requests_total", route=route, method="POST", status="200") == 2
    assert delta("gatewayz_http_request_duration_seconds_count", route=route, method="POST") == 2
    # A parameterised route is labelled by its template, never by the raw path.
    assert delta("gatewayz_http_requests_total", route="/v1/models/{model_id:path}", status="404") == 1
    assert delta("gatewayz_inference_requests_total", endpoint="chat", status="ok") == 2
    assert delta("gatewayz_upstream_attempts_total", provider="openai", status="503") == 1
    assert delta("gatewayz_upstream_attempts_total", provider="openrouter", status="200") == 1
    assert delta("gatewayz_upstream_latency_seconds_count", provider="openrouter") == 1
    assert delta("gatewayz_upstream_ttfb_seconds_count") == 1  # the stream only
    assert delta("gatewayz_failovers_total", endpoint="chat") == 1
    assert usage is not None
    assert delta("gatewayz_tokens_total", provider="openrouter", kind="input") == usage.prompt_tokens
    assert delta("gatewayz_tokens_total", provider="openrouter", kind="output") == usage.completion_tokens
    assert delta("gatewayz_cost_usd_total", provider="openrouter") == pytest.approx(float(cost))
    assert delta("gatewayz_overhead_seconds_count", endpoint="chat") == 2


def test_refusals_are_counted_and_no_secret_is_a_label(
    observed: tuple[GatewayServer, Account], fakes: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    server, account = observed
    # A key of the same database allowed one request a minute: the second is the limiter's 429.
    settings = server.runtime.settings
    limited = provision(settings, "limited@example.com", Decimal(10), rate_limits={"requests_per_minute": 1})
    before = scrape(server)
    statuses = [
        httpx.post(
            f"{server.url}/v1/chat/completions",
            headers={"authorization": f"Bearer {limited.key}"},
            json={"model": MODEL, "messages": ASK},
            timeout=10,
        ).status_code
        for _ in range(2)
    ]
    assert statuses == [200, 429]
    httpx.get(f"{server.url}/v1/status", headers={"authorization": f"Bearer {ADMIN_KEY}"})
    after = scrape(server)
    refused = value(after, "gatewayz_rate_limited_total", route="/v1/chat/completions")
    assert refused - value(before, "gatewayz_rate_limited_total", route="/v1/chat/completions") == 1
    text = httpx.get(f"{server.url}/metrics", headers={"authorization": f"Bearer {TOKEN}"}).text
    for secret in (account.key, limited.key, ADMIN_KEY, "sk-test-openai", "sk-test-openrouter", TOKEN):
        assert secret not in text
    for name in prometheus.SERIES:  # every documented series is exported (each has been used by now)
        base = name.removesuffix("_total")
        assert any(n == name or n.startswith(base) for n in after), name


def test_the_grafana_dashboard_queries_only_exported_series() -> None:
    import json
    import re
    from pathlib import Path

    dashboard = json.loads((Path(__file__).resolve().parents[2] / "infra/grafana/gatewayz.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert exprs
    exported = set(prometheus.SERIES)
    histograms = {n for n in exported if n.endswith("_seconds")}
    queried = set()
    for expr in exprs:
        for name in re.findall(r"\bgatewayz_[a-z_]+", expr):
            base = (
                re.sub(r"_(bucket|sum|count)$", "", name)
                if name.endswith(("_bucket", "_sum", "_count"))
                else name
            )
            assert base in exported, f"{expr} queries {name}, which /metrics does not export"
            if base != name:
                assert base in histograms, name
            queried.add(base)
    assert queried == exported  # and every exported series has a panel
