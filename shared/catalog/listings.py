"""What the catalog sync reads: each provider's model list, and a price source.

Model lists, per dialect (an admin call: httpx, never the inference client):
- OpenAI-compatible: `GET {base}/models` → `{"object": "list", "data": [{"id", "created", ...}]}`
  (https://platform.openai.com/docs/api-reference/models/list);
- Anthropic: `GET {base}/v1/models?limit=1000` with `x-api-key` and `anthropic-version`, paged
  by `after_id` while `has_more` (https://docs.anthropic.com/en/api/models-list);
- Gemini (AI Studio): `GET {base}/models?pageSize=1000`, paged by `pageToken`/`nextPageToken`;
  only models whose `supportedGenerationMethods` include `generateContent` or `embedContent`
  (https://ai.google.dev/api/models#method:-models.list).
Rows that sign their calls (SigV4, Google service accounts) have no such list: not synced.

The price source is an OpenRouter-format models document, by URL or file path
(https://openrouter.ai/docs/api-reference/list-available-models): `{"data": [{id, name, created,
context_length, architecture, pricing: {prompt, completion, input_cache_read,
input_cache_write, ...}, top_provider, supported_parameters}]}` with prices in USD per token as
decimal strings. They become exact USD per million tokens; an entry with a price that is not a
decimal string, or negative (OpenRouter's routers say "-1"), is left out.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import httpx
import orjson

from shared.billing import money
from shared.catalog import MILLION, MODALITIES
from shared.providers import ProviderEndpoint

LISTABLE = frozenset({"openai", "anthropic", "gemini"})
_MAX_PAGES = 50  # a paging loop that never ends is a broken upstream, not a big catalog
_SERVED = frozenset({"generateContent", "embedContent"})  # Gemini methods the gemini dialect calls
_DATED = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2})$")  # a snapshot id: claude-…-20250514, gpt-…-2024-08-06


class SourceError(Exception):
    """A model list or price source could not be read (the message names what and why)."""


@dataclass(frozen=True, slots=True)
class Listed:
    """One model as a provider's list shows it."""

    native_id: str
    created: int | None = None
    context_length: int | None = None
    max_output_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Quote:
    """One model of the price source: USD per million tokens, and what a catalog entry needs."""

    id: str
    name: str
    created: int
    description: str
    context_length: int | None
    max_output_tokens: int | None
    rates: dict[str, Decimal]  # prompt, completion and, when stated, cache_read, cache_write
    input_modalities: tuple[str, ...]
    output_modalities: tuple[str, ...]
    capabilities: frozenset[str]


def undated(native_id: str) -> str:
    """The id without a snapshot date (providers list `claude-x-20250514`; `claude-x` is its alias)."""
    return _DATED.sub("", native_id)


def listable(endpoint: ProviderEndpoint) -> bool:
    provider = endpoint.provider
    return provider.dialect in LISTABLE and provider.auth not in ("aws-sigv4", "google-oauth")


async def _get(client: httpx.AsyncClient, url: str, headers: Any, params: dict[str, Any]) -> Any:
    try:
        response = await client.get(url, headers=headers, params=params)
    except httpx.HTTPError as exc:
        raise SourceError(f"GET {url}: {type(exc).__name__}") from None
    if response.status_code != 200:
        raise SourceError(f"GET {url}: HTTP {response.status_code}")
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise SourceError(f"GET {url}: the answer is not JSON") from None


def _int(value: Any) -> int | None:
    return value if type(value) is int and value > 0 else None


async def list_models(client: httpx.AsyncClient, endpoint: ProviderEndpoint) -> list[Listed]:
    dialect = endpoint.provider.dialect
    base, headers = endpoint.base_url, endpoint.headers
    out: list[Listed] = []
    if dialect == "openai":
        body = await _get(client, f"{base}/models", headers, {})
        rows = body.get("data") if isinstance(body, dict) else None
        if not isinstance(rows, list):
            raise SourceError(f"GET {base}/models: no 'data' list")
        for row in rows:
            if isinstance(row, dict) and isinstance(row.get("id"), str) and row["id"]:
                out.append(Listed(row["id"], created=_int(row.get("created"))))
        return out
    if dialect == "anthropic":
        params: dict[str, Any] = {"limit": 1000}
        for _ in range(_MAX_PAGES):
            body = await _get(client, f"{base}/v1/models", headers, params)
            rows = body.get("data") if isinstance(body, dict) else None
            if not isinstance(rows, list):
                raise SourceError(f"GET {base}/v1/models: no 'data' list")
            for row in rows:
                if isinstance(row, dict) and row.get("type") == "model" and isinstance(row.get("id"), str):
                    out.append(Listed(row["id"], max_output_tokens=_int(row.get("max_tokens"))))
            if not body.get("has_more") or not body.get("last_id"):
                return out
            params = {"limit": 1000, "after_id": body["last_id"]}
        raise SourceError(f"GET {base}/v1/models: more than {_MAX_PAGES} pages")
    # gemini
    params = {"pageSize": 1000}
    for _ in range(_MAX_PAGES):
        body = await _get(client, f"{base}/models", headers, params)
        rows = body.get("models", []) if isinstance(body, dict) else None
        if not isinstance(rows, list):
            raise SourceError(f"GET {base}/models: no 'models' list")
        for row in rows:
            if not isinstance(row, dict) or not isinstance(row.get("name"), str):
                continue
            if not _SERVED & set(row.get("supportedGenerationMethods") or ()):
                continue  # AQA, image or video generation: nothing the gateway serves from Gemini
            out.append(
                Listed(
                    row["name"].removeprefix("models/"),
                    context_length=_int(row.get("inputTokenLimit")),
                    max_output_tokens=_int(row.get("outputTokenLimit")),
                )
            )
        token = body.get("nextPageToken")
        if not token:
            return out
        params = {"pageSize": 1000, "pageToken": token}
    raise SourceError(f"GET {base}/models: more than {_MAX_PAGES} pages")


