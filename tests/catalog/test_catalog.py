"""The bundled model catalog (SPEC §2.4, §3, §4): the table itself, then the loader's validation
and the `GATEWAYZ_CATALOG_FILE` extend / replace modes."""

from __future__ import annotations

import json
import time
from collections import Counter
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from shared.catalog import CAPABILITIES, Catalog, CatalogError, build_catalog
from shared.providers import load_providers

PRICE_FIELDS = ("prompt", "completion", "cache_read", "cache_write", "reasoning", "image", "request")
RELEASED_AFTER = 1_672_531_200  # 2023-01-01: nothing in the table is older


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return build_catalog()


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    """The bundled file as written, before pydantic turns strings into Decimals."""
    data: dict[str, Any] = json.loads(resources.files("shared.catalog").joinpath("models.json").read_text())
    return data


# --- the table ---------------------------------------------------------------------------------


def test_the_table_is_large(catalog: Catalog) -> None:
    assert len(catalog.models) >= 60
    assert sum(len(offers) for offers in catalog.offers.values()) >= 200


def test_no_duplicate_model_ids(raw: dict[str, Any]) -> None:
    ids = Counter(m["id"] for m in raw["models"])
    assert [i for i, n in ids.items() if n > 1] == []


def test_no_native_id_is_claimed_by_two_models(raw: dict[str, Any]) -> None:
    # A (provider, native id) pair maps back to exactly one model (usage and health are keyed by it).
    pairs = Counter((o["provider"], o["native_id"]) for m in raw["models"] for o in m["offers"])
    assert [p for p, n in pairs.items() if n > 1] == []


def test_every_offer_names_a_provider_of_the_table(catalog: Catalog) -> None:
    providers = load_providers()
    for model_id, offers in catalog.offers.items():
        for offer in offers:
            assert offer.provider_id in providers, (model_id, offer.provider_id)


def test_every_provider_but_local_has_an_offer(catalog: Catalog) -> None:
    offered = {o.provider_id for offers in catalog.offers.values() for o in offers}
    missing = set(load_providers()) - offered - {"local"}
    assert missing == set()


def test_prices_are_written_as_strings(raw: dict[str, Any]) -> None:
    for model in raw["models"]:
        for offer in model["offers"]:
            tier = offer["pricing"].get("long_prompt") or {}
            skip = ("long_prompt", "images")
            per_image = {f"images[{k}]": v for k, v in (offer["pricing"].get("images") or {}).items()}
            prices = {**{k: v for k, v in offer["pricing"].items() if k not in skip}, **tier, **per_image}
            prices.pop("threshold", None)
            for name, value in prices.items():
                assert isinstance(value, str), (model["id"], offer["provider"], name, value)
                Decimal(value)  # and parse as exact decimals


def test_prices_are_non_negative_decimals(catalog: Catalog) -> None:
    for model_id, offers in catalog.offers.items():
        for offer in offers:
            for name in PRICE_FIELDS:
                value = getattr(offer.pricing, name)
                if value is None:
                    continue
                assert isinstance(value, Decimal), (model_id, offer.provider_id, name)
                assert value >= 0 and value.is_finite(), (model_id, offer.provider_id, name)


def test_paid_models_are_not_accidentally_free(catalog: Catalog) -> None:
    for model_id, offers in catalog.offers.items():
        if model_id.endswith(":free"):
            continue
        for offer in offers:
            if offer.pricing.is_free:
                # The one vendor-documented free-of-charge model that is not a `:free` variant.
                assert (model_id, offer.provider_id) == ("z-ai/glm-4.5-flash", "zai")


def test_free_variants_are_free_and_have_a_paid_sibling(catalog: Catalog) -> None:
    free = [m for m in catalog.models.values() if m.id.endswith(":free")]
    assert len(free) >= 5
    for model in free:
        assert model.is_free, model.id
        for offer in model.offers:
            assert offer.pricing.is_free and offer.pricing.cache_read in (None, Decimal(0)), model.id
        assert model.id.removesuffix(":free") in catalog.models, model.id


