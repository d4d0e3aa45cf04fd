"""Outbound proxies from the environment, for the upstream HTTP client.

`HTTPS_PROXY` carries https upstreams (through a CONNECT tunnel), `HTTP_PROXY` plain http ones
(absolute-form requests), and `NO_PROXY` names the hosts reached directly. The rules are urllib's
(`getproxies_environment`, `proxy_bypass_environment`), which requests and httpx follow too:
- a lower-case variable wins over its upper-case form, and a set but empty lower-case one unsets
  it; under CGI (`REQUEST_METHOD` set) upper-case `HTTP_PROXY` is ignored (a client's `Proxy:`
  header arrives there, CVE-2016-1000110);
- `NO_PROXY` is a comma-separated list of host names or suffixes (`example.com` and
  `.example.com` both cover `api.example.com`), each matched against the URL's host with and
  without its port (`localhost:8080` covers only that port); `*` alone bypasses every proxy.
  There is no CIDR matching, as in urllib.
A proxy URL is `http://[user:password@]host[:port]` (no scheme means http; user and password are
percent-decoded and sent as `Proxy-Authorization: Basic`). TLS to the proxy itself (`https://`)
and SOCKS are refused at start-up, naming the variable.

Read once with the settings; the client decides once per origin (`for_origin`), never per request.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from shared.config import ConfigError


@dataclass(frozen=True, slots=True)
class Proxy:
    host: str
    port: int
    authorization: str | None  # the Proxy-Authorization value, from the URL's user information
    url: str  # without the user information, for messages

    @classmethod
    def parse(cls, raw: str, variable: str) -> Proxy:
        text = raw.strip()
        if "://" not in text:
            text = "http://" + text
        try:
            parts = urlsplit(text)
            port = parts.port or 80
        except ValueError as exc:
            raise ConfigError(f"{variable} is not a valid proxy URL: {exc}") from None
        if parts.scheme != "http":
            raise ConfigError(
                f"{variable}: only http:// proxies are supported (CONNECT is used for https upstreams), "
                f"got {parts.scheme}://"
            )
        if not parts.hostname:
            raise ConfigError(f"{variable} is not a valid proxy URL: no host")
        authorization = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            authorization = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        host = parts.hostname
        shown = f"[{host}]" if ":" in host else host
        return cls(host, port, authorization, f"http://{shown}:{port}")


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    http: Proxy | None = None
    https: Proxy | None = None
    no_proxy: tuple[str, ...] = ()  # lower-case names without leading dots
    bypass_all: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ProxyConfig:
        found: dict[str, tuple[str, str]] = {}  # scheme → (variable, value)
        for name, value in env.items():  # first any case, then lower case over it (urllib's order)
            lower = name.lower()
            if value and lower in ("http_proxy", "https_proxy", "no_proxy"):
                found[lower] = (name, value)
        if "REQUEST_METHOD" in env and "http_proxy" in found and found["http_proxy"][0] != "http_proxy":
            del found["http_proxy"]
        for lower in ("http_proxy", "https_proxy", "no_proxy"):
            if lower in env:
                if env[lower]:
                    found[lower] = (lower, env[lower])
                else:
                    found.pop(lower, None)
        proxies = {k: Proxy.parse(v, name) for k, (name, v) in found.items() if k != "no_proxy"}
        raw_no = found.get("no_proxy", ("", ""))[1]
        names = tuple(n.strip().lstrip(".").lower() for n in raw_no.split(",") if n.strip())
        return cls(proxies.get("http_proxy"), proxies.get("https_proxy"), names, raw_no.strip() == "*")

    def __bool__(self) -> bool:
        return self.http is not None or self.https is not None

    def for_origin(self, scheme: str, host: str) -> Proxy | None:
        """The proxy for an origin, or None to connect directly. `host` is the URL's host as
        written, with its port when the URL has one (what NO_PROXY entries are matched against)."""
        proxy = self.https if scheme == "https" else self.http
        if proxy is None or self.bypass_all:
            return None
        host = host.lower()
        name_part, _, port = host.rpartition(":")
        hostonly = name_part if port.isascii() and port.isdigit() else host
        for name in self.no_proxy:
            if hostonly == name or host == name:
                return None
            if hostonly.endswith("." + name) or host.endswith("." + name):
                return None
        return proxy
