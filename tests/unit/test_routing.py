"""Offer eligibility, ordering and model resolution (SPEC §3), on a small inline catalog."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from shared.catalog import Catalog, Model
from shared.config import Settings
from shared.errors import InvalidRequest, ModelNotFound, NoProviderAvailable
from shared.hot.breaker import BreakerConfig
from shared.providers import resolve_providers
from shared.routing.health import HealthBook
from shared.routing.plan import Router, parse_preferences


def _model(
    mid: str, offers: list[tuple[str, str, str, str]], caps: list[str] | None = None, **kw: Any
) -> Model:
    return Model.model_validate(
        {
            "id": mid,
            "name": mid,
            "owned_by": mid.split("/")[0],
            "created": 0,
            "context_length": 8192,
            "capabilities": caps or ["tools"],
            "offers": [
                {"provider": p, "native_id": n, "pricing": {"prompt": pr, "completion": co}}
                for p, n, pr, co in offers
            ],
            **kw,
        }
    )


CATALOG = Catalog(
    [
        _model(
            "meta-llama/llama-x",
            [
                ("together", "llama-x-turbo", "0.9", "0.9"),
                ("groq", "llama-x", "0.5", "0.8"),
                ("deepinfra", "Llama-X", "0.2", "0.4"),
            ],
            aliases=("llamax",),
        ),
        _model(
            "openai/gpt-x",
            [("openai", "gpt-x", "2.5", "10"), ("openrouter", "openai/gpt-x", "2.5", "10")],
            caps=["tools", "vision"],
        ),
        _model("acme/free-model", [("chutes", "free-model", "0", "0"), ("together", "free-model", "1", "1")]),
        _model("acme/no-tools", [("groq", "no-tools", "1", "1")], caps=[]),
    ],
    {},
)
CONFIGURED = {p: "k" for p in ("together", "groq", "deepinfra", "openai", "openrouter", "chutes")}
ENV = {f"{p.upper()}_API_KEY": v for p, v in CONFIGURED.items()}


def router(health: HealthBook | None = None, env: dict[str, str] | None = None) -> Router:
    endpoints = resolve_providers(Settings.from_env(ENV if env is None else env))
    return Router(CATALOG, endpoints, health or HealthBook())


def plan(body: dict[str, Any], needs: frozenset[str] = frozenset(), r: Router | None = None) -> list[str]:
    r = r or router()
    prefs = parse_preferences(body.get("provider"), r.endpoints)
    return [c.provider_id for c in r.plan(body, needs, prefs)]


def test_cheapest_first_by_default() -> None:
    assert plan({"model": "meta-llama/llama-x"}) == ["deepinfra", "groq", "together"]


def test_aliases_bare_names_and_pins() -> None:
    assert plan({"model": "llamax"})[0] == "deepinfra"
    assert plan({"model": "llama-x"})[0] == "deepinfra"  # the bare name, unambiguous
    assert plan({"model": "groq:meta-llama/llama-x"}) == ["groq"]
    assert plan({"model": "together:llama-x-turbo"}) == ["together"]  # a provider's native id
    assert plan({"model": "acme/free-model:free"}) == ["chutes"]


def test_local_serves_any_native_id_for_free() -> None:
    r = router(env={**ENV, "LOCAL_BASE_URL": "http://127.0.0.1:11434/v1"})
    prefs = parse_preferences(None, r.endpoints)
    (candidate,) = r.plan({"model": "local:qwen2.5:7b"}, frozenset(), prefs)
    assert candidate.offer.offer.native_id == "qwen2.5:7b" and candidate.offer.pricing.is_free


def test_unknown_models_are_404() -> None:
    with pytest.raises(ModelNotFound):
        plan({"model": "nobody/nothing"})
    with pytest.raises(ModelNotFound) as info:
        plan({"model": "llamax", "models": ["nobody/nothing"]})
    assert info.value.param == "models"


def test_order_only_ignore_and_allow_fallbacks() -> None:
    assert plan({"model": "llamax", "provider": {"order": ["together"]}}) == ["together", "deepinfra", "groq"]
    assert plan({"model": "llamax", "provider": {"only": ["groq", "together"]}}) == ["groq", "together"]
    assert plan({"model": "llamax", "provider": {"ignore": ["deepinfra"]}}) == ["groq", "together"]
    assert plan({"model": "llamax", "provider": {"order": ["groq"], "allow_fallbacks": False}}) == ["groq"]


def test_model_fallbacks_follow_the_primary() -> None:
    assert plan({"model": "openai/gpt-x", "models": ["llamax"]}) == [
        "openai",
        "openrouter",
        "deepinfra",
        "groq",
        "together",
    ]


def test_capabilities_and_max_price_filter_with_reasons() -> None:
    assert plan({"model": "openai/gpt-x"}, frozenset({"vision"})) == ["openai", "openrouter"]
    with pytest.raises(NoProviderAvailable, match="lacks vision"):
        plan({"model": "llamax"}, frozenset({"vision"}))
    assert plan({"model": "llamax", "provider": {"max_price": {"prompt": 0.5}}}) == ["deepinfra", "groq"]
    with pytest.raises(NoProviderAvailable, match="above max_price"):
        plan({"model": "llamax", "provider": {"max_price": {"prompt": "0.1"}}})


def test_unconfigured_providers_are_skipped_and_named() -> None:
    r = router(env={"GROQ_API_KEY": "k"})
    assert plan({"model": "llamax"}, r=r) == ["groq"]
    with pytest.raises(NoProviderAvailable, match="OPENAI_API_KEY is not set"):
        plan({"model": "openai/gpt-x"}, r=r)


async def test_open_breakers_and_latency_sort() -> None:
    health = HealthBook(cfg=BreakerConfig(min_requests=2, failure_permille=1000))
    r = router(health)
    await health.failure("deepinfra", "meta-llama/llama-x")
    assert not health.is_down("deepinfra", "meta-llama/llama-x")  # one is not enough
    await health.failure("deepinfra", "meta-llama/llama-x")
    assert health.is_down("deepinfra", "meta-llama/llama-x")
    # It keeps its place in the plan: the failover walk skips it there (and shows it).
    assert plan({"model": "llamax"}, r=r) == ["deepinfra", "groq", "together"]
    await health.saturated("groq", "meta-llama/llama-x", 5.0)  # a 429: behind the others
    assert plan({"model": "llamax"}, r=r) == ["deepinfra", "together", "groq"]
    await health.success("together", "meta-llama/llama-x", latency_ms=5)
    await health.success("groq", "meta-llama/llama-x", latency_ms=50)
    await health.refresh(force=True)  # successes travel with the next read of the store
    # By measured latency (never measured: last), a saturated offer behind the others still.
    assert plan({"model": "llamax", "provider": {"sort": "latency"}}, r=r) == [
        "together",
        "deepinfra",
        "groq",
    ]


@pytest.mark.parametrize(
    "prefs",
    [
        "fast",
        {"order": "groq"},
        {"only": ["nope"]},
        {"sort": "vibes"},
        {"allow_fallbacks": "no"},
        {"max_price": {"prompt": -1}},
        {"max_price": {"tokens": 1}},
        {"teleport": True},
    ],
)
def test_malformed_preferences_are_400(prefs: Any) -> None:
    with pytest.raises(InvalidRequest):
        plan({"model": "llamax", "provider": prefs})


def test_max_price_is_exact() -> None:
    prefs = parse_preferences({"max_price": {"prompt": "0.2"}}, router().endpoints)
    assert prefs.max_price == {"prompt": Decimal("0.2")}