def test_cache_read_never_costs_more_than_the_prompt(catalog: Catalog) -> None:
    for model_id, offers in catalog.offers.items():
        for offer in offers:
            p = offer.pricing
            if p.cache_read is not None:
                assert p.cache_read <= p.prompt, (model_id, offer.provider_id)


# Cache hits at 0.05x input instead of 0.1x: Opus 5.5 from its launch, Sonnet 5.5 from 2026-10-07
# (https://platform.claude.com/docs/en/models/opus-5-5/overview, the pricing page).
HALF_PRICE_HITS = {"anthropic/claude-opus-5.5", "anthropic/claude-sonnet-5.5"}


def test_anthropic_cache_prices_follow_the_published_ratios(catalog: Catalog) -> None:
    # 5-minute cache writes cost 1.25x the input price, 1-hour writes 2x, cache hits 0.1x.
    for model_id, offers in catalog.offers.items():
        for offer in offers:
            if offer.provider_id != "anthropic":
                continue
            p = offer.pricing
            tiers = [p] if p.long_prompt is None else [p, p.long_prompt]
            for rates in tiers:
                hit = Decimal("0.05") if model_id in HALF_PRICE_HITS else Decimal("0.1")
                assert rates.cache_write == rates.prompt * Decimal("1.25"), model_id
                assert rates.cache_write_1h == rates.prompt * 2, model_id
                assert rates.cache_read == rates.prompt * hit, model_id


def test_open_models_can_be_routed_by_price(catalog: Catalog) -> None:
    for model_id in (
        "meta-llama/llama-3.3-70b-instruct",
        "meta-llama/llama-3.1-8b-instruct",
        "openai/gpt-oss-120b",
        "qwen/qwen3-coder",
        "deepseek/deepseek-r1-0528",
    ):
        offers = catalog.offers[model_id]
        assert len(offers) >= 5, model_id
        assert len({o.pricing.prompt + o.pricing.completion for o in offers}) >= 3, model_id


def test_context_and_output_limits_are_positive_and_consistent(catalog: Catalog) -> None:
    for model_id, offers in catalog.offers.items():
        model = catalog.models[model_id]
        assert model.context_length > 0
        for offer in offers:
            assert offer.context_length > 0, (model_id, offer.provider_id)
            # The model's window is the largest any of its offers serves.
            assert offer.context_length <= model.context_length, (model_id, offer.provider_id)
            if offer.max_output_tokens is not None:
                assert 0 < offer.max_output_tokens <= model.context_length, (model_id, offer.provider_id)


def test_capabilities_are_known_and_offers_only_narrow_them(catalog: Catalog) -> None:
    for model in catalog.models.values():
        assert model.capabilities <= CAPABILITIES
        for offer in model.offers:
            if offer.capabilities is not None:
                assert offer.capabilities <= model.capabilities, (model.id, offer.provider)


def test_modalities_agree_with_capabilities(catalog: Catalog) -> None:
    for model in catalog.models.values():
        inputs = set(model.input_modalities)
        assert "text" in inputs, model.id
        # A model generates text, images (/v1/images/generations) or embeddings (/v1/embeddings).
        outputs = set(model.output_modalities)
        assert outputs & {"text", "image", "embeddings"}, model.id
        assert "embeddings" not in outputs or outputs == {"embeddings"}, model.id
        assert ("vision" in model.capabilities) == ("image" in inputs), model.id
        assert ("audio_input" in model.capabilities) == ("audio" in inputs), model.id
        assert ("file_input" in model.capabilities) == ("file" in inputs), model.id


def test_embedding_models_have_dimensions_and_no_output_price(catalog: Catalog) -> None:
    embedders = [m for m in catalog.models.values() if "embeddings" in m.output_modalities]
    assert len(embedders) >= 8
    for model in catalog.models.values():
        embeds = model in embedders
        assert (model.dimensions is not None) == embeds, model.id
        if embeds:
            assert not model.capabilities and model.max_output_tokens is None, model.id
            assert all(o.pricing.completion == 0 and o.pricing.prompt > 0 for o in model.offers), model.id


