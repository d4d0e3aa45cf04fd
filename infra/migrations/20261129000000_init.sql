-- Gatewayz schema v1: accounts, API keys, the credit ledger, holds, request records, audit, BYOK.
--
-- One schema for PostgreSQL/Supabase and SQLite: `gatewayz migrate` applies this file to either,
-- and the Supabase CLI applies it unchanged. Portable on purpose: money is BIGINT picodollars
-- (1 USD = 10^12), times are TIMESTAMPTZ (ISO-8601 text on SQLite), JSON is TEXT, and no default
-- calls a database function. Statements between the postgres-only markers are skipped on SQLite.

CREATE TABLE IF NOT EXISTS plans (
    id                   TEXT PRIMARY KEY,
    name                 TEXT NOT NULL,
    monthly_price_pico   BIGINT NOT NULL DEFAULT 0 CHECK (monthly_price_pico >= 0),
    monthly_credits_pico BIGINT NOT NULL DEFAULT 0 CHECK (monthly_credits_pico >= 0),
    requests_per_minute  INTEGER,
    requests_per_day     INTEGER,
    tokens_per_minute    INTEGER,
    tokens_per_day       INTEGER,
    concurrency          INTEGER,
    allowed_models       TEXT,            -- JSON array of model patterns; NULL: every model
    created_at           TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS users (
    id           TEXT PRIMARY KEY,
    email        TEXT NOT NULL UNIQUE,
    role         TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    status       TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    plan_id      TEXT NOT NULL REFERENCES plans (id),
    -- The balance equals the sum of the user's credit_transactions; it can never go negative.
    balance_pico BIGINT NOT NULL DEFAULT 0 CHECK (balance_pico >= 0),
    -- Bumped first in every money transaction: the row lock that serialises one user's reserves
    -- and settlements on PostgreSQL (SQLite serialises writers anyway).
    lock_seq     BIGINT NOT NULL DEFAULT 0,
    auth_subject TEXT UNIQUE,             -- the Supabase Auth user id, once linked
    created_at   TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS api_keys (
    id                     TEXT PRIMARY KEY,
    user_id                TEXT NOT NULL REFERENCES users (id),
    name                   TEXT NOT NULL,
    key_hash               TEXT NOT NULL UNIQUE,  -- HMAC-SHA256 of the key with the server secret
    prefix                 TEXT NOT NULL,
    last4                  TEXT NOT NULL,
    environment            TEXT NOT NULL CHECK (environment IN ('live', 'test')),
    scopes                 TEXT NOT NULL,         -- JSON array
    expires_at             TIMESTAMPTZ,
    ip_allowlist           TEXT,                  -- JSON array of CIDRs; NULL: any address
    allowed_origins        TEXT,                  -- JSON array of origins; NULL: any
    allowed_models         TEXT,                  -- JSON array of model patterns; NULL: any
    spend_limit_day_pico   BIGINT CHECK (spend_limit_day_pico >= 0),
    spend_limit_month_pico BIGINT CHECK (spend_limit_month_pico >= 0),
    spend_limit_total_pico BIGINT CHECK (spend_limit_total_pico >= 0),
    rate_limits            TEXT,                  -- JSON object, at most the plan's limits
    disabled               BOOLEAN NOT NULL DEFAULT FALSE,
    revoked_at             TIMESTAMPTZ,           -- keys are revoked, never deleted (the ledger refers to them)
    replaced_by            TEXT,                  -- rotation: the key that replaced this one
    created_at             TIMESTAMPTZ NOT NULL,
    last_used_at           TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS api_keys_user ON api_keys (user_id);

-- What each key with spend limits has spent per period ('d:2026-11-29', 'm:2026-11', 'total').
-- Kept only for keys that have a limit; setting a limit backfills it from the ledger.
CREATE TABLE IF NOT EXISTS key_spend (
    key_id      TEXT NOT NULL REFERENCES api_keys (id),
    period      TEXT NOT NULL,
    amount_pico BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, period)
);

-- The append-only ledger: every balance change is exactly one row.
CREATE TABLE IF NOT EXISTS credit_transactions (
    id                 TEXT PRIMARY KEY,
    user_id            TEXT NOT NULL REFERENCES users (id),
    amount_pico        BIGINT NOT NULL,
    type               TEXT NOT NULL CHECK (type IN ('grant', 'adjustment', 'usage', 'purchase', 'refund',
                                                      'allowance', 'trial', 'coupon', 'referral')),
    balance_after_pico BIGINT NOT NULL,
    request_id         TEXT,
    payment_id         TEXT,
    idempotency_key    TEXT UNIQUE,
    key_id             TEXT,
    description        TEXT NOT NULL DEFAULT '',
    metadata           TEXT,                  -- JSON object
    created_at         TIMESTAMPTZ NOT NULL
);
-- A request is charged at most once.
CREATE UNIQUE INDEX IF NOT EXISTS credit_transactions_usage ON credit_transactions (request_id) WHERE type = 'usage';
CREATE INDEX IF NOT EXISTS credit_transactions_user ON credit_transactions (user_id, created_at);

-- Reservations of the worst-case cost, taken before an upstream call and closed by its settlement.
-- Available credit = balance - open, unexpired holds.
CREATE TABLE IF NOT EXISTS credit_holds (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id),
    key_id      TEXT,
    request_id  TEXT NOT NULL UNIQUE,
    amount_pico BIGINT NOT NULL CHECK (amount_pico >= 0),
    status      TEXT NOT NULL CHECK (status IN ('open', 'settled', 'released', 'expired')),
    expires_at  TIMESTAMPTZ NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    closed_at   TIMESTAMPTZ
);
-- One partial index serves the user's and the key's open holds (and the reaper, which walks the
-- few open holds there are): every index costs a write on each hold's insert and close.
CREATE INDEX IF NOT EXISTS credit_holds_open ON credit_holds (user_id, key_id) WHERE status = 'open';

CREATE TABLE IF NOT EXISTS request_records (
    request_id         TEXT PRIMARY KEY,
    user_id            TEXT NOT NULL REFERENCES users (id),
    key_id             TEXT,
    model              TEXT NOT NULL,
    provider           TEXT,
    endpoint           TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('ok', 'error', 'cancelled')),
    http_status        INTEGER NOT NULL,
    input_tokens       INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens  INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens      INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens   INTEGER NOT NULL DEFAULT 0,
    estimated          BOOLEAN NOT NULL DEFAULT FALSE,
    cost_pico          BIGINT NOT NULL DEFAULT 0,
    byok               BOOLEAN NOT NULL DEFAULT FALSE,
    latency_ms         INTEGER NOT NULL DEFAULT 0,
    attempts           TEXT,                  -- JSON array
    client_request_id  TEXT,                  -- the caller's x-request-id (billing keys on request_id)
    created_at         TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS request_records_user ON request_records (user_id, created_at);

CREATE TABLE IF NOT EXISTS audit_log (
    id          TEXT PRIMARY KEY,
    actor_type  TEXT NOT NULL,                -- admin_key, user, system, cli
    actor_id    TEXT,
    action      TEXT NOT NULL,
    target_type TEXT,
    target_id   TEXT,
    details     TEXT,                         -- JSON object, never a secret
    ip          TEXT,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_log_created ON audit_log (created_at);
CREATE INDEX IF NOT EXISTS audit_log_target ON audit_log (target_type, target_id);

-- Bring-your-own provider keys, encrypted with GATEWAYZ_ENCRYPTION_KEYS (Fernet).
CREATE TABLE IF NOT EXISTS provider_keys (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id),
    provider      TEXT NOT NULL,
    encrypted_key TEXT NOT NULL,
    last4         TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    UNIQUE (user_id, provider)
);

INSERT INTO plans (id, name, monthly_price_pico, monthly_credits_pico, requests_per_minute, requests_per_day,
                   tokens_per_minute, tokens_per_day, concurrency, allowed_models, created_at)
VALUES ('free', 'Free', 0, 0, 20, 1000, 100000, 1000000, 2, NULL, '2026-11-29T00:00:00.000000Z'),
       ('pro', 'Pro', 20000000000000, 20000000000000, 300, 50000, 2000000, 50000000, 20, NULL, '2026-11-29T00:00:00.000000Z'),
       ('enterprise', 'Enterprise', 0, 0, 3000, 1000000, 20000000, 1000000000, 200, NULL, '2026-11-29T00:00:00.000000Z')
ON CONFLICT (id) DO NOTHING;

-- gatewayz:postgres-only begin
-- Supabase exposes the public schema through PostgREST: lock every table to the service role.
ALTER TABLE plans ENABLE ROW LEVEL SECURITY;
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE key_spend ENABLE ROW LEVEL SECURITY;
ALTER TABLE credit_transactions ENABLE ROW LEVEL SECURITY;
ALTER TABLE credit_holds ENABLE ROW LEVEL SECURITY;
ALTER TABLE request_records ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE provider_keys ENABLE ROW LEVEL SECURITY;
-- gatewayz:postgres-only end
