"""The provider table: every upstream is a data row in `providers.toml` (STYLE §1).

A row says where to send (base URL, auth style, static headers), which wire format to speak
(dialect) and what differs (supported features, parameter quirks). Adding an OpenAI-compatible
provider is one row, no code. `resolve_providers` binds the rows to this process's configuration
(`<ID>_API_KEY`, `<ID>_BASE_URL`, URL template variables) once.

A row without a `base_url` (`local`: a self-hosted server) is reachable only at the URL the
operator sets in `<ID>_BASE_URL`; until then it is not configured — there is no placeholder to
fall back to. Only rows whose table URL fixes a vendor's public host take a user's own key
(`takes_byok`): a URL that comes from the operator could point anywhere, the gateway's own network
included, and a user's key must never make the gateway call it.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any

from shared.config import Settings, env_name
from shared.providers.quirks import Quirks

DIALECTS = frozenset({"openai", "anthropic", "anthropic-vertex", "gemini", "bedrock"})
AUTH_STYLES = frozenset({"bearer", "x-api-key", "x-goog-api-key", "none", "aws-sigv4", "google-oauth"})
# What a provider's API can do beyond plain chat; the router and translators consult these.
FEATURES = frozenset(
    {
        "n",  # several choices in one call
        "logprobs",
        "stream_usage",  # honours stream_options.include_usage
        "developer_role",
        "reasoning_effort",
        "service_tier",
        "completions",  # legacy /completions endpoint
        "top_k",  # takes top_k (not an OpenAI parameter; Anthropic, Gemini and most open-model hosts)
        "responses",  # serves OpenAI's Responses API (POST /responses): Responses callers pass through
    }
)
_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_TEMPLATE_VAR = re.compile(r"\{([a-z_]+)\}")
_KEY_AUTH = ("bearer", "x-api-key", "x-goog-api-key")  # styles that send a plain API key


@dataclass(frozen=True, slots=True)
class Provider:
    id: str
    name: str
    dialect: str
    base_url: str  # "" when only the operator's <ID>_BASE_URL says where the provider is
    auth: str  # one of AUTH_STYLES, or "header:<name>" for a vendor-specific key header
    site_url: str
    docs: str
    color: str
    priority: str
    keyless: bool
    headers: Mapping[str, str]  # static headers sent on every call
    env_headers: Mapping[str, str]  # header name → environment variable that holds its value
    url_params: Mapping[str, str]  # {var} in base_url → environment variable (default after '=')
    supports: frozenset[str]
    quirks: Quirks

    @property
    def env_key(self) -> str:
        return env_name(self.id, "API_KEY")

    @property
    def env_base_url(self) -> str:
        return env_name(self.id, "BASE_URL")

    @property
    def takes_byok(self) -> bool:
        """Whether a user may bring their own key for this provider: it authenticates with a plain
        API key, and the table fixes the public https host the key goes to (no URL that only the
        operator supplies, no host filled from a template)."""
        host = self.base_url.removeprefix("https://").partition("/")[0]
        return (
            not self.keyless
            and (self.auth in _KEY_AUTH or self.auth.startswith("header:"))
            and self.base_url.startswith("https://")
            and bool(host)
            and not _TEMPLATE_VAR.search(host)
        )


@dataclass(frozen=True, slots=True)
class ProviderEndpoint:
    """A provider row bound to this process's configuration."""

    provider: Provider
    base_url: str
    headers: Mapping[str, str]  # auth + static + env headers, ready to send
    api_key: str | None
    configured: bool
    reason: str  # why it is not configured ("" when it is)
    missing_key: bool = False  # only the API key is missing: a user's own key (BYOK) would do
    # The row's URL variables as configured ({"region": "us-east-1"}): SigV4 signs for the region.
    params: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


def _parse_row(raw: Mapping[str, Any]) -> Provider:
    where = f"provider {raw.get('id', '?')!r}"
    allowed = {
        "id",
        "name",
        "dialect",
        "base_url",
        "auth",
        "site_url",
        "docs",
        "color",
        "priority",
        "keyless",
        "headers",
        "env_headers",
        "url_params",
        "supports",
        "quirks",
    }
    unknown = set(raw) - allowed
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}")
    for required in ("id", "name", "dialect", "auth", "site_url", "docs"):
        if not isinstance(raw.get(required), str) or not raw[required]:
            raise ValueError(f"{where}: '{required}' is required")
    base_url = raw.get("base_url", "")
    if not isinstance(base_url, str) or ("base_url" in raw and not base_url):
        raise ValueError(f"{where}: base_url must be a URL (leave it out when only the operator knows it)")
    if not _ID.match(raw["id"]):
        raise ValueError(f"{where}: id must be lower-case letters, digits and '-'")
    if raw["dialect"] not in DIALECTS:
        raise ValueError(f"{where}: dialect must be one of {sorted(DIALECTS)}")
    auth = raw["auth"]
    if auth not in AUTH_STYLES and not (auth.startswith("header:") and len(auth) > 7):
        raise ValueError(f"{where}: auth {auth!r} is not a known style")
    supports = frozenset(raw.get("supports", ()))
    if supports - FEATURES:
        raise ValueError(f"{where}: unknown feature(s) {sorted(supports - FEATURES)}")
    url_params = dict(raw.get("url_params", {}))
    missing = set(_TEMPLATE_VAR.findall(base_url)) - set(url_params)
    if missing:
        raise ValueError(f"{where}: base_url variable(s) {sorted(missing)} have no url_params entry")
    if base_url and not base_url.startswith(("https://", "http://")):
        raise ValueError(f"{where}: base_url must be an http(s) URL")
    return Provider(
        id=raw["id"],
        name=raw["name"],
        dialect=raw["dialect"],
        base_url=base_url.rstrip("/"),
        auth=auth,
        site_url=raw["site_url"],
        docs=raw["docs"],
        color=raw.get("color", "bg-slate-500"),
        priority=raw.get("priority", "slow"),
        keyless=bool(raw.get("keyless", False)),
        headers=MappingProxyType(dict(raw.get("headers", {}))),
        env_headers=MappingProxyType(dict(raw.get("env_headers", {}))),
        url_params=MappingProxyType(url_params),
        supports=supports,
        quirks=Quirks.parse(raw.get("quirks"), where),
    )


