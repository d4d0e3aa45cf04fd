"""What one process needs to serve requests, built once, lazily, from its settings.

Nothing here runs at import time: the first request (or `gatewayz serve`) builds the runtime, and
a warm Lambda instance keeps it, with its pooled upstream client, for the next invocation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.catalog import Catalog, build_catalog
from shared.config import Settings
from shared.health import HealthBook
from shared.providers import ProviderEndpoint, resolve_providers
from shared.routing import Router
from shared.upstream import UpstreamClient


@dataclass
class Runtime:
    settings: Settings
    catalog: Catalog
    endpoints: Mapping[str, ProviderEndpoint]
    health: HealthBook
    router: Router
    http: UpstreamClient
    # Per-process caches of derived, static data (e.g. the rendered /v1/models list).
    cache: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        catalog = build_catalog(settings.catalog_file)
        endpoints = resolve_providers(settings)
        health = HealthBook()
        return cls(
            settings=settings,
            catalog=catalog,
            endpoints=endpoints,
            health=health,
            router=Router(catalog, endpoints, health),
            http=UpstreamClient(settings.timeouts),
        )

    async def close(self) -> None:
        await self.http.close()
