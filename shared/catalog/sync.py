"""Catalog sync (issue 15): providers' model lists + a price source → a catalog overlay and a diff.

`plan` is pure: from the catalog the operator ships (bundled + `GATEWAYZ_CATALOG_FILE`), the
previous overlay, what each provider lists and what the price source quotes, it computes the new
overlay and a report. It always starts from the shipped catalog, so a model that comes back is
restored and running it twice changes nothing the second time. The rules:

- **Which offers the source prices**: those of the providers in `GATEWAYZ_CATALOG_PRICED_PROVIDERS`
  (default OpenRouter — the source's own prices — and OpenAI, Anthropic and Google, whose
  first-party prices OpenRouter passes through unchanged). Other vendors' direct prices differ
  from OpenRouter's (DeepSeek, Mistral, Moonshot, Z.ai in the bundled catalog): never theirs.
- **New models**: a native id a provider lists that no catalog offer of that provider has becomes
  an offer when the source prices it for that provider — on OpenRouter (whose ids are the
  catalog's) or on the model's own vendor (`anthropic` lists `claude-opus-6`, priced as
  `anthropic/claude-opus-6`). Anything else is reported as unpriced, never served at a guessed
  price.
- **Removed models**: an offer whose native id its provider no longer lists (a dated snapshot
  and its undated alias count as one) is dropped; a model left without offers is removed and answers 404
  with the reason. A list that shares no id with the catalog's offers of that provider is not a
  list of that provider's models (a proxy's, a wrong URL): it is reported and changes nothing.
- **Prices**: a quote that differs from an offer the source prices is applied and reported
  — unless the model is pinned (`"pinned": true` in the catalog file, or the admin API), then it
  is reported and not applied. Only the rates the source states are compared: prompt, completion,
  and cache read/write when given.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from shared.billing import money
from shared.billing.ledger import new_id
from shared.catalog import (
    Catalog,
    CatalogError,
    CatalogFile,
    Model,
    Offer,
    Pricing,
    base_catalog_file,
    overlaid,
)
from shared.catalog import overlay as store
from shared.catalog.listings import Listed, Quote, SourceError, list_models, listable, load_prices, undated
from shared.config import ConfigError
from shared.errors import DependencyUnavailable
from shared.store import now_text

if TYPE_CHECKING:
    from shared.runtime import Runtime

log = logging.getLogger("gatewayz.catalog")

# The OpenRouter org of the ids a first-party provider lists as bare names (the price source names
# `anthropic/claude-opus-5.5`; Anthropic lists `claude-opus-5-5`).
VENDOR_ORGS: Mapping[str, str] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "google": "google",
    "mistral": "mistralai",
    "deepseek": "deepseek",
    "xai": "x-ai",
    "moonshot": "moonshotai",
    "zai": "z-ai",
    "cohere": "cohere",
    "perplexity": "perplexity",
}
AGGREGATOR = "openrouter"  # its list and its prices use the catalog's own ids
PRICED_BY_SOURCE = frozenset({AGGREGATOR, "openai", "anthropic", "google"})
MAX_LISTED = 200  # report entries of one kind beyond this are counted, not listed


def canonical(model_id: str) -> str:
    """Ids that name the same model across vendors' and OpenRouter's spellings (4.5 / 4-5)."""
    return model_id.lower().replace(".", "-")


@dataclass
class Inputs:
    base: CatalogFile  # bundled + operator file
    previous: CatalogFile | None  # the overlay served now
    listings: dict[str, list[Listed]]  # provider → what it lists (only providers read successfully)
    quotes: dict[str, Quote] | None  # the price source, by model id (None: not configured)
    pins: set[str] = field(default_factory=set)  # pinned through the admin API
    priced: frozenset[str] = PRICED_BY_SOURCE  # providers whose offers the source prices


@dataclass
class Report:
    added: list[dict[str, Any]] = field(default_factory=list)
    offers_added: list[dict[str, Any]] = field(default_factory=list)
    removed: list[dict[str, Any]] = field(default_factory=list)
    offers_removed: list[dict[str, Any]] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    price_changes: list[dict[str, Any]] = field(default_factory=list)
    unpriced: list[dict[str, Any]] = field(default_factory=list)
    ignored_lists: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in ("added", "offers_added", "removed", "offers_removed", "restored", "price_changes",
                     "unpriced", "ignored_lists"):  # fmt: skip
            items = getattr(self, name)
            out[name] = items[:MAX_LISTED]
            if len(items) > MAX_LISTED:
                out[f"{name}_more"] = len(items) - MAX_LISTED
        return out


def _rates(pricing: Pricing) -> dict[str, str]:
    return {k: money(getattr(pricing, k)) for k in ("prompt", "completion", "cache_read", "cache_write")
            if getattr(pricing, k) is not None}  # fmt: skip


def _quoted(pricing: Pricing, quote: Quote) -> Pricing:
    """The offer's pricing with the rates the source states."""
    return pricing.model_copy(update=dict(quote.rates))