def test_image_models_are_priced_per_image_or_per_token(catalog: Catalog) -> None:
    """Per image: a price table (by quality/size) and no token rates. Per token: the most tokens an
    image can take, which the reservation needs."""
    image_models = [m for m in catalog.models.values() if m.output_modalities == ("image",)]
    assert len(image_models) >= 3
    for model in image_models:
        for offer in model.offers:
            if offer.pricing.images:
                assert offer.pricing.prompt == offer.pricing.completion == 0, model.id
                assert all(price > 0 for price in offer.pricing.images.values()), model.id
            else:
                assert offer.pricing.completion > 0 and model.max_output_tokens, model.id


def test_release_dates_are_plausible(catalog: Catalog) -> None:
    now = time.time()
    for model in catalog.models.values():
        assert RELEASED_AFTER < model.created < now, model.id


def test_owner_is_the_id_prefix(catalog: Catalog) -> None:
    for model in catalog.models.values():
        assert model.id.split("/", 1)[0] == model.owned_by, model.id


def test_every_alias_resolves_to_its_target(catalog: Catalog) -> None:
    assert catalog.aliases
    for alias, target in catalog.aliases.items():
        assert alias not in catalog.models, alias
        model = catalog.resolve(alias)
        assert model is not None and model.id == target, alias


def test_explicit_aliases_are_claimed_once(raw: dict[str, Any]) -> None:
    claims = Counter(a for m in raw["models"] for a in m.get("aliases", ()))
    claims.update(raw.get("aliases", {}))
    assert [a for a, n in claims.items() if n > 1] == []
    ids = {m["id"] for m in raw["models"]}
    assert set(claims) & ids == set()


@pytest.mark.parametrize(
    ("name", "model_id"),
    [
        ("gpt-4o", "openai/gpt-4o"),
        ("gpt-5-mini", "openai/gpt-5-mini"),
        ("o3", "openai/o3"),
        ("gpt-oss-120b", "openai/gpt-oss-120b"),
        ("gpt-oss:20b", "openai/gpt-oss-20b"),
        ("claude-sonnet-4", "anthropic/claude-sonnet-4"),
        ("claude-sonnet-4-5", "anthropic/claude-sonnet-4.5"),
        ("claude-3-5-haiku-20241022", "anthropic/claude-3.5-haiku"),
        ("claude-opus-4-1", "anthropic/claude-opus-4.1"),
        ("gemini-2.5-flash", "google/gemini-2.5-flash"),
        ("gemini-2.0-flash-001", "google/gemini-2.0-flash"),
        ("llama-3.3-70b-instruct", "meta-llama/llama-3.3-70b-instruct"),
        ("llama-3.3-70b-versatile", "meta-llama/llama-3.3-70b-instruct"),
        ("deepseek-chat", "deepseek/deepseek-v3.2"),
        ("mistral-large-latest", "mistralai/mistral-large-2512"),
        ("grok-4-0709", "x-ai/grok-4"),
        ("kimi-k2-0905-preview", "moonshotai/kimi-k2-0905"),
        ("glm-4.6", "z-ai/glm-4.6"),
        ("sonar-pro", "perplexity/sonar-pro"),
        ("qwen3-coder:free", "qwen/qwen3-coder:free"),
    ],
)
def test_well_known_names_resolve(catalog: Catalog, name: str, model_id: str) -> None:
    model = catalog.resolve(name)
    assert model is not None and model.id == model_id


def test_unknown_names_do_not_resolve(catalog: Catalog) -> None:
    assert catalog.resolve("gpt-17-ultra") is None
    assert catalog.resolve("openai/") is None


@pytest.mark.parametrize(
    ("model_id", "providers"),
    [
        ("openai/gpt-4o", {"openai", "openrouter"}),
        ("anthropic/claude-sonnet-4", {"anthropic", "openrouter"}),
        ("google/gemini-2.5-flash", {"google", "google-vertex"}),
        ("meta-llama/llama-3.3-70b-instruct", {"groq", "together", "deepinfra"}),
    ],
)
def test_the_models_other_tests_rely_on_keep_their_offers(
    catalog: Catalog, model_id: str, providers: set[str]
) -> None:
    assert providers <= {o.provider_id for o in catalog.offers[model_id]}


