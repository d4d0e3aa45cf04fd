"""Scheduled jobs (SPEC §1): the expired-hold reaper, which also deletes stored responses past
their retention (GATEWAYZ_RESPONSES_RETENTION_DAYS); the billing jobs; the catalog sync
(shared.catalog.sync); the usage rollup, which also prunes raw request records past their retention
(GATEWAYZ_REQUEST_RETENTION_DAYS); the closed-hold pruner (GATEWAYZ_HOLD_RETENTION_DAYS,
`shared.billing.retention`); and the chat history purge (sessions past their owner's retention,
GATEWAYZ_HISTORY_RETENTION_DAYS by default).

On Lambda an EventBridge schedule invokes `reap_holds(event, context)` directly. On Vercel a cron
calls `GET /internal/jobs/reap-holds` with `Authorization: Bearer $CRON_SECRET` (Vercel's own
convention); without that secret configured the route refuses every call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request

from shared.app import function_app, runtime_of
from shared.auth import require_cron
from shared.openapi import documented
from shared.runtime import Runtime, scheduled

router = APIRouter()
EventEntry = Callable[[dict[str, Any], Any], dict[str, Any]]


def job(path: str, summary: str, response: str, run: Callable[[Runtime], Awaitable[Any]]) -> EventEntry:
    """A scheduled job, both ways: the Vercel cron route at `path` (Bearer $CRON_SECRET) and the
    EventBridge entry it returns (a fresh runtime per run: each invocation's loop is its own)."""
    name = path.rsplit("/", 1)[1].replace("-", "_")

    async def route(request: Request) -> Any:
        require_cron(request)
        return await run(runtime_of(request))

    route.__name__ = f"{name}_route"  # the OpenAPI operation id, as when each job wrote its route
    router.get(path)(documented(summary, response=response, errors=(401,), tag="jobs")(route))

    def entry(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return scheduled(run)

    entry.__name__ = name
    return entry


async def reap(rt: Runtime) -> dict[str, int]:
    return {"expired_holds": await rt.ledger.reap(), "expired_responses": await rt.responses.purge()}


async def run_billing_jobs(rt: Runtime) -> dict[str, int]:
    from shared.payments.promotions import expire_trials
    from shared.payments.subscriptions import downgrade_lapsed

    return {"downgraded": await downgrade_lapsed(rt), "expired_trials": await expire_trials(rt)}


async def purge_history_job(rt: Runtime) -> dict[str, int]:
    return {"deleted_sessions": await rt.history.purge()}


async def run_catalog_sync(rt: Runtime) -> dict[str, Any]:
    from shared.catalog.sync import run_sync

    return await run_sync(rt)


async def run_rollup(rt: Runtime) -> dict[str, object]:
    from shared.analytics.rollup import rollup_job

    return await rollup_job(rt.db, rt.settings.request_retention_days)


async def prune(rt: Runtime) -> dict[str, Any]:
    from shared.billing.retention import prune_closed_holds

    retention = timedelta(days=rt.settings.hold_retention_days)
    return (await prune_closed_holds(rt.db, retention)).to_json()


# The jobs: each a cron route and the EventBridge entry that template.yaml names.
reap_holds = job(
    "/internal/jobs/reap-holds",
    "Expire unsettled credit holds (Vercel cron; Bearer $CRON_SECRET)",
    "accounts.ReapResult",
    reap,
)
billing_jobs = job(
    "/internal/jobs/billing",
    "Billing jobs: downgrade lapsed subscriptions (Vercel cron; Bearer $CRON_SECRET)",
    "billing.JobResult",
    run_billing_jobs,
)
purge_history = job(
    "/internal/jobs/purge-history",
    "Delete chat history past each user's retention (Vercel cron; Bearer $CRON_SECRET)",
    "history.PurgeResult",
    purge_history_job,
)
catalog_sync = job(
    "/internal/jobs/catalog-sync",
    "Catalog sync: providers' model lists and the price source into the catalog overlay "
    "(Vercel cron; Bearer $CRON_SECRET)",
    "catalog.CatalogSyncReport",
    run_catalog_sync,
)
rollup_usage = job(
    "/internal/jobs/rollup",
    "Roll up usage by day; prune raw request records past GATEWAYZ_REQUEST_RETENTION_DAYS (Vercel cron; Bearer $CRON_SECRET)",
    "analytics.RollupResult",
    run_rollup,
)
prune_holds = job(
    "/internal/jobs/prune-holds",
    "Delete closed credit holds past GATEWAYZ_HOLD_RETENTION_DAYS, in bounded batches "
    "(Vercel cron; Bearer $CRON_SECRET)",
    "accounts.PruneResult",
    prune,
)

app = function_app([router], title="Gatewayz jobs")
