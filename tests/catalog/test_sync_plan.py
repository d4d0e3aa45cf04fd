"""The catalog sync's rules, on plain data (shared.catalog.sync.plan): what a provider's list and
the price source add, remove and re-price, and what they may not touch (pinned prices, offers of
providers whose list could not be read or is not theirs)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from shared.catalog import CatalogFile, Model, Offer, Pricing, overlaid
from shared.catalog.listings import Listed, parse_prices
from shared.catalog.sync import Inputs, Report, plan

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "catalog_sync"


def _model(model_id: str, *offers: tuple[str, str, str, str], pinned: bool = False) -> Model:
    return Model(
        id=model_id,
        name=model_id,
        owned_by=model_id.split("/")[0],
        created=1,
        context_length=8192,
        pinned=pinned,
        offers=tuple(
            Offer(provider=p, native_id=n, pricing=Pricing(prompt=Decimal(i), completion=Decimal(o)))
            for p, n, i, o in offers
        ),
    )


def _quotes(*rows: tuple[str, str, str]) -> bytes:
    import orjson

    return orjson.dumps(
        {
            "data": [
                {"id": i, "name": i.upper(), "pricing": {"prompt": p, "completion": c}} for i, p, c in rows
            ]
        }
    )


BASE = CatalogFile(
    models=(
        _model("anthropic/claude-a-1", ("anthropic", "claude-a-1", "3", "15"), ("openrouter", "anthropic/claude-a-1", "3", "15")),
        _model("anthropic/claude-b-2", ("anthropic", "claude-b-2-20250101", "1", "5")),
        _model("openai/gpt-x", ("openai", "gpt-x", "2.5", "10"), pinned=True),
        _model("meta-llama/llama-z", ("groq", "llama-z-versatile", "0.1", "0.2")),
    )
)  # fmt: skip


def _listed(*ids: str) -> list[Listed]:
    return [Listed(i) for i in ids]


def test_a_listed_and_priced_model_is_added_with_the_vendor_spelling_as_alias() -> None:
    quotes = parse_prices(_quotes(("anthropic/claude-c.3", "0.000006", "0.00003")), "test")
    inputs = Inputs(
        base=BASE,
        previous=None,
        listings={"anthropic": _listed("claude-a-1", "claude-b-2-20250101", "claude-c-3")},
        quotes=quotes,
    )
    overlay, report = plan(inputs, "2026-12-06")
    added = {m.id: m for m in overlay.models}["anthropic/claude-c.3"]
    assert added.aliases == ("claude-c-3",)  # what the vendor's own clients ask for
    assert added.offers[0].provider == "anthropic" and added.offers[0].native_id == "claude-c-3"
    assert added.offers[0].pricing.prompt == Decimal(6) and added.offers[0].pricing.completion == Decimal(30)
    assert report.added == [
        {
            "model": "anthropic/claude-c.3",
            "providers": ["anthropic"],
            "pricing": {"prompt": "6", "completion": "30"},
        }
    ]
    assert not report.removed and not report.price_changes


def test_an_unpriced_listing_is_reported_never_served() -> None:
    inputs = Inputs(
        base=BASE,
        previous=None,
        listings={
            "anthropic": _listed("claude-a-1", "claude-b-2-20250101", "claude-new"),
            "groq": _listed("llama-z-versatile", "mixtral-new"),
        },
        quotes=parse_prices(_quotes(("meta-llama/mixtral-new", "0.1", "0.1")), "test"),
    )
    overlay, report = plan(inputs, "2026-12-06")
    assert overlay.models == ()
    # A reseller's listing is never priced from the source: its own price is not OpenRouter's.
    assert report.unpriced == [
        {"provider": "anthropic", "native_id": "claude-new"},
        {"provider": "groq", "native_id": "mixtral-new"},
    ]


def test_a_model_gone_from_every_list_is_removed_and_one_gone_from_some_loses_that_offer() -> None:
    inputs = Inputs(
        base=BASE,
        previous=None,
        # claude-b-2 lists as its undated alias's snapshot: still there. claude-a-1 is gone from
        # Anthropic's list but OpenRouter (not read this run) still offers it.
        listings={"anthropic": _listed("claude-b-2-20250101")},
        quotes=None,
    )
    overlay, report = plan(inputs, "2026-12-06")
    models = {m.id: m for m in overlay.models}
    assert [o.provider for o in models["anthropic/claude-a-1"].offers] == ["openrouter"]
    assert report.offers_removed == [
        {"model": "anthropic/claude-a-1", "provider": "anthropic", "native_id": "claude-a-1"}
    ]
    assert report.removed == []

    inputs.listings = {"anthropic": _listed("claude-a-1")}
    overlay, report = plan(inputs, "2026-12-06")
    assert set(overlay.removed) == {"anthropic/claude-b-2"}
    assert "no longer list it" in overlay.removed["anthropic/claude-b-2"]


def test_a_list_that_shares_nothing_with_the_catalog_changes_nothing() -> None:
    inputs = Inputs(base=BASE, previous=None, listings={"anthropic": _listed("fake-model")}, quotes=None)
    overlay, report = plan(inputs, "2026-12-06")
    assert overlay.models == () and overlay.removed == {}
    assert report.ignored_lists == [
        {"provider": "anthropic", "listed": 1, "reason": "shares no model id with the catalog"}
    ]


def test_price_changes_apply_to_vendor_and_openrouter_offers_but_never_to_pinned_models() -> None:
    quotes = parse_prices(
        _quotes(("anthropic/claude-a-1", "0.0000025", "0.000015"), ("openai/gpt-x", "0.000002", "0.000008")),
        "test",
    )
    inputs = Inputs(base=BASE, previous=None, listings={}, quotes=quotes)
    overlay, report = plan(inputs, "2026-12-06")
    models = {m.id: m for m in overlay.models}
    assert [o.pricing.prompt for o in models["anthropic/claude-a-1"].offers] == [
        Decimal("2.5"),
        Decimal("2.5"),
    ]
    assert "openai/gpt-x" not in models  # pinned in the catalog file: the price stays
    changes = {(c["model"], c["provider"]): c for c in report.price_changes}
    assert changes["anthropic/claude-a-1", "anthropic"]["applied"] is True
    assert changes["anthropic/claude-a-1", "anthropic"]["from"] == {"prompt": "3", "completion": "15"}
    assert changes["anthropic/claude-a-1", "anthropic"]["to"] == {"prompt": "2.5", "completion": "15"}
    assert changes["openai/gpt-x", "openai"] == {
        "model": "openai/gpt-x",
        "provider": "openai",
        "from": {"prompt": "2.5", "completion": "10"},
        "to": {"prompt": "2", "completion": "8"},
        "applied": False,
        "pinned": True,
    }


def test_an_admin_pin_keeps_the_price_a_previous_sync_applied() -> None:
    first = parse_prices(_quotes(("anthropic/claude-a-1", "0.0000025", "0.000015")), "test")
    overlay, _ = plan(Inputs(base=BASE, previous=None, listings={}, quotes=first), "d1")
    later = parse_prices(_quotes(("anthropic/claude-a-1", "0.000004", "0.00002")), "test")
    inputs = Inputs(base=BASE, previous=overlay, listings={}, quotes=later, pins={"anthropic/claude-a-1"})
    pinned_overlay, report = plan(inputs, "d2")
    model = {m.id: m for m in pinned_overlay.models}["anthropic/claude-a-1"]
    assert {o.pricing.prompt for o in model.offers} == {Decimal("2.5")}  # pinned at what it had
    assert {c["applied"] for c in report.price_changes} == {False}
    # A source that stops quoting a model does not revert the price a sync applied.
    _, report = plan(Inputs(base=BASE, previous=overlay, listings={}, quotes={}), "d3")
    assert report.price_changes == []


def test_a_second_run_with_the_same_inputs_changes_nothing_and_a_returning_model_is_restored() -> None:
    quotes = parse_prices(_quotes(("anthropic/claude-c-3", "0.000006", "0.00003")), "test")
    listings = {"anthropic": _listed("claude-a-1", "claude-c-3")}  # claude-b-2 gone
    first, _ = plan(Inputs(base=BASE, previous=None, listings=listings, quotes=quotes), "d1")
    again, report = plan(Inputs(base=BASE, previous=first, listings=listings, quotes=quotes), "d1")
    assert again == first
    assert first.removed and any(m.id == "anthropic/claude-c-3" for m in first.models)
    # What the first run did is not reported again: the report is a diff against what is served.
    assert report.as_dict() == Report().as_dict()
    listings["anthropic"] += _listed("claude-b-2-20250101")
    back, report = plan(Inputs(base=BASE, previous=first, listings=listings, quotes=quotes), "d2")
    assert report.restored == ["anthropic/claude-b-2"] and back.removed == {}


def test_the_recorded_openrouter_document_reads_exactly() -> None:
    quotes = parse_prices((FIXTURES / "openrouter_models.json").read_bytes(), "fixture")
    opus = quotes["anthropic/claude-opus-6"]
    assert opus.rates == {
        "prompt": Decimal(6),
        "completion": Decimal(30),
        "cache_read": Decimal("0.6"),
        "cache_write": Decimal("7.5"),
    }
    assert "openrouter/auto" not in quotes  # priced "-1": a router, not a model with a price
    assert {"tools", "vision"} <= opus.capabilities


@pytest.mark.parametrize("bad", ["0.1e", 0.000003, "-0.1"])
def test_a_price_that_is_not_an_exact_decimal_leaves_the_entry_out(bad: object) -> None:
    import orjson

    raw = orjson.dumps({"data": [{"id": "a/b", "pricing": {"prompt": bad, "completion": "0"}}]})
    assert parse_prices(raw, "test") == {}


def test_the_overlay_builds_over_the_shipped_catalog() -> None:
    from shared.catalog import Catalog

    quotes = parse_prices(_quotes(("anthropic/claude-c-3", "0.000006", "0.00003")), "test")
    overlay, _ = plan(
        Inputs(
            base=BASE,
            previous=None,
            listings={"anthropic": _listed("claude-a-1", "claude-c-3")},
            quotes=quotes,
        ),
        "d1",
    )
    merged = overlaid(BASE, overlay)
    catalog = Catalog(list(merged.models), merged.aliases, merged.removed)
    assert catalog.resolve("claude-c-3") is not None
    assert catalog.resolve("anthropic/claude-b-2") is None
    assert catalog.gone_reason("claude-b-2") == catalog.gone_reason("anthropic/claude-b-2")
    assert "anthropic/claude-b-2" in (catalog.gone_reason("anthropic/claude-b-2") or "")


def test_a_model_an_earlier_run_added_stays_without_quotes_and_leaves_when_unlisted() -> None:
    quotes = parse_prices(_quotes(("anthropic/claude-c-3", "0.000006", "0.00003")), "test")
    listings = {"anthropic": _listed("claude-a-1", "claude-b-2", "claude-c-3")}
    first, _ = plan(Inputs(base=BASE, previous=None, listings=listings, quotes=quotes), "d1")
    # The price source is not configured any more (or no longer quotes it): still served, same price.
    kept, report = plan(Inputs(base=BASE, previous=first, listings=listings, quotes=None), "d2")
    assert kept == first and report.as_dict() == Report().as_dict()
    # Its provider stops listing it: removed, with the reason.
    listings["anthropic"] = _listed("claude-a-1", "claude-b-2")
    gone, report = plan(Inputs(base=BASE, previous=first, listings=listings, quotes=None), "d3")
    assert "anthropic/claude-c-3" in gone.removed
    assert report.removed == [{"model": "anthropic/claude-c-3", "providers": ["anthropic"]}]