def _per_million(value: Any) -> Decimal | None:
    if type(value) is not str and type(value) is not int:
        return None  # a float has already lost exactness
    try:
        price = Decimal(value) * MILLION
    except InvalidOperation:
        return None
    if not price.is_finite() or price < 0:
        return None
    return Decimal(money(price))  # 3 rather than 3.000000 (or 3E+1 from normalize)


_RATES = {"prompt": "prompt", "completion": "completion", "input_cache_read": "cache_read",
          "input_cache_write": "cache_write"}  # fmt: skip
_PARAMS = {"tools": "tools", "response_format": "json_mode", "structured_outputs": "json_schema",
           "reasoning": "reasoning", "include_reasoning": "reasoning", "logprobs": "logprobs"}  # fmt: skip
_INPUT_CAPS = {"image": "vision", "file": "file_input", "audio": "audio_input"}


def _quote(row: dict[str, Any]) -> Quote | None:
    model_id, pricing = row.get("id"), row.get("pricing")
    if not isinstance(model_id, str) or not isinstance(pricing, dict):
        return None
    rates: dict[str, Decimal] = {}
    for key, field in _RATES.items():
        if key in pricing:
            price = _per_million(pricing[key])
            if price is None:
                return None
            if field in ("prompt", "completion") or price > 0:  # a cache rate of 0 means "none stated"
                rates[field] = price
    if "prompt" not in rates or "completion" not in rates:
        return None
    arch: dict[str, Any] = row["architecture"] if isinstance(row.get("architecture"), dict) else {}
    inputs = tuple(m for m in arch.get("input_modalities") or ("text",) if m in MODALITIES) or ("text",)
    outputs = tuple(m for m in arch.get("output_modalities") or ("text",) if m in MODALITIES)
    params = row.get("supported_parameters") or ()
    caps = {_PARAMS[p] for p in params if isinstance(p, str) and p in _PARAMS}
    caps |= {_INPUT_CAPS[m] for m in inputs if m in _INPUT_CAPS}
    top: dict[str, Any] = row["top_provider"] if isinstance(row.get("top_provider"), dict) else {}
    name = row.get("name")
    description = row.get("description")
    return Quote(
        id=model_id,
        name=name if isinstance(name, str) and name else model_id,
        created=_int(row.get("created")) or 0,
        description=description[:1000] if isinstance(description, str) else "",
        context_length=_int(row.get("context_length")) or _int(top.get("context_length")),
        max_output_tokens=_int(top.get("max_completion_tokens")),
        rates=rates,
        input_modalities=inputs,
        output_modalities=outputs,
        capabilities=frozenset(caps),
    )


def parse_prices(raw: bytes, where: str) -> dict[str, Quote]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise SourceError(f"price source {where}: not JSON") from None
    rows = body.get("data") if isinstance(body, dict) else None
    if not isinstance(rows, list):
        raise SourceError(f"price source {where}: no 'data' list (an OpenRouter-format models document)")
    quotes = (_quote(r) for r in rows if isinstance(r, dict))
    return {q.id: q for q in quotes if q is not None}


async def load_prices(client: httpx.AsyncClient, source: str) -> dict[str, Quote]:
    """The price source by URL (`https://…`) or file path."""
    if source.startswith(("https://", "http://")):
        try:
            response = await client.get(source)
        except httpx.HTTPError as exc:
            raise SourceError(f"price source {source}: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise SourceError(f"price source {source}: HTTP {response.status_code}")
        return parse_prices(response.content, source)
    try:
        raw = await asyncio.to_thread(Path(source).read_bytes)
    except OSError as exc:
        raise SourceError(f"price source {source}: {exc.strerror}") from None
    return parse_prices(raw, source)
