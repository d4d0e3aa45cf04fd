"""The catalog-sync overlay in the database, and how every instance picks it up.

A sync run stores one row in `catalog_syncs`: the overlay it computed (a catalog file: models added
or re-priced, models removed) and its report. An instance serves bundled catalog + operator file +
the newest overlay. It cannot be told when another process synced (the CLI, the scheduled
function, another instance), so it looks: at most every `GATEWAYZ_CATALOG_REFRESH_SECONDS` one
indexed read of the newest id, and a rebuild only when that id changed. The first request due
does the read; requests arriving meanwhile keep the catalog they have.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from shared.catalog import Catalog, CatalogFile, base_catalog_file, overlaid, parse_catalog_file
from shared.store import Database, Step, now_text

if TYPE_CHECKING:
    from shared.runtime import Runtime

log = logging.getLogger("gatewayz.catalog")
KEEP_RUNS = 50  # sync runs kept for the diff history; older rows are deleted by the next run


async def latest_id(db: Database) -> str | None:
    row = await db.fetch_one("SELECT id FROM catalog_syncs ORDER BY created_at DESC, id DESC LIMIT 1")
    return str(row["id"]) if row else None


async def latest(db: Database) -> tuple[str, CatalogFile, dict[str, Any]] | None:
    """The newest run: its id, overlay and report."""
    row = await db.fetch_one(
        "SELECT id, overlay, report FROM catalog_syncs ORDER BY created_at DESC, id DESC LIMIT 1"
    )
    if row is None:
        return None
    overlay = parse_catalog_file(row["overlay"], f"catalog sync {row['id']}")
    return str(row["id"]), overlay, orjson.loads(row["report"])


async def store(db: Database, sync_id: str, overlay: CatalogFile, report: dict[str, Any]) -> None:
    text = overlay.model_dump_json(exclude_defaults=True)
    await db.transaction(
        [
            (
                "INSERT INTO catalog_syncs (id, created_at, overlay, report) VALUES (:id, :at, :overlay, :report)",
                {"id": sync_id, "at": now_text(), "overlay": text, "report": orjson.dumps(report).decode()},
            ),
            (
                "DELETE FROM catalog_syncs WHERE id NOT IN "
                "(SELECT id FROM catalog_syncs ORDER BY created_at DESC, id DESC LIMIT :keep)",
                {"keep": KEEP_RUNS},
            ),
        ]
    )


async def pinned(db: Database) -> set[str]:
    return {str(r["model_id"]) for r in await db.fetch("SELECT model_id FROM catalog_pins")}


async def set_pin(db: Database, model_id: str, pin: bool, actor: str, also: Sequence[Step] = ()) -> None:
    """Pin or unpin a model's prices, with `also` (the audit entry) in the same transaction."""
    if pin:
        step: Step = (
            "INSERT INTO catalog_pins (model_id, pinned_by, pinned_at) VALUES (:m, :a, :t) "
            "ON CONFLICT (model_id) DO NOTHING",
            {"m": model_id, "a": actor, "t": now_text()},
        )
    else:
        step = ("DELETE FROM catalog_pins WHERE model_id = :m", {"m": model_id})
    await db.transaction([step, *also])


async def refresh(rt: Runtime) -> None:
    """Serve the newest overlay if another process stored one since this instance last looked.
    Never fails a request: on an error the instance keeps its catalog and looks again later."""
    rt.catalog_check_at = time.monotonic() + rt.settings.catalog_refresh
    try:
        newest = await latest_id(rt.db)
        if newest == rt.catalog_version:
            return
        found = await latest(rt.db)
        if found is None:
            return
        sync_id, overlay, _ = found
        # The operator's file is read off the loop; the catalog is built from it and the overlay.
        base = await asyncio.to_thread(base_catalog_file, rt.settings.catalog_file)
        merged = overlaid(base, overlay)
        catalog = Catalog(list(merged.models), merged.aliases, merged.removed)
    except Exception:
        # A database outage (the request itself will meet it and answer 503), or a schema not yet
        # migrated: serving the catalog already built is right either way.
        log.warning("catalog overlay not refreshed; keeping the current catalog", exc_info=True)
        return
    rt.catalog = catalog
    rt.router.catalog = catalog
    rt.cache.pop("model_views", None)  # rendered /v1/models entries of the old catalog
    rt.catalog_version = sync_id


async def last_diff(rt: Runtime) -> dict[str, Any]:
    """The admin diff: the last stored sync's report, and the models pinned now."""
    found = await latest(rt.db)
    pins = sorted(await pinned(rt.db) | {m.id for m in rt.catalog.models.values() if m.pinned})
    if found is None:
        return {"id": None, "pinned": pins}
    return {**found[2], "pinned": pins}