def _differs(pricing: Pricing, quote: Quote) -> bool:
    return any(getattr(pricing, k) != v for k, v in quote.rates.items())


def _priced_by_source(provider: str, model_id: str, priced: frozenset[str]) -> bool:
    """Whether the price source states this offer's price: OpenRouter's, or the model's vendor's."""
    if provider not in priced:
        return False
    return provider == AGGREGATOR or VENDOR_ORGS.get(provider) == model_id.split("/", 1)[0]


def _new_pricing(quote: Quote) -> Pricing:
    return Pricing.model_validate(quote.rates)


def plan(inputs: Inputs, when: str) -> tuple[CatalogFile, Report]:
    previous = {m.id: m for m in inputs.previous.models} if inputs.previous else {}
    shipped = {m.id: m for m in inputs.base.models}
    # Models an earlier run added are carried like shipped ones: they leave when their providers
    # stop listing them, not when the price source is down or stops quoting them.
    carried = {mid: m for mid, m in previous.items() if mid not in shipped}
    base = {**shipped, **carried}
    was_removed = inputs.previous.removed if inputs.previous else {}
    quotes = inputs.quotes or {}
    by_canonical = {canonical(q.id): q for q in quotes.values()}
    pins = inputs.pins | {m.id for m in base.values() if m.pinned}
    report = Report()

    # What each provider lists, with snapshot dates folded into their undated aliases.
    listed: dict[str, set[str]] = {}
    for provider, rows in inputs.listings.items():
        ids = {r.native_id for r in rows} | {undated(r.native_id) for r in rows}
        known = {o.native_id for m in base.values() for o in m.offers if o.provider == provider}
        if known and not (known | {undated(n) for n in known}) & ids:
            report.ignored_lists.append(
                {"provider": provider, "listed": len(rows), "reason": "shares no model id with the catalog"}
            )
            continue
        listed[provider] = ids

    models: dict[str, Model] = {}
    removed: dict[str, str] = {}
    # The report is a diff against what was served: what a previous run already did is not news.
    for model in base.values():
        offers: list[Offer] = []
        already_gone = model.id in was_removed
        before = previous.get(model.id, model)
        before_offers = {o.provider: o for o in before.offers}
        for offer in model.offers:
            listing = listed.get(offer.provider)
            if listing is not None and not {offer.native_id, undated(offer.native_id)} & listing:
                if not already_gone and offer.provider in before_offers:
                    report.offers_removed.append(
                        {"model": model.id, "provider": offer.provider, "native_id": offer.native_id}
                    )
                continue
            prior = before_offers.get(offer.provider)
            if prior is not None and prior.native_id == offer.native_id and prior.pricing != offer.pricing:
                # A price a sync applied stays until the source quotes another (or the model is
                # pinned at it): a source that stops quoting a model must not revert it silently.
                offer = offer.model_copy(update={"pricing": prior.pricing})
            quote = quotes.get(model.id) or by_canonical.get(canonical(model.id))
            if quote is not None and _priced_by_source(offer.provider, model.id, inputs.priced):
                offer = _priced(model, offer, quote, pins, report)
            offers.append(offer)
        if not offers:
            gone_from = sorted({o.provider for o in model.offers})
            if already_gone:
                removed[model.id] = was_removed[model.id]  # with the date it went
                continue
            removed[model.id] = (
                f"its providers ({', '.join(gone_from)}) no longer list it (catalog sync {when})"
            )
            report.removed.append({"model": model.id, "providers": gone_from})
            continue
        if offers != list(model.offers) or model.id in carried:
            models[model.id] = model.model_copy(update={"offers": tuple(offers)})
        if model.id in was_removed:
            report.restored.append(model.id)

    _add_new(inputs, base, listed, by_canonical, pins, models, report)
    overlay = CatalogFile(models=tuple(models.values()), removed=removed)
    return overlay, report