def test_openai_reasoning_offers_carry_their_parameter_quirks(catalog: Catalog) -> None:
    for model_id in ("openai/o3", "openai/o4-mini", "openai/gpt-5", "openai/gpt-5-mini", "openai/gpt-5-nano"):
        (offer,) = [o for o in catalog.offers[model_id] if o.provider_id == "openai"]
        assert offer.quirks.rename["max_tokens"] == "max_completion_tokens", model_id
        assert {"temperature", "top_p", "logprobs", "logit_bias"} <= offer.quirks.drop, model_id
    (plain,) = [o for o in catalog.offers["openai/gpt-4o"] if o.provider_id == "openai"]
    assert "temperature" not in plain.quirks.drop and "max_tokens" not in plain.quirks.rename


def test_offer_quirks_merge_over_the_provider_row(catalog: Catalog) -> None:
    (grok,) = [o for o in catalog.offers["x-ai/grok-4"] if o.provider_id == "xai"]
    assert {"presence_penalty", "frequency_penalty", "stop", "reasoning_effort"} <= grok.quirks.drop
    assert "service_tier" in grok.quirks.drop  # from the xai row itself


def test_request_fees_are_per_request(catalog: Catalog) -> None:
    (sonar,) = [o for o in catalog.offers["perplexity/sonar"] if o.provider_id == "perplexity"]
    assert Decimal(0) < sonar.pricing.request < Decimal("0.1")


# --- the loader --------------------------------------------------------------------------------


def model_row(model_id: str = "acme/widget-1", **pricing: Any) -> dict[str, Any]:
    return {
        "id": model_id,
        "name": "Acme: Widget 1",
        "owned_by": model_id.split("/", 1)[0],
        "created": 1_750_000_000,
        "context_length": 32768,
        "capabilities": ["tools"],
        "offers": [
            {
                "provider": "together",
                "native_id": "acme/Widget-1",
                "pricing": pricing or {"prompt": "0.1", "completion": "0.2"},
            }
        ],
    }


def write(tmp_path: Path, doc: dict[str, Any]) -> str:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_an_operator_file_of_the_right_shape_loads(tmp_path: Path) -> None:
    catalog = build_catalog(write(tmp_path, {"models": [model_row()]}))
    model = catalog.resolve("widget-1")
    assert model is not None and model.id == "acme/widget-1"
    assert catalog.offers["acme/widget-1"][0].pricing.prompt == Decimal("0.1")


def test_a_float_price_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="decimal strings"):
        build_catalog(write(tmp_path, {"models": [model_row(prompt=0.1, completion="0.2")]}))


def test_integer_prices_are_exact(tmp_path: Path) -> None:
    catalog = build_catalog(write(tmp_path, {"models": [model_row(prompt=3, completion=15)]}))
    assert catalog.offers["acme/widget-1"][0].pricing.completion == Decimal(15)


def test_a_negative_price_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(CatalogError):
        build_catalog(write(tmp_path, {"models": [model_row(prompt="-0.1", completion="0.2")]}))


def test_an_unknown_provider_is_rejected(tmp_path: Path) -> None:
    row = model_row()
    row["offers"][0]["provider"] = "no-such-cloud"
    with pytest.raises(CatalogError, match="unknown provider"):
        build_catalog(write(tmp_path, {"models": [row]}))


def test_an_unknown_capability_is_rejected(tmp_path: Path) -> None:
    row = model_row()
    row["capabilities"] = ["tools", "telepathy"]
    with pytest.raises(CatalogError, match="telepathy"):
        build_catalog(write(tmp_path, {"models": [row]}))


def test_an_unknown_offer_capability_is_rejected(tmp_path: Path) -> None:
    row = model_row()
    row["offers"][0]["capabilities"] = ["mind_reading"]
    with pytest.raises(CatalogError, match="mind_reading"):
        build_catalog(write(tmp_path, {"models": [row]}))


