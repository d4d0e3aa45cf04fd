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

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request

from shared.app import function_app, runtime_of
from shared.auth import require_cron
from shared.openapi import documented
from shared.runtime import Runtime, scheduled

router = APIRouter()


@router.get("/internal/jobs/reap-holds")
@documented(
    "Expire unsettled credit holds (Vercel cron; Bearer $CRON_SECRET)",
    response="accounts.ReapResult",
    errors=(401,),
    tag="jobs",
)
async def reap_route(request: Request) -> dict[str, Any]:
    require_cron(request)
    return await reap(runtime_of(request))


@router.get("/internal/jobs/billing")
@documented(
    "Billing jobs: downgrade lapsed subscriptions (Vercel cron; Bearer $CRON_SECRET)",
    response="billing.JobResult",
    errors=(401,),
    tag="jobs",
)
async def billing_route(request: Request) -> dict[str, Any]:
    require_cron(request)
    return await run_billing_jobs(runtime_of(request))


@router.get("/internal/jobs/purge-history")
@documented(
    "Delete chat history past each user's retention (Vercel cron; Bearer $CRON_SECRET)",
    response="history.PurgeResult",
    errors=(401,),
    tag="jobs",
)
async def purge_history_route(request: Request) -> dict[str, Any]:
    require_cron(request)
    return await purge_history_job(runtime_of(request))


async def purge_history_job(rt: Runtime) -> dict[str, int]:
    return {"deleted_sessions": await rt.history.purge()}


def purge_history(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """EventBridge entry of the daily chat history purge."""
    return scheduled(purge_history_job)


async def run_billing_jobs(rt: Runtime) -> dict[str, int]:
    from shared.payments.promotions import expire_trials
    from shared.payments.subscriptions import downgrade_lapsed

    return {"downgraded": await downgrade_lapsed(rt), "expired_trials": await expire_trials(rt)}


def billing_jobs(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """EventBridge entry of the hourly billing jobs."""
    return scheduled(run_billing_jobs)


async def reap(rt: Runtime) -> dict[str, int]:
    return {"expired_holds": await rt.ledger.reap(), "expired_responses": await rt.responses.purge()}


def reap_holds(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """EventBridge entry: a fresh runtime per run (the loop of each invocation is its own)."""
    return scheduled(reap)


@router.get("/internal/jobs/catalog-sync")
@documented(
    "Catalog sync: providers' model lists and the price source into the catalog overlay "
    "(Vercel cron; Bearer $CRON_SECRET)",
    response="catalog.CatalogSyncReport",
    errors=(401,),
    tag="jobs",
)
async def catalog_sync_route(request: Request) -> dict[str, Any]:
    require_cron(request)
    return await run_catalog_sync(runtime_of(request))


async def run_catalog_sync(rt: Runtime) -> dict[str, Any]:
    from shared.catalog.sync import run_sync

    return await run_sync(rt)


def catalog_sync(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """EventBridge entry of the scheduled catalog sync."""
    return scheduled(run_catalog_sync)


# --- usage rollups and raw-record retention (shared.analytics.rollup) ---------------------------


@router.get("/internal/jobs/rollup")
@documented(
    "Roll up usage by day; prune raw request records past GATEWAYZ_REQUEST_RETENTION_DAYS (Vercel cron; Bearer $CRON_SECRET)",
    response="analytics.RollupResult",
    errors=(401,),
    tag="jobs",
)
async def rollup_route(request: Request) -> dict[str, Any]:
    require_cron(request)
    return await run_rollup(runtime_of(request))


async def run_rollup(rt: Runtime) -> dict[str, object]:
    from shared.analytics.rollup import rollup_job

    return await rollup_job(rt.db, rt.settings.request_retention_days)


def rollup_usage(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """EventBridge entry of the hourly usage rollup and raw-record retention."""
    return scheduled(run_rollup)


@router.get("/internal/jobs/prune-holds")
@documented(
    "Delete closed credit holds past GATEWAYZ_HOLD_RETENTION_DAYS, in bounded batches "
    "(Vercel cron; Bearer $CRON_SECRET)",
    response="accounts.PruneResult",
    errors=(401,),
    tag="jobs",
)
async def prune_route(request: Request) -> dict[str, Any]:
    require_cron(request)
    return await prune(runtime_of(request))


async def prune(rt: Runtime) -> dict[str, Any]:
    from shared.billing.retention import prune_closed_holds

    retention = timedelta(days=rt.settings.hold_retention_days)
    return (await prune_closed_holds(rt.db, retention)).to_json()


def prune_holds(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """EventBridge entry of the closed-hold pruner."""
    return scheduled(prune)


app = function_app([router], title="Gatewayz jobs")