def _priced(model: Model, offer: Offer, quote: Quote, pins: set[str], report: Report) -> Offer:
    """The offer at the quoted price, or — pinned — at the price it has now; the change reported."""
    current = offer.pricing
    if not _differs(current, quote):
        return offer
    pinned = model.id in pins
    change = {
        "model": model.id,
        "provider": offer.provider,
        "from": _rates(current),
        "to": _rates(_quoted(current, quote)),
        "applied": not pinned,
        "pinned": pinned,
    }
    report.price_changes.append(change)
    if pinned:
        log.warning("catalog sync: %s on %s has a new upstream price %s; pinned, not applied",
                    model.id, offer.provider, change["to"])  # fmt: skip
        return offer
    log.warning(
        "catalog sync: %s on %s re-priced %s → %s", model.id, offer.provider, change["from"], change["to"]
    )
    return offer.model_copy(update={"pricing": _quoted(current, quote)})


def _add_new(
    inputs: Inputs,
    base: dict[str, Model],
    listed: dict[str, set[str]],
    by_canonical: dict[str, Quote],
    pins: set[str],
    models: dict[str, Model],
    report: Report,
) -> None:
    """Offers (and models) for what providers list and the catalog lacks, where the source prices it."""
    base_ids = {canonical(m): m for m in base}  # the source may spell a catalog id differently
    names = set(base) | {m.split("/", 1)[1] for m in base} | set(inputs.base.aliases)
    names |= {a for m in base.values() for a in m.aliases}
    new_offers: dict[str, list[tuple[Offer, Listed]]] = {}
    for provider in sorted(listed):
        known = {o.native_id for m in base.values() for o in m.offers if o.provider == provider}
        known |= {undated(n) for n in known}
        for row in inputs.listings[provider]:
            native = row.native_id
            if native in known or undated(native) in known:
                continue  # a snapshot of a model the catalog has
            org = VENDOR_ORGS.get(provider)
            candidate = native if provider == AGGREGATOR else f"{org}/{native}" if org else None
            quote = by_canonical.get(canonical(candidate)) if candidate else None
            if quote is None or not _priced_by_source(provider, quote.id, inputs.priced):
                report.unpriced.append({"provider": provider, "native_id": native})
                continue
            if quote.id in pins:
                report.unpriced.append({"provider": provider, "native_id": native, "reason": "model pinned"})
                continue
            offer = Offer(provider=provider, native_id=native, pricing=_new_pricing(quote))
            new_offers.setdefault(base_ids.get(canonical(quote.id), quote.id), []).append((offer, row))
    served = {m.id: {o.provider for o in m.offers} for m in inputs.previous.models} if inputs.previous else {}
    for model_id, found in sorted(new_offers.items()):
        existing = models.get(model_id) or base.get(model_id)
        if existing is not None:
            have = {o.provider for o in existing.offers}
            extra = tuple(o for o, _ in found if o.provider not in have)
            if extra:
                models[model_id] = existing.model_copy(update={"offers": (*existing.offers, *extra)})
                report.offers_added += [
                    {"model": model_id, "provider": o.provider, "native_id": o.native_id}
                    for o in extra
                    if o.provider not in served.get(model_id, ())
                ]
            continue
        model = _new_model(by_canonical[canonical(model_id)], found, names)
        if model is None:
            report.unpriced += [{"provider": o.provider, "native_id": o.native_id, "reason": "invalid entry"}
                                for o, _ in found]  # fmt: skip
            continue
        models[model_id] = model
        if model_id in served:
            continue  # added by an earlier run
        report.added.append(
            {
                "model": model_id,
                "providers": [o.provider for o in model.offers],
                "pricing": _rates(model.offers[0].pricing),
            }
        )


def _new_model(quote: Quote, found: list[tuple[Offer, Listed]], taken: set[str]) -> Model | None:
    rows = [row for _, row in found]
    bare = quote.id.split("/", 1)[1] if "/" in quote.id else quote.id
    # The vendor's own spelling resolves too (Claude Code asks for `claude-opus-5-5`), unless the
    # name already leads to another model.
    aliases = sorted(
        {o.native_id for o, _ in found if "/" not in o.native_id and o.native_id not in (bare, *taken)}
    )
    try:
        return Model(
            id=quote.id,
            name=quote.name,
            owned_by=quote.id.split("/", 1)[0],
            created=quote.created or max((r.created or 0 for r in rows), default=0),
            description=quote.description,
            context_length=quote.context_length
            or max((r.context_length or 0 for r in rows), default=0)
            or 8192,
            max_output_tokens=quote.max_output_tokens
            or next((r.max_output_tokens for r in rows if r.max_output_tokens), None),
            input_modalities=quote.input_modalities,
            output_modalities=quote.output_modalities or ("text",),
            capabilities=quote.capabilities,
            aliases=tuple(aliases),
            offers=tuple(o for o, _ in found),
        )
    except ValidationError:
        return None