def test_an_unknown_field_is_rejected(tmp_path: Path) -> None:
    row = model_row()
    row["offers"][0]["pricing"]["input"] = "0.1"  # a typo for "prompt" must not pass silently
    with pytest.raises(CatalogError):
        build_catalog(write(tmp_path, {"models": [row]}))


def test_a_provider_offering_a_model_twice_is_rejected(tmp_path: Path) -> None:
    row = model_row()
    row["offers"].append(dict(row["offers"][0]))
    with pytest.raises(CatalogError, match="only once"):
        build_catalog(write(tmp_path, {"models": [row]}))


def test_an_alias_to_an_unknown_model_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="unknown model"):
        build_catalog(write(tmp_path, {"models": [model_row()], "aliases": {"widget": "acme/nothing"}}))


def test_a_model_alias_to_nothing_is_rejected_in_replace_mode(tmp_path: Path) -> None:
    doc = {"mode": "replace", "models": [model_row()], "aliases": {"sonnet": "anthropic/claude-sonnet-4"}}
    with pytest.raises(CatalogError, match="unknown model"):
        build_catalog(write(tmp_path, doc))


def test_an_alias_that_shadows_a_model_id_is_rejected(tmp_path: Path) -> None:
    doc = {"models": [model_row()], "aliases": {"openai/gpt-4o": "acme/widget-1"}}
    with pytest.raises(CatalogError, match="shadows"):
        build_catalog(write(tmp_path, doc))


def test_bad_json_and_a_missing_file_are_catalog_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CatalogError, match="not valid JSON"):
        build_catalog(str(bad))
    with pytest.raises(CatalogError, match="GATEWAYZ_CATALOG_FILE"):
        build_catalog(str(tmp_path / "absent.json"))


def test_extend_mode_adds_a_model_and_keeps_the_bundled_ones(tmp_path: Path) -> None:
    bundled = build_catalog()
    doc = {"models": [model_row()], "aliases": {"widget": "acme/widget-1", "my-4o": "openai/gpt-4o"}}
    catalog = build_catalog(write(tmp_path, doc))
    assert set(catalog.models) == set(bundled.models) | {"acme/widget-1"}
    assert catalog.resolve("widget").id == "acme/widget-1"  # type: ignore[union-attr]
    assert catalog.resolve("my-4o").id == "openai/gpt-4o"  # type: ignore[union-attr]
    assert catalog.resolve("claude-3-5-haiku").id == "anthropic/claude-3.5-haiku"  # type: ignore[union-attr]


def test_extend_mode_replaces_a_model_with_the_same_id(tmp_path: Path) -> None:
    row = model_row("openai/gpt-4o", prompt="1", completion="2")
    row["offers"][0] = {
        "provider": "openai",
        "native_id": "gpt-4o-2024-11-20",
        "pricing": {"prompt": "1", "completion": "2"},
    }
    catalog = build_catalog(write(tmp_path, {"mode": "extend", "models": [row]}))
    offers = catalog.offers["openai/gpt-4o"]
    assert [(o.provider_id, o.offer.native_id) for o in offers] == [("openai", "gpt-4o-2024-11-20")]
    assert offers[0].pricing.prompt == Decimal(1)
    assert catalog.models["openai/gpt-4o"].name == "Acme: Widget 1"
    assert len(catalog.models) == len(build_catalog().models)


def test_replace_mode_stands_alone(tmp_path: Path) -> None:
    doc = {"mode": "replace", "models": [model_row()], "aliases": {"widget": "acme/widget-1"}}
    catalog = build_catalog(write(tmp_path, doc))
    assert set(catalog.models) == {"acme/widget-1"}
    assert catalog.resolve("gpt-4o") is None
    assert catalog.resolve("widget").id == "acme/widget-1"  # type: ignore[union-attr]
    assert set(catalog.aliases) == {"widget", "widget-1"}


def test_an_unknown_mode_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(CatalogError):
        build_catalog(write(tmp_path, {"mode": "merge", "models": [model_row()]}))