def parse_providers(text: str) -> dict[str, Provider]:
    rows = tomllib.loads(text).get("provider", [])
    table: dict[str, Provider] = {}
    for raw in rows:
        row = _parse_row(raw)
        if row.id in table:
            raise ValueError(f"provider {row.id!r} appears twice")
        table[row.id] = row
    return table


@cache
def load_providers() -> Mapping[str, Provider]:
    """The bundled table, parsed and validated once per process."""
    text = resources.files("shared.providers").joinpath("providers.toml").read_text("utf-8")
    return MappingProxyType(parse_providers(text))


def _auth_headers(style: str, key: str) -> dict[str, str]:
    # A Bedrock API key replaces SigV4 with a bearer token
    # (https://docs.aws.amazon.com/bedrock/latest/userguide/api-keys-use.html).
    if style in ("bearer", "google-oauth", "aws-sigv4"):
        return {"authorization": f"Bearer {key}"}
    if style == "x-api-key":
        return {"x-api-key": key}
    if style == "x-goog-api-key":
        return {"x-goog-api-key": key}
    if style.startswith("header:"):
        return {style[7:]: key}
    return {}


def _cloud_credentials(provider: Provider, settings: Settings) -> bool:
    """Whether a row that signs its requests (SigV4) or mints tokens (Google OAuth) has what it
    needs in the environment; the signers themselves load lazily (shared.transport)."""
    if provider.auth == "aws-sigv4":
        from shared.transport.aws_sigv4 import has_aws_credentials

        return has_aws_credentials(settings.env)
    if provider.auth == "google-oauth":
        from shared.transport.google_oauth import has_google_credentials

        return has_google_credentials(settings.env)
    return False


_CLOUD_HINT = {
    "aws-sigv4": "no AWS credentials (AWS_ACCESS_KEY_ID, AWS_PROFILE, a container or web-identity role)",
    "google-oauth": "no service account (GOOGLE_VERTEX_CREDENTIALS or GOOGLE_APPLICATION_CREDENTIALS)",
}


def bind(provider: Provider, settings: Settings, key: str | None = None) -> ProviderEndpoint:
    """The row with this process's URL and credentials — or with `key`, a user's own (BYOK)."""
    key = key or settings.provider_value(provider.id, "API_KEY")
    override = settings.provider_value(provider.id, "BASE_URL")
    reason = ""
    base_url = provider.base_url
    params: dict[str, str] = {}
    for var, spec in provider.url_params.items():
        env_var, _, default = spec.partition("=")
        filled = settings.env.get(env_var) or default
        if filled:
            params[var] = filled
        elif not override and not reason and base_url:
            reason = f"{env_var} is not set"
    if override:
        base_url = override.rstrip("/")
    elif not base_url:
        reason = f"{provider.env_base_url} is not set (the URL of the operator's own server)"
    elif not reason:
        for var, filled in params.items():
            base_url = base_url.replace("{" + var + "}", filled)
    # A provider is usable with credentials, when it needs none, or when the operator pointed it at
    # a self-hosted server by base URL (vLLM, Ollama and llama.cpp usually take no key). A cloud
    # row (SigV4, Google OAuth) is usable with its cloud's credentials, whatever its URL.
    cloud = provider.auth in _CLOUD_HINT
    has_cloud = cloud and _cloud_credentials(provider, settings)
    missing_key = False
    if not reason and cloud and not (key or has_cloud):
        reason = f"{_CLOUD_HINT[provider.auth]} and {provider.env_key} is not set"
    elif not reason and not (key or provider.keyless or override or has_cloud):
        reason = f"{provider.env_key} is not set"
        missing_key = provider.takes_byok
    headers = dict(provider.headers)
    if key:
        headers.update(_auth_headers(provider.auth, key))
    for header, env_var in provider.env_headers.items():
        header_value = settings.env.get(env_var)
        if header_value:
            headers[header] = header_value
    return ProviderEndpoint(
        provider=provider,
        base_url=base_url,
        headers=MappingProxyType(headers),
        api_key=key,
        configured=not reason,
        reason=reason,
        missing_key=missing_key,
        params=MappingProxyType(params),
    )


def resolve_providers(settings: Settings) -> dict[str, ProviderEndpoint]:
    return {pid: bind(p, settings) for pid, p in load_providers().items()}