# --- running it -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncOptions:
    # None: GATEWAYZ_CATALOG_SYNC_PROVIDERS, else every configured provider with a model list.
    providers: tuple[str, ...] | None = None
    prices: str | None = None  # None: GATEWAYZ_CATALOG_PRICES
    dry_run: bool = False
    # Also write the overlay here as a catalog file (usable as GATEWAYZ_CATALOG_FILE, extending
    # the bundled catalog): for an operator who ships the catalog as a file rather than serving it
    # from the database.
    output: str | None = None


def _providers(rt: Runtime, asked: Iterable[str] | None) -> list[str]:
    raw = asked
    if raw is None:
        env = rt.settings.env.get("GATEWAYZ_CATALOG_SYNC_PROVIDERS", "")
        raw = [p.strip() for p in env.split(",") if p.strip()] or None
    if raw is None:
        return sorted(pid for pid, ep in rt.endpoints.items() if ep.configured and listable(ep))
    chosen = list(dict.fromkeys(raw))
    for pid in chosen:
        ep = rt.endpoints.get(pid)
        if ep is None:
            raise ConfigError(f"catalog sync: unknown provider {pid!r}")
        if not listable(ep):
            raise ConfigError(
                f"catalog sync: provider {pid!r} has no model list to read (dialect {ep.provider.dialect})"
            )
    return chosen


async def run_sync(rt: Runtime, options: SyncOptions | None = None) -> dict[str, Any]:
    """Read the lists and prices, compute the overlay, store it (unless a dry run); the report."""
    import httpx

    options = options or SyncOptions()
    providers = _providers(rt, options.providers)
    priced_env = rt.settings.env.get("GATEWAYZ_CATALOG_PRICED_PROVIDERS", "")
    priced = frozenset(p.strip() for p in priced_env.split(",") if p.strip()) or PRICED_BY_SOURCE
    unknown = priced - set(rt.endpoints)
    if unknown:
        raise ConfigError(
            f"GATEWAYZ_CATALOG_PRICED_PROVIDERS: unknown provider(s) {', '.join(sorted(unknown))}"
        )
    source = options.prices if options.prices is not None else rt.settings.env.get("GATEWAYZ_CATALOG_PRICES")
    status: dict[str, dict[str, Any]] = {}
    listings: dict[str, list[Listed]] = {}
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0)) as client:

        async def read(pid: str) -> None:
            endpoint = rt.endpoints[pid]
            if not endpoint.configured:
                status[pid] = {"status": "skipped", "reason": endpoint.reason}
                return
            try:
                listings[pid] = await list_models(client, endpoint)
                status[pid] = {"status": "ok", "listed": len(listings[pid])}
            except SourceError as exc:
                # Its offers stay as they are: a failed list says nothing about what it serves.
                status[pid] = {"status": "error", "error": str(exc)}

        await asyncio.gather(*(read(pid) for pid in providers))
        try:
            quotes = await load_prices(client, source) if source else None
        except SourceError as exc:
            # A run without the prices the operator configured would look like a success that
            # found no new model and no price change: refuse it whole, as a dependency outage.
            raise DependencyUnavailable(f"catalog sync: {exc}; nothing stored") from None
    previous = await store.latest(rt.db)
    inputs = Inputs(
        base=await asyncio.to_thread(base_catalog_file, rt.settings.catalog_file),
        previous=previous[1] if previous else None,
        listings=listings,
        quotes=quotes,
        pins=await store.pinned(rt.db),
        priced=priced,
    )
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    overlay, report = plan(inputs, when)
    merged = overlaid(inputs.base, overlay)
    try:  # the overlay must build into a catalog before any instance is given it
        Catalog(list(merged.models), merged.aliases, merged.removed)
    except CatalogError as exc:
        raise CatalogError(f"catalog sync: the overlay does not build ({exc}); nothing stored") from None
    sync_id = new_id("csync")
    result = {
        "id": sync_id,
        "created_at": now_text(),
        "dry_run": options.dry_run,
        "providers": dict(sorted(status.items())),
        "prices": {"source": source, "models": len(quotes)} if quotes is not None else None,
        **report.as_dict(),
    }
    if options.output:
        text = overlay.model_dump_json(exclude_defaults=True, indent=2)
        await asyncio.to_thread(Path(options.output).write_text, text + "\n", "utf-8")
    if not options.dry_run:
        await store.store(rt.db, sync_id, overlay, result)
        await rt.refresh_catalog()  # this process serves it at once; the others within their refresh
    return result
