"""The model catalog: models, the provider offers that serve them, prices and aliases.

The bundled `models.json` is validated once per process (prices are exact decimals, every offer
names a provider of the table, aliases point at real models). `GATEWAYZ_CATALOG_FILE` names an
operator file of the same shape that extends the bundled catalog (a model with the same id
replaces the bundled one) or, with `"mode": "replace"`, stands alone.

On top of both, the catalog sync (`shared.catalog.sync`) writes an overlay of the same shape: the
models it added or re-priced, and under `removed` the ids of models their providers no longer
list (they answer 404 with the reason, instead of an upstream error). A model marked `pinned`
keeps its price through every sync: an upstream change is reported, never applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.providers import load_providers
from shared.providers.quirks import EMPTY_QUIRKS, Quirks

CAPABILITIES = frozenset(
    {"tools", "json_mode", "json_schema", "vision", "reasoning", "audio_input", "file_input", "logprobs"}
)
# "embeddings": an embedding model's output (served on /v1/embeddings, never on chat).
MODALITIES = frozenset({"text", "image", "audio", "file", "video", "embeddings"})
MILLION = Decimal(1_000_000)


class CatalogError(ValueError):
    pass


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TokenRates(_Strict):
    """USD per million tokens of each kind, exact decimals."""

    prompt: Decimal = Field(ge=0)
    completion: Decimal = Field(ge=0)
    cache_read: Decimal | None = Field(default=None, ge=0)  # None: cached input is billed as prompt
    cache_write: Decimal | None = Field(default=None, ge=0)  # None: cache writes billed as prompt
    # Anthropic's 1-hour cache writes cost more than its 5-minute ones (2x input against 1.25x:
    # https://platform.claude.com/docs/en/build-with-claude/prompt-caching#pricing). None: as cache_write.
    cache_write_1h: Decimal | None = Field(default=None, ge=0)
    reasoning: Decimal | None = Field(default=None, ge=0)  # None: reasoning billed as completion

    @field_validator("*", mode="before")
    @classmethod
    def _no_floats(cls, value: Any) -> Any:
        # A float in a price file has already lost exactness; demand strings (or integers).
        if isinstance(value, float):
            raise ValueError("prices must be decimal strings, not floats")
        return value


class LongPrompt(TokenRates):
    """Rates for a request whose prompt (input, cache reads and writes) is longer than
    `threshold` tokens: every token of that request, output included, is billed at them (Claude
    Haiku 5.5: https://platform.claude.com/docs/en/models/haiku-5-5/overview)."""

    threshold: int = Field(gt=0)


class Pricing(TokenRates):
    """Token rates plus the per-image and per-request prices, and an optional long-prompt tier.

    An image model is priced one of two ways. Per token (gpt-image-1 reports its usage): the
    prompt rate bills the prompt, the completion rate the image tokens, and the offer's
    `max_output_tokens` is the most one image can take (the reservation's worst case). Per image
    (dall-e-3, most hosts): `images` maps "quality/size" (or "size", or "default") to the USD
    price of one generated image; the first entry is the one a request naming neither gets.
    """

    image: Decimal = Field(default=Decimal(0), ge=0)
    request: Decimal = Field(default=Decimal(0), ge=0)
    long_prompt: LongPrompt | None = None
    images: dict[str, Decimal] | None = None

    @field_validator("images", mode="before")
    @classmethod
    def _exact_images(cls, value: Any) -> Any:
        if isinstance(value, dict) and any(isinstance(v, float) for v in value.values()):
            raise ValueError("prices must be decimal strings, not floats")
        if isinstance(value, dict) and not value:
            raise ValueError("a per-image price table needs at least one entry")
        return value

    def image_price(self, quality: str, size: str) -> Decimal:
        """One generated image's price: the entry for this quality and size, else for the size,
        else the first (the model's default)."""
        table = self.images
        if not table:
            return Decimal(0)
        for key in (f"{quality}/{size}", size, f"{quality}/", "default"):
            if key in table:
                return table[key]
        if quality:  # a known quality with the default size
            for key, value in table.items():
                if key.startswith(f"{quality}/"):
                    return value
        return next(iter(table.values()))

    def rates_for(self, prompt_tokens: int) -> TokenRates:
        """The token rates that apply to a request with this many prompt tokens."""
        tier = self.long_prompt
        return tier if tier is not None and prompt_tokens > tier.threshold else self

    @property
    def is_free(self) -> bool:
        return not (self.prompt or self.completion or self.request or self.image or self.images)


class Offer(_Strict):
    provider: str
    native_id: str
    pricing: Pricing
    context_length: int | None = Field(default=None, gt=0)
    max_output_tokens: int | None = Field(default=None, gt=0)
    capabilities: frozenset[str] | None = None  # None: the model's
    quirks: dict[str, Any] | None = None

    @field_validator("capabilities")
    @classmethod
    def _known_caps(cls, value: frozenset[str] | None) -> frozenset[str] | None:
        if value is not None and value - CAPABILITIES:
            raise ValueError(f"unknown capabilities {sorted(value - CAPABILITIES)}")
        return value


class Model(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9._-]+/[A-Za-z0-9._:-]+$")
    name: str
    owned_by: str
    created: int = Field(ge=0)
    description: str = ""
    context_length: int = Field(gt=0)
    max_output_tokens: int | None = Field(default=None, gt=0)
    input_modalities: tuple[str, ...] = ("text",)
    output_modalities: tuple[str, ...] = ("text",)
    capabilities: frozenset[str] = frozenset()
    aliases: tuple[str, ...] = ()
    dimensions: int | None = Field(default=None, gt=0)  # an embedding model's default vector length
    pinned: bool = (
        False  # the operator fixed its prices: the catalog sync reports changes, never applies them
    )
    offers: tuple[Offer, ...] = Field(min_length=1)

    @field_validator("capabilities")
    @classmethod
    def _known_caps(cls, value: frozenset[str]) -> frozenset[str]:
        if value - CAPABILITIES:
            raise ValueError(f"unknown capabilities {sorted(value - CAPABILITIES)}")
        return value

    @field_validator("input_modalities", "output_modalities")
    @classmethod
    def _known_modalities(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if set(value) - MODALITIES:
            raise ValueError(f"unknown modalities {sorted(set(value) - MODALITIES)}")
        return value

    @model_validator(mode="after")
    def _offers_distinct(self) -> Model:
        seen = [o.provider for o in self.offers]
        if len(seen) != len(set(seen)):
            raise ValueError("a provider may offer a model only once")
        return self

    @property
    def is_free(self) -> bool:
        return all(o.pricing.is_free for o in self.offers)


class CatalogFile(_Strict):
    mode: Literal["extend", "replace"] = "extend"
    models: tuple[Model, ...] = ()
    aliases: dict[str, str] = Field(default_factory=dict)
    removed: dict[str, str] = Field(default_factory=dict)  # model id → why it is no longer served


class ResolvedOffer:
    """An offer joined with what routing needs from its model and provider row, computed once."""

    __slots__ = ("capabilities", "context_length", "max_output_tokens", "model", "offer", "quirks")

    def __init__(self, model: Model, offer: Offer) -> None:
        self.model = model
        self.offer = offer
        self.capabilities = offer.capabilities if offer.capabilities is not None else model.capabilities
        self.context_length = offer.context_length or model.context_length
        self.max_output_tokens = offer.max_output_tokens or model.max_output_tokens
        provider = load_providers()[offer.provider]
        offer_quirks = Quirks.parse(offer.quirks, f"offer {offer.provider}/{offer.native_id}")
        self.quirks = provider.quirks.merged(offer_quirks) if offer_quirks else provider.quirks

    @property
    def provider_id(self) -> str:
        return self.offer.provider

    @property
    def pricing(self) -> Pricing:
        return self.offer.pricing


class Catalog:
    def __init__(
        self, models: list[Model], aliases: Mapping[str, str], removed: Mapping[str, str] | None = None
    ) -> None:
        providers = load_providers()
        removed = removed or {}
        self.models: dict[str, Model] = {}
        for model in models:
            if model.id not in removed:
                self.models[model.id] = model
        # Names that once led to a model the catalog sync found gone → that model's id.
        self.gone: dict[str, str] = {}
        self.removed: dict[str, str] = {m: why for m, why in removed.items() if m not in self.models}
        self.offers: dict[str, tuple[ResolvedOffer, ...]] = {}
        self.native: dict[tuple[str, str], ResolvedOffer] = {}
        for model in self.models.values():
            for offer in model.offers:
                if offer.provider not in providers:
                    raise CatalogError(f"model {model.id}: offer names unknown provider {offer.provider!r}")
            resolved = tuple(ResolvedOffer(model, o) for o in model.offers)
            self.offers[model.id] = resolved
            for r in resolved:
                self.native.setdefault((r.provider_id, r.offer.native_id), r)
        self.aliases: dict[str, str] = {}
        # Bare names: the part after the org when it is unambiguous (`gpt-4o` → `openai/gpt-4o`).
        bare: dict[str, list[str]] = {}
        for model_id in self.models:
            bare.setdefault(model_id.split("/", 1)[1], []).append(model_id)
        for name, ids in bare.items():
            if len(ids) == 1 and name not in self.models:
                self.aliases[name] = ids[0]
        for model in self.models.values():
            for alias in model.aliases:
                self._alias(alias, model.id)
        gone_models = [m for m in models if m.id in self.removed]
        for model in gone_models:
            self.gone[model.id] = model.id
            for alias in model.aliases:
                self.gone.setdefault(alias, model.id)
        for model_id in self.removed:
            self.gone.setdefault(model_id, model_id)
            self.gone.setdefault(model_id.split("/", 1)[-1], model_id)
        for alias, target in aliases.items():
            if target in self.removed:
                self.gone.setdefault(alias, target)
            else:
                self._alias(alias, target)
        for name in list(self.gone):
            if name in self.models or name in self.aliases:  # a live model took the name over
                del self.gone[name]

    def gone_reason(self, name: str) -> str | None:
        """Why `name` (a model id or alias) no longer resolves, when the catalog sync removed it."""
        model_id = self.gone.get(name)
        if model_id is None:
            return None
        return f"The model '{model_id}' is no longer available: {self.removed[model_id]}"

    def _alias(self, alias: str, target: str) -> None:
        if target not in self.models:
            raise CatalogError(f"alias {alias!r} points at unknown model {target!r}")
        if alias in self.models and alias != target:
            raise CatalogError(f"alias {alias!r} shadows a model id")
        self.aliases[alias] = target

    def resolve(self, name: str) -> Model | None:
        model = self.models.get(name)
        if model is None:
            target = self.aliases.get(name)
            model = self.models.get(target) if target else None
        return model


def _read(text: bytes | str, where: str) -> CatalogFile:
    try:
        return CatalogFile.model_validate(orjson.loads(text))
    except orjson.JSONDecodeError as exc:
        raise CatalogError(f"{where}: not valid JSON ({exc})") from None
    except ValidationError as exc:
        raise CatalogError(f"{where}: {exc}") from None


@cache
def bundled_catalog_file() -> CatalogFile:
    data = resources.files("shared.catalog").joinpath("models.json").read_bytes()
    return _read(data, "bundled catalog")


def parse_catalog_file(text: bytes | str, where: str) -> CatalogFile:
    return _read(text, where)


def base_catalog_file(operator_file: str | None = None) -> CatalogFile:
    """The bundled catalog with the operator's file applied: what the catalog sync starts from."""
    base = bundled_catalog_file()
    if not operator_file:
        return base
    path = Path(operator_file)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise CatalogError(f"GATEWAYZ_CATALOG_FILE {operator_file!r}: {exc.strerror}") from None
    extra = _read(text, f"GATEWAYZ_CATALOG_FILE {operator_file!r}")
    if extra.mode == "replace":
        return extra
    return overlaid(base, extra)


def overlaid(base: CatalogFile, extra: CatalogFile) -> CatalogFile:
    """`extra` over `base`: its models replace those with the same id, its removals add up."""
    merged = {m.id: m for m in base.models}
    merged.update({m.id: m for m in extra.models})
    return CatalogFile(
        models=tuple(merged.values()),
        aliases={**base.aliases, **extra.aliases},
        removed={**base.removed, **extra.removed},
    )


def build_catalog(operator_file: str | None = None, overlay: CatalogFile | None = None) -> Catalog:
    """The catalog a process serves: bundled, the operator's file, then the last sync's overlay."""
    base = base_catalog_file(operator_file)
    if overlay is not None:
        base = overlaid(base, overlay)
    return Catalog(list(base.models), base.aliases, base.removed)


__all__ = [
    "CAPABILITIES",
    "EMPTY_QUIRKS",
    "MILLION",
    "Catalog",
    "CatalogError",
    "CatalogFile",
    "Model",
    "Offer",
    "Pricing",
    "ResolvedOffer",
    "build_catalog",
]
