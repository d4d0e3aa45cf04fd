"""The shared breaker end to end (issue 15): two `gatewayz serve` processes on one Redis (DB 5) —
failures seen by instance A keep instance B off the provider — and routing on one in-process
gateway: an open offer is skipped and shown in `x-gatewayz-attempts`; when every offer is open,
the least recently failed one is tried and `x-gatewayz-breaker` says so. Official `openai` SDK."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai

from tests.conftest import provision
from tests.fakes.openai_fake import OpenAIFake
from tests.fakes.server import Reply
from tests.limits.conftest import Gateways

MODEL = "openai/gpt-4o"  # offered by openai (native "gpt-4o"), then openrouter ("openai/gpt-4o")
FIRST, SECOND = "gpt-4o", "openai/gpt-4o"
ASK = [{"role": "user", "content": "hi"}]
BREAKER = {"GATEWAYZ_BREAKER_MIN_REQUESTS": "2", "GATEWAYZ_BREAKER_COOLDOWN": "60"}


def sdk(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=30)


def chain(raw: Any) -> list[str]:
    return [a.strip() for a in raw.headers["x-gatewayz-attempts"].split(",")]


def test_instance_b_avoids_a_provider_that_failed_on_instance_a(
    health_redis: str, gateways: Gateways, openai_fake: OpenAIFake, tmp_path: Path
) -> None:
    env = gateways.env(GATEWAYZ_REDIS_URL=health_redis, **BREAKER)
    account = provision(gateways.settings_of(env), "b@example.com", Decimal(100))
    a, b = gateways.serve(env, 2, tmp_path)
    openai_fake.script(FIRST, Reply(status=503), Reply(status=503))
    with sdk(a.url, account.key) as on_a, sdk(b.url, account.key) as on_b:
        for _ in range(2):  # A: openai fails twice (served by openrouter): its breaker opens
            raw = on_a.chat.completions.with_raw_response.create(model=MODEL, messages=ASK)
            assert chain(raw)[0].startswith("openai:503:")
        assert len(openai_fake.bodies_for(FIRST)) == 2
        time.sleep(1.1)  # B reads the shared breakers at most a second late
        raw = on_b.chat.completions.with_raw_response.create(model=MODEL, messages=ASK)
        assert raw.headers["x-gatewayz-provider"] == "openrouter"
        assert chain(raw)[0] == "openai:breaker-open:0"
        assert len(openai_fake.bodies_for(FIRST)) == 2  # B never called the failing provider
        status = httpx.get(f"{b.url}/v1/status", timeout=10).json()
        opened = {(x["scope"], x["provider"], x["model"]): x["state"] for x in status["breakers"]}
        assert opened[("offer", "openai", MODEL)] == "open"
        assert opened[("provider", "openai", None)] == "open"
        assert "sk-test" not in str(status)


def test_an_open_offer_is_skipped_and_all_open_tries_the_least_recently_failed(
    gateway_with_breaker: Any, openai_fake: OpenAIFake
) -> None:
    url, key = gateway_with_breaker
    with sdk(url, key) as client:
        openai_fake.script(FIRST, Reply(status=503), Reply(status=503))
        for _ in range(2):
            client.chat.completions.create(model=MODEL, messages=ASK)
        raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=ASK)
        assert chain(raw)[0] == "openai:breaker-open:0" and chain(raw)[1].startswith("openrouter:200:")
        assert "x-gatewayz-breaker" not in raw.headers
        # Now openrouter fails too, later than openai did: 3 failures of 6 calls open its breaker.
        openai_fake.script(SECOND, *[Reply(status=503)] * 3)
        for _ in range(3):
            try:
                client.chat.completions.create(model=MODEL, messages=ASK)
            except openai.APIStatusError:
                pass
        before = len(openai_fake.bodies_for(FIRST))
        raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=ASK)
        # Every offer open: the one that failed longest ago (openai) is tried, and said so.
        assert raw.headers["x-gatewayz-provider"] == "openai"
        assert raw.headers["x-gatewayz-breaker"].startswith("all-open; tried openai")
        assert len(openai_fake.bodies_for(FIRST)) == before + 1
        models = httpx.get(f"{url}/v1/models/{MODEL}", timeout=10).json()
        measured = {p["provider"]: p["measured"] for p in models["providers"]}
        assert measured["openai"]["samples"] >= 1 and measured["openai"]["latency_ms"] > 0
