"""Which offers may serve a request, and in which order (SPEC §3).

`plan` turns the request's `model`, `models` (fallbacks) and `provider` preferences into the
ordered list of candidates that the failover walk tries: the request's provider order first, then
offers without a recent 429 before those with one, then the sort strategy (price by default). Offers that lack a capability
the request needs, exceed `max_price`, or whose provider is not configured are skipped, and when
nothing is left the 503 says why. Offers whose breaker is open stay in their place: the failover
walk skips them there, and says so in `x-gatewayz-attempts`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from shared.catalog import Catalog, Model, Offer, Pricing, ResolvedOffer
from shared.errors import InvalidRequest, ModelNotFound, NoProviderAvailable
from shared.providers import ProviderEndpoint
from shared.routing.health import HealthBook

SORTS = frozenset({"price", "latency", "throughput"})
MAX_MODEL_NAME = 256
_PREF_KEYS = frozenset(
    {
        "order",
        "only",
        "ignore",
        "allow_fallbacks",
        "sort",
        "max_price",
        "require_parameters",
        "data_collection",
    }
)


@dataclass(slots=True)
class Candidate:
    offer: ResolvedOffer
    endpoint: ProviderEndpoint
    byok: bool = False  # served with the caller's own provider key (charged only the BYOK fee)

    @property
    def provider_id(self) -> str:
        return self.offer.offer.provider

    @property
    def model_id(self) -> str:
        return self.offer.model.id


@dataclass(slots=True)
class Preferences:
    order: list[str] = field(default_factory=list)
    only: set[str] | None = None
    ignore: set[str] = field(default_factory=set)
    allow_fallbacks: bool = True
    sort: str = "price"
    max_price: dict[str, Decimal] = field(default_factory=dict)


def _str_list(value: Any, param: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidRequest(f"{param} must be an array of provider ids", param=param)
    return value


def parse_preferences(raw: Any, providers: Mapping[str, ProviderEndpoint]) -> Preferences:
    prefs = Preferences()
    if raw is None:
        return prefs
    if not isinstance(raw, dict):
        raise InvalidRequest("provider must be an object", param="provider")
    unknown = set(raw) - _PREF_KEYS
    if unknown:
        raise InvalidRequest(
            f"unknown provider preference(s): {', '.join(sorted(unknown))}", param="provider"
        )
    for key in ("order", "only", "ignore"):
        if raw.get(key) is not None:
            ids = _str_list(raw[key], f"provider.{key}")
            bad = [p for p in ids if p not in providers]
            if bad:
                raise InvalidRequest(
                    f"unknown provider(s) in provider.{key}: {', '.join(bad)}", param=f"provider.{key}"
                )
            if key == "order":
                prefs.order = ids
            elif key == "only":
                prefs.only = set(ids)
            else:
                prefs.ignore = set(ids)
    if raw.get("allow_fallbacks") is not None:
        if not isinstance(raw["allow_fallbacks"], bool):
            raise InvalidRequest(
                "provider.allow_fallbacks must be a boolean", param="provider.allow_fallbacks"
            )
        prefs.allow_fallbacks = raw["allow_fallbacks"]
    if raw.get("sort") is not None:
        if raw["sort"] not in SORTS:
            raise InvalidRequest("provider.sort must be price, latency or throughput", param="provider.sort")
        prefs.sort = raw["sort"]
    if raw.get("max_price") is not None:
        mp = raw["max_price"]
        if not isinstance(mp, dict) or set(mp) - {"prompt", "completion", "request", "image"}:
            raise InvalidRequest(
                "provider.max_price must be an object of prompt, completion, request, image",
                param="provider.max_price",
            )
        for key, value in mp.items():
            try:
                price = Decimal(str(value))
            except InvalidOperation:
                price = Decimal(-1)
            if isinstance(value, bool) or not price.is_finite() or price < 0:
                raise InvalidRequest(
                    f"provider.max_price.{key} must be a non-negative number", param="provider.max_price"
                )
            prefs.max_price[key] = price
    return prefs


def _within(pricing: Pricing, max_price: dict[str, Decimal]) -> bool:
    return all(getattr(pricing, key) <= limit for key, limit in max_price.items())


class Router:
    def __init__(
        self, catalog: Catalog, endpoints: Mapping[str, ProviderEndpoint], health: HealthBook
    ) -> None:
        self.catalog = catalog
        self.endpoints = endpoints
        self.health = health

    def resolve(self, name: str, param: str) -> tuple[Model, list[ResolvedOffer]]:
        """A model name → the model and the offers it names (all, one provider's, or the free ones).

        Every name a caller writes (`model`, `models`) comes through here and is checked once: it
        reaches response headers (`x-gatewayz-model`), records and, for `local:`, an upstream
        request — so printable ASCII only."""
        if len(name) > MAX_MODEL_NAME or not (name.isascii() and name.isprintable()):
            raise InvalidRequest(
                f"'{param}' must be a model id of at most {MAX_MODEL_NAME} printable ASCII characters "
                "(no line breaks or other control characters)",
                param=param,
            )
        model = self.catalog.resolve(name)
        if model is not None:
            return model, list(self.catalog.offers[model.id])
        head, sep, rest = name.partition(":")
        if sep and head in self.endpoints and rest:
            # `provider:model`: a catalog model (or alias) served by that provider, or its native id.
            model = self.catalog.resolve(rest)
            if model is not None:
                return model, [o for o in self.catalog.offers[model.id] if o.provider_id == head]
            native = self.catalog.native.get((head, rest))
            if native is not None:
                return native.model, [native]
            if head == "local":  # a self-hosted server serves whatever it loaded; it costs nothing
                return self._local_model(rest)
        if name.endswith(":free"):
            model = self.catalog.resolve(name[: -len(":free")])
            if model is not None:
                return model, [o for o in self.catalog.offers[model.id] if o.pricing.is_free]
        gone = self.catalog.gone_reason(name.removesuffix(":free"))
        if gone is not None:  # the catalog sync found it gone from its providers' lists
            raise ModelNotFound(gone, param=param)
        raise ModelNotFound(f"The model '{name}' does not exist or is not in the catalog", param=param)

    def _local_model(self, native_id: str) -> tuple[Model, list[ResolvedOffer]]:
        offer = Offer(
            provider="local", native_id=native_id, pricing=Pricing(prompt=Decimal(0), completion=Decimal(0))
        )
        # Made per request, not catalog data: its id is the `local:` name the caller sent (an id
        # that resolves again), which the catalog's `org/model` pattern does not admit.
        model = Model.model_construct(
            id=f"local:{native_id}",
            name=f"Local: {native_id}",
            owned_by="local",
            created=0,
            context_length=131072,
            capabilities=frozenset({"tools", "json_mode", "json_schema", "vision"}),
            offers=(offer,),
        )
        return model, [ResolvedOffer(model, offer)]

    def plan(
        self,
        body: dict[str, Any],
        needs: frozenset[str],
        prefs: Preferences,
        byok: frozenset[str] = frozenset(),
    ) -> list[Candidate]:
        """`byok`: providers the caller has their own key for — usable even where the operator has none."""
        names: list[tuple[str, str]] = []
        if isinstance(body.get("model"), str) and body["model"]:
            names.append((body["model"], "model"))
        fallbacks = body.get("models")
        if fallbacks is not None:
            if not isinstance(fallbacks, list) or not all(isinstance(m, str) and m for m in fallbacks):
                raise InvalidRequest("models must be an array of model ids", param="models")
            names.extend((m, "models") for m in fallbacks)
        if not names:
            raise InvalidRequest("you must provide a model parameter", param="model")
        seen: set[str] = set()
        plan: list[Candidate] = []
        reasons: list[str] = []
        for name, param in names:
            model, offers = self.resolve(name, param)
            key = f"{model.id}|{name}"
            if key in seen:
                continue
            seen.add(key)
            ordered = self._order(self._eligible(offers, needs, prefs, reasons, byok), prefs, byok)
            if not prefs.allow_fallbacks:
                ordered = ordered[:1]
            plan.extend(ordered)
        if not plan:
            detail = "; ".join(dict.fromkeys(reasons)) or "no offer matches the request"
            raise NoProviderAvailable(f"No provider can serve '{names[0][0]}' right now: {detail}")
        return plan

    def _eligible(
        self,
        offers: Sequence[ResolvedOffer],
        needs: frozenset[str],
        prefs: Preferences,
        reasons: list[str],
        byok: frozenset[str],
    ) -> list[Candidate]:
        out: list[Candidate] = []
        for offer in offers:
            pid = offer.provider_id
            endpoint = self.endpoints.get(pid)
            usable = endpoint is not None and (endpoint.configured or (endpoint.missing_key and pid in byok))
            if endpoint is None or not usable:
                reasons.append(f"{pid} is not configured ({endpoint.reason if endpoint else 'unknown'})")
            elif (prefs.only is not None and pid not in prefs.only) or pid in prefs.ignore:
                reasons.append(f"{pid} excluded by the provider preferences")
            elif needs - offer.capabilities:
                reasons.append(f"{pid} lacks {', '.join(sorted(needs - offer.capabilities))}")
            elif prefs.max_price and not _within(offer.pricing, prefs.max_price):
                reasons.append(f"{pid} is above max_price")
            else:
                out.append(Candidate(offer, endpoint))
        return out

    def _order(
        self, candidates: list[Candidate], prefs: Preferences, byok: frozenset[str]
    ) -> list[Candidate]:
        rank = {pid: i for i, pid in enumerate(prefs.order)}
        health = self.health

        def key(c: Candidate) -> tuple[Any, ...]:
            p = c.offer.pricing
            if prefs.sort == "latency":
                strategy: Any = health.latency(c.provider_id, c.model_id)
            elif prefs.sort == "throughput":
                strategy = -health.throughput(c.provider_id, c.model_id)
            else:
                strategy = p.prompt + p.completion
            # The caller's own keys come first (unless they ordered providers themselves).
            own = 0 if prefs.order or c.provider_id in byok else 1
            return (
                rank.get(c.provider_id, len(rank)),
                own,
                health.is_saturated(c.provider_id, c.model_id),  # a recent 429
                strategy,
            )

        return sorted(candidates, key=key)
