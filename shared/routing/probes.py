"""Active health (SPEC §8, issue 15): scheduled probes, their history, and incidents.

A probe run sends one tiny request (one token of output) to each probed offer through the same
call path as traffic — so its result lands in the shared breakers like any other call, and a
probe is the half-open trial an idle offer would otherwise never get. Probed offers: those named
in `GATEWAYZ_PROBE_MODELS` (`model` ids: every configured offer of each), tiered — the first
`GATEWAYZ_PROBE_HOT` models every run, the rest on every `GATEWAYZ_PROBE_COLD_EVERY`-th run (by
the run's minute) — at most `GATEWAYZ_PROBE_MAX` offers a run, `_CONCURRENCY` at a time. Nothing is
probed when no model is named: probes cost money, the operator chooses which.

Each result is a `provider_health` row (kept 7 days). After the run, incidents are reconciled with
the breakers: one is opened for a breaker open longer than `GATEWAYZ_INCIDENT_AFTER` seconds, and
resolved when that breaker is closed again.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.errors import GatewayError
from shared.hot.breaker import CLOSED
from shared.pipeline.call import Call, complete
from shared.pipeline.request import check_chat, upstream_body
from shared.routing.context import RequestContext
from shared.routing.plan import Candidate
from shared.runtime import Runtime
from shared.store import now_text

_CONCURRENCY = 4
_HISTORY = timedelta(days=7)
PROBE_BODY = {"messages": [{"role": "user", "content": "ping"}], "max_tokens": 1, "temperature": 0}


def _setting(rt: Runtime, name: str, default: int) -> int:
    raw = rt.settings.env.get(name)
    return int(raw) if raw and raw.isdigit() else default


def probe_targets(rt: Runtime, minute: int) -> list[Candidate]:
    names = [m.strip() for m in rt.settings.env.get("GATEWAYZ_PROBE_MODELS", "").split(",") if m.strip()]
    hot = _setting(rt, "GATEWAYZ_PROBE_HOT", 5)
    cold_every = max(1, _setting(rt, "GATEWAYZ_PROBE_COLD_EVERY", 6))
    chosen = names[:hot] + (names[hot:] if minute % cold_every == 0 else [])
    out: list[Candidate] = []
    for name in chosen:
        model = rt.catalog.resolve(name)
        if model is None:
            continue
        for offer in rt.catalog.offers[model.id]:
            endpoint = rt.endpoints.get(offer.provider_id)
            if endpoint is not None and endpoint.configured:
                out.append(Candidate(offer, endpoint))
    return out[: _setting(rt, "GATEWAYZ_PROBE_MAX", 50)]


async def _probe(rt: Runtime, candidate: Candidate, gate: asyncio.Semaphore) -> dict[str, Any]:
    async with gate:
        body = {**PROBE_BODY, "model": candidate.model_id}
        call = Call(upstream_body(body), check_chat(body, rt.settings.limits.max_n))
        ctx = RequestContext(f"probe_{secrets.token_hex(8)}")
        try:
            await complete(rt, call, [candidate], ctx)
            ok = True
        except GatewayError:
            ok = False
        last = ctx.attempts[-1] if ctx.attempts else None
        return {
            "provider": candidate.provider_id,
            "model": candidate.model_id,
            "ok": ok,
            "status": last.status if last else "none",
            "latency_ms": last.ms if last else 0,
        }


async def run_probes(rt: Runtime, now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    await rt.health.refresh(force=True)
    targets = probe_targets(rt, now.minute)
    gate = asyncio.Semaphore(_CONCURRENCY)
    results = await asyncio.gather(*(_probe(rt, c, gate) for c in targets))
    stamp = now_text(now)
    for r in results:
        await rt.db.fetch(
            "INSERT INTO provider_health (id, provider, model, ok, latency_ms, status, checked_at) "
            "VALUES (:id, :provider, :model, :ok, :latency_ms, :status, :now)",
            {"id": secrets.token_hex(12), **r, "now": stamp},
        )
    await rt.db.fetch(
        "DELETE FROM provider_health WHERE checked_at < :cutoff RETURNING id",
        {"cutoff": now_text(now - _HISTORY)},
    )
    incidents = await reconcile_incidents(rt, datetime.now(UTC))  # after the probes
    return {"probed": len(results), "failed": sum(1 for r in results if not r["ok"]), **incidents}


async def reconcile_incidents(rt: Runtime, now: datetime) -> dict[str, int]:
    """Open an incident per breaker open for long enough; resolve those whose breaker closed."""
    await rt.health.refresh(force=True)
    after_ms = _setting(rt, "GATEWAYZ_INCIDENT_AFTER", 300) * 1000
    now_ms = now.timestamp() * 1000
    open_keys = {
        (f"o:{b['provider']}|{b['model']}" if b["scope"] == "offer" else f"p:{b['provider']}"): b
        for b in rt.health.breakers()
        if b["state"] in ("open", "half-open")
    }
    rows = await rt.db.fetch("SELECT id, scope_key FROM incidents WHERE resolved_at IS NULL")
    known = {r["scope_key"]: r["id"] for r in rows}
    opened = resolved = 0
    for key, b in open_keys.items():
        since = b["open_since_ms"]
        if key in known or not isinstance(since, int) or now_ms - since < after_ms:
            continue
        inserted = await rt.db.fetch(
            "INSERT INTO incidents (id, scope_key, provider, model, started_at) "
            "VALUES (:id, :key, :provider, :model, :started) ON CONFLICT DO NOTHING RETURNING id",
            {
                "id": f"inc_{secrets.token_hex(8)}",
                "key": key,
                "provider": b["provider"],
                "model": b["model"],
                "started": now_text(datetime.fromtimestamp(since / 1000, UTC)),
            },
        )
        opened += len(inserted)  # another instance's run may have opened it meanwhile
    for key, incident_id in known.items():
        provider, _, model = key[2:].partition("|")
        state = (
            rt.health.state(provider, model) if key.startswith("o:") else rt.health.provider_state(provider)
        )
        if key not in open_keys and state == CLOSED:
            await rt.db.fetch(
                "UPDATE incidents SET resolved_at = :now WHERE id = :id RETURNING id",
                {"id": incident_id, "now": now_text(now)},
            )
            resolved += 1
    return {"incidents_opened": opened, "incidents_resolved": resolved}


async def status_history(rt: Runtime, now: datetime | None = None) -> dict[str, Any]:
    """Uptime per provider over 24 h and 7 d (probe results), and incidents of the last 7 days."""
    now = now or datetime.now(UTC)
    rows = await rt.db.fetch(
        "SELECT provider, ok, latency_ms, checked_at FROM provider_health WHERE checked_at >= :since "
        "ORDER BY checked_at",
        {"since": now_text(now - _HISTORY)},
    )
    day = now_text(now - timedelta(days=1))
    uptime: dict[str, dict[str, Any]] = {}
    for r in rows:
        u = uptime.setdefault(r["provider"], {"d1": [0, 0], "d7": [0, 0], "latency": []})
        for span in ("d7", "d1") if str(r["checked_at"]) >= day else ("d7",):
            u[span][0] += 1 if r["ok"] else 0
            u[span][1] += 1
        u["latency"].append(int(r["latency_ms"]))
    incidents = await rt.db.fetch(
        "SELECT id, provider, model, started_at, resolved_at FROM incidents "
        "WHERE resolved_at IS NULL OR started_at >= :since ORDER BY started_at DESC LIMIT 100",
        {"since": now_text(now - _HISTORY)},
    )
    return {
        "uptime": {
            p: {
                "24h": round(u["d1"][0] / u["d1"][1], 4) if u["d1"][1] else None,
                "7d": round(u["d7"][0] / u["d7"][1], 4) if u["d7"][1] else None,
                "latency_ms": u["latency"][-24:],  # the sparkline: the latest probes
            }
            for p, u in sorted(uptime.items())
        },
        "incidents": [
            {**i, "status": "resolved" if i["resolved_at"] else "ongoing", "model": i["model"]}
            for i in incidents
        ],
    }
