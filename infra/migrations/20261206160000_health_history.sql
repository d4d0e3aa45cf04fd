-- Health history (issue 15): the results of the scheduled probes, kept for 7 days (the probe job
-- deletes older rows), from which the status page computes uptime per provider and model; and
-- incidents, opened when an offer's or a provider's breaker has stayed open for a while
-- (GATEWAYZ_INCIDENT_AFTER) and resolved when it closes. `scope_key` is the breaker's key
-- (`o:provider|model` or `p:provider`); at most one unresolved incident per key.

CREATE TABLE IF NOT EXISTS provider_health (
    id         TEXT PRIMARY KEY,
    provider   TEXT NOT NULL,
    model      TEXT NOT NULL,
    ok         BOOLEAN NOT NULL,
    latency_ms INTEGER NOT NULL,
    status     TEXT NOT NULL,             -- 200, 503, timeout, ... as in x-gatewayz-attempts
    checked_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS provider_health_checked ON provider_health (checked_at);

CREATE TABLE IF NOT EXISTS incidents (
    id          TEXT PRIMARY KEY,
    scope_key   TEXT NOT NULL,
    provider    TEXT NOT NULL,
    model       TEXT,                     -- NULL: the whole provider
    started_at  TIMESTAMPTZ NOT NULL,     -- when the breaker opened
    resolved_at TIMESTAMPTZ
);
CREATE UNIQUE INDEX IF NOT EXISTS incidents_open ON incidents (scope_key) WHERE resolved_at IS NULL;
CREATE INDEX IF NOT EXISTS incidents_started ON incidents (started_at);

-- gatewayz:postgres-only begin
ALTER TABLE provider_health ENABLE ROW LEVEL SECURITY;
ALTER TABLE incidents ENABLE ROW LEVEL SECURITY;
-- gatewayz:postgres-only end
