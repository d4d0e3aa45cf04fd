-- Catalog sync (issue 15): each run of `gatewayz catalog sync` (or its scheduled function) that
-- changed something stores the overlay it computed (a catalog file: models added or re-priced,
-- models removed) and its report (the admin diff). Every instance serves the bundled catalog, the
-- operator's file and the newest overlay: it reads the newest id here every
-- GATEWAYZ_CATALOG_REFRESH_SECONDS and rebuilds its catalog when that id changed. Only the last
-- runs are kept (the sync deletes older rows). `catalog_pins`: models whose prices the operator
-- pinned through the admin API; a sync reports their upstream price changes without applying them.

CREATE TABLE IF NOT EXISTS catalog_syncs (
    id         TEXT PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL,
    overlay    TEXT NOT NULL,             -- JSON: {"models": [...], "removed": {id: reason}}
    report     TEXT NOT NULL              -- JSON: what changed, what was not applied and why
);
CREATE INDEX IF NOT EXISTS catalog_syncs_created ON catalog_syncs (created_at);

CREATE TABLE IF NOT EXISTS catalog_pins (
    model_id   TEXT PRIMARY KEY,
    pinned_by  TEXT NOT NULL,
    pinned_at  TIMESTAMPTZ NOT NULL
);

-- gatewayz:postgres-only begin
ALTER TABLE catalog_syncs ENABLE ROW LEVEL SECURITY;
ALTER TABLE catalog_pins ENABLE ROW LEVEL SECURITY;
-- gatewayz:postgres-only end
