-- Usage analytics (issue 18): daily rollups of request_records, and what the rollup job has done.
--
-- usage_daily holds one row per UTC day x user x key x model x provider: counts, tokens, exact cost
-- (picodollars) and a latency histogram with fixed buckets (shared.analytics.buckets), so that a
-- month's summary reads at most 31 rows per series and its percentiles come from the rollup. The
-- rollup job (shared.analytics.rollup) replaces whole days from the raw records, so re-running it
-- never double-counts. `key_id` and `provider` are '' (not NULL) when the record had none: they
-- are part of the primary key.
--
-- usage_rollup_state.rolled_through is the first UTC day NOT yet rolled up: summaries read the
-- rollups before it and the raw records from it on, and retention deletes raw records only before
-- it (never the ledger: credit_transactions are kept for good). pruned_before: the days before it
-- are never rolled up again (their raw records may be gone; their rollups are what is left).
--
-- request_records_created serves the job's per-day scans over every user and the retention's
-- oldest-first batches (the user index leads with user_id). Its cost on the hot path is one more
-- index entry per settled request: about 3-12 µs per insert on PostgreSQL, inside the noise
-- (bench/request_records_index.py; bench/README.md has the figures).

CREATE TABLE IF NOT EXISTS usage_daily (
    day                TEXT NOT NULL,             -- YYYY-MM-DD (UTC)
    user_id            TEXT NOT NULL,
    key_id             TEXT NOT NULL DEFAULT '',
    model              TEXT NOT NULL,
    provider           TEXT NOT NULL DEFAULT '',
    requests           BIGINT NOT NULL DEFAULT 0,
    errors             BIGINT NOT NULL DEFAULT 0,
    input_tokens       BIGINT NOT NULL DEFAULT 0,
    cache_read_tokens  BIGINT NOT NULL DEFAULT 0,
    cache_write_tokens BIGINT NOT NULL DEFAULT 0,
    output_tokens      BIGINT NOT NULL DEFAULT 0,
    reasoning_tokens   BIGINT NOT NULL DEFAULT 0,
    cost_pico          BIGINT NOT NULL DEFAULT 0,
    latency_max_ms     BIGINT NOT NULL DEFAULT 0,
    lat_le_100         BIGINT NOT NULL DEFAULT 0, -- requests with latency_ms <= 100
    lat_le_250         BIGINT NOT NULL DEFAULT 0,
    lat_le_500         BIGINT NOT NULL DEFAULT 0,
    lat_le_1000        BIGINT NOT NULL DEFAULT 0,
    lat_le_2500        BIGINT NOT NULL DEFAULT 0,
    lat_le_5000        BIGINT NOT NULL DEFAULT 0,
    lat_le_10000       BIGINT NOT NULL DEFAULT 0,
    lat_le_30000       BIGINT NOT NULL DEFAULT 0,
    lat_le_60000       BIGINT NOT NULL DEFAULT 0,
    lat_over           BIGINT NOT NULL DEFAULT 0, -- latency_ms > 60000
    PRIMARY KEY (day, user_id, key_id, model, provider)
);
CREATE INDEX IF NOT EXISTS usage_daily_user ON usage_daily (user_id, day);

CREATE TABLE IF NOT EXISTS usage_rollup_state (
    name           TEXT PRIMARY KEY,               -- 'daily'
    rolled_through TEXT NOT NULL,                  -- first UTC day (YYYY-MM-DD) not rolled up
    pruned_before  TEXT,                           -- days before it may have lost raw records
    updated_at     TIMESTAMPTZ NOT NULL
);

CREATE INDEX IF NOT EXISTS request_records_created ON request_records (created_at);

-- gatewayz:postgres-only begin
ALTER TABLE usage_daily ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage_rollup_state ENABLE ROW LEVEL SECURITY;
-- gatewayz:postgres-only end
