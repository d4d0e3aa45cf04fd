"""What one process needs to serve requests, built once, lazily, from its settings.

Nothing here runs at import time: the first request (or `gatewayz serve`) builds the runtime, and
a warm Lambda instance keeps it, with its pooled upstream client and database pool, for the next
invocation. Database and hot-state connections themselves open on first use.
"""

from __future__ import annotations

import asyncio
import gc
import os
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from shared.accounts.keys import KeyCache
from shared.accounts.service import Accounts
from shared.billing.ledger import Ledger
from shared.billing.spares import Spares
from shared.catalog import Catalog, build_catalog
from shared.config import ConfigError, Settings
from shared.history.store import HistoryStore
from shared.hot import HotStore, open_hot_store
from shared.limits.limiter import Limiter
from shared.providers import ProviderEndpoint, resolve_providers
from shared.routing.health import HealthBook, breaker_config
from shared.routing.plan import Router
from shared.store import Database, open_database
from shared.store.responses import ResponseStore
from shared.store.sqlite import SQLiteDatabase, sqlite_path
from shared.transport.cloud_auth import CloudAuth
from shared.transport.proxies import ProxyConfig
from shared.transport.upstream import UpstreamClient, loop_mark


def key_secret(settings: Settings) -> str:
    """The HMAC secret of key hashes: configured, or (embedded default only) kept beside the
    SQLite file so that keys survive restarts. A shared database needs the same secret on every
    instance, so PostgreSQL requires it to be configured."""
    if settings.key_secret:
        return settings.key_secret
    url = settings.database_url
    if not url.startswith("sqlite:"):
        raise ConfigError("GATEWAYZ_KEY_SECRET is required with a PostgreSQL database (32+ characters)")
    db_path = sqlite_path(url)
    if db_path == ":memory:":
        return secrets.token_urlsafe(32)
    path = Path(db_path).parent / "key_secret"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret)
    return secret


@dataclass
class Runtime:
    settings: Settings
    catalog: Catalog
    endpoints: Mapping[str, ProviderEndpoint]
    health: HealthBook
    router: Router
    http: UpstreamClient
    db: Database
    hot: HotStore
    ledger: Ledger
    keys: KeyCache
    accounts: Accounts
    limiter: Limiter
    responses: ResponseStore  # stored responses of /v1/responses (store: true)
    history: HistoryStore  # chat history (opt-in sessions, share links)
    cloud: CloudAuth  # SigV4 signing (Bedrock) and service-account tokens (Vertex)
    spares: Spares  # spare holds written ahead for busy keys (shared.billing.spares)
    # Per-process caches of derived, static data (e.g. the rendered /v1/models list).
    cache: dict[str, Any] = field(default_factory=dict)
    inflight: int = 0  # requests admitted and not yet answered (kept by the app's middleware)
    # The catalog-sync overlay this process serves (its `catalog_syncs` id) and when to look for a
    # newer one (time.monotonic(); 0: on the first request). shared.catalog.overlay.refresh.
    catalog_version: str | None = None
    catalog_check_at: float = 0.0
    # Clients built on first use by optional parts (the Stripe client): closed with the runtime.
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        catalog = build_catalog(settings.catalog_file)
        endpoints = resolve_providers(settings)
        db = open_database(settings.database_url)
        hot = open_hot_store(
            settings.redis_url,
            settings.upstash_url,
            settings.upstash_token,
            fail_closed=settings.limits.fail_closed,
        )
        breaker, refresh_s = breaker_config(settings.env)
        health = HealthBook(hot, breaker, refresh_s)
        ledger = Ledger(db)
        secret = key_secret(settings)
        keys = KeyCache(db, hot, secret, settings.key_cache_ttl)
        http = UpstreamClient(settings.timeouts, ProxyConfig.from_env(settings.env), loop_mark(secret))
        runtime = cls(
            settings=settings,
            catalog=catalog,
            endpoints=endpoints,
            health=health,
            router=Router(catalog, endpoints, health),
            http=http,
            db=db,
            hot=hot,
            ledger=ledger,
            keys=keys,
            accounts=Accounts(db, keys, ledger),
            limiter=Limiter(hot, settings.limits),
            responses=ResponseStore(db, timedelta(days=settings.responses_retention_days)),
            cloud=CloudAuth(settings.env, http),
            history=HistoryStore(db, settings.encryption_keys, settings.history_retention_days),
            spares=Spares(ledger, settings.spare_hold_seconds),
        )
        if isinstance(db, SQLiteDatabase):
            # Group commit waits for company only when other requests may soon commit: those in
            # flight minus those waiting on their upstream (with slow upstreams, most of them —
            # waiting for them added the whole window to every transaction, ~4 ms a request).
            db.load = lambda: runtime.inflight - runtime.http.waiting()
        return runtime

    async def refresh_catalog(self) -> None:
        from shared.catalog.overlay import refresh

        await refresh(self)

    async def close(self) -> None:
        self.spares.closing()  # the settlements still landing write no spare...
        await self.ledger.drain()  # charges still landing, before their database goes
        await asyncio.sleep(0)  # (their callers note what they wrote)
        await self.spares.close()  # ...and the spares are dropped, while the database is there
        await self.responses.drain()  # stored responses still being written
        for close in self.closers:
            await close()
        await self.http.close()
        await self.limiter.spares.close()  # spare admissions given back, while the store is there
        await self.hot.close()
        await self.db.close()


def freeze_heap() -> None:
    """Exempt what start-up built (catalog, provider table, apps: long-lived by design) from the
    garbage collector's full collections. Each of them walked that whole heap and found nothing:
    measured ~50 ms with the event loop stopped, every few seconds under load — the gateway's
    p99 latency. Call once, when the process is ready to serve."""
    gc.collect()
    gc.freeze()


def scheduled(job: Callable[[Runtime], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """A scheduled function's run of `job` (EventBridge invokes the entry directly): a fresh
    runtime per run, since each invocation's event loop is its own, closed whatever the job does."""

    async def once() -> dict[str, Any]:
        rt = Runtime.build(Settings.from_env())
        try:
            return await job(rt)
        finally:
            await rt.close()

    return asyncio.run(once())
