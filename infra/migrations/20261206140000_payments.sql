-- Money in (SPEC §4-§6): Stripe events, payments and their refunds, subscriptions, debt and
-- frozen spending, trials, coupons and referrals.
--
-- Every credit these tables explain is a credit_transactions row (type purchase, refund,
-- allowance, trial, coupon, referral) written in the same transaction as the row here that
-- caused it: the webhook's event row, a coupon redemption, a trial.

-- Spending may be frozen ('debt': a refund took back more than was left; 'dispute': a chargeback
-- was opened). The balance never goes below zero: what a refund could not take is `debt_pico`,
-- paid first out of the next purchase. A frozen account reserves nothing (no inference).
ALTER TABLE users ADD COLUMN IF NOT EXISTS debt_pico BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN IF NOT EXISTS spend_frozen TEXT;
ALTER TABLE users ADD COLUMN IF NOT EXISTS stripe_customer_id TEXT;
ALTER TABLE users ADD COLUMN IF NOT EXISTS referral_code TEXT;
ALTER TABLE users ADD COLUMN IF NOT EXISTS referred_by TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS users_referral_code ON users (referral_code);
CREATE UNIQUE INDEX IF NOT EXISTS users_stripe_customer ON users (stripe_customer_id);

-- Every verified webhook event, by Stripe's id: the row is written in the transaction that
-- applies the event, so an event is applied exactly once (a replay finds the row and does nothing;
-- a failed transaction leaves no row, and Stripe's retry applies it). `claim` is the random token
-- of the transaction that wrote the row: the statements after it act only if it is theirs.
CREATE TABLE IF NOT EXISTS stripe_events (
    id          TEXT PRIMARY KEY,
    type        TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('processed', 'ignored')),
    claim       TEXT NOT NULL,
    user_id     TEXT,
    livemode    BOOLEAN NOT NULL DEFAULT FALSE,
    created     BIGINT NOT NULL,              -- Stripe's `created` (unix seconds)
    payload     TEXT NOT NULL,                -- the event as received (JSON)
    received_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS stripe_events_received ON stripe_events (received_at);

-- A paid top-up (its PaymentIntent id): what a refund of it may take back.
CREATE TABLE IF NOT EXISTS payments (
    id            TEXT PRIMARY KEY,           -- pi_…
    user_id       TEXT NOT NULL REFERENCES users (id),
    session_id    TEXT NOT NULL,              -- cs_…
    amount_pico   BIGINT NOT NULL CHECK (amount_pico >= 0),
    refunded_pico BIGINT NOT NULL DEFAULT 0 CHECK (refunded_pico >= 0),
    created_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS payments_user ON payments (user_id);

CREATE TABLE IF NOT EXISTS subscriptions (
    id                   TEXT PRIMARY KEY,    -- sub_…
    user_id              TEXT NOT NULL REFERENCES users (id),
    customer_id          TEXT,
    plan_id              TEXT NOT NULL REFERENCES plans (id),
    status               TEXT NOT NULL,       -- Stripe's: active, trialing, past_due, unpaid, canceled, …
    current_period_end   TIMESTAMPTZ,
    cancel_at_period_end BOOLEAN NOT NULL DEFAULT FALSE,
    grace_until          TIMESTAMPTZ,         -- a failed payment: downgraded after this unless paid
    updated_at           TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS subscriptions_user ON subscriptions (user_id);

-- One trial per user, per verified email, per IP per day, per card fingerprint.
CREATE TABLE IF NOT EXISTS trials (
    user_id          TEXT PRIMARY KEY REFERENCES users (id),
    email            TEXT NOT NULL UNIQUE,
    ip_day           TEXT NOT NULL UNIQUE,    -- '<ip>|2026-12-06'
    card_fingerprint TEXT UNIQUE,
    credits_pico     BIGINT NOT NULL,
    allowed_models   TEXT,                    -- JSON array of patterns; NULL: every model
    status           TEXT NOT NULL CHECK (status IN ('active', 'expired', 'ended')),
    expires_at       TIMESTAMPTZ NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS trials_expiry ON trials (status, expires_at);

CREATE TABLE IF NOT EXISTS coupons (
    code            TEXT PRIMARY KEY,         -- upper-case
    kind            TEXT NOT NULL CHECK (kind IN ('credits', 'topup_bonus')),
    credits_pico    BIGINT NOT NULL DEFAULT 0 CHECK (credits_pico >= 0),
    bonus_percent   INTEGER NOT NULL DEFAULT 0 CHECK (bonus_percent >= 0 AND bonus_percent <= 1000),
    max_redemptions INTEGER,                  -- NULL: no total cap
    per_user        INTEGER NOT NULL DEFAULT 1 CHECK (per_user >= 1),
    redemptions     INTEGER NOT NULL DEFAULT 0,
    plans           TEXT,                     -- JSON array of plan ids; NULL: every plan
    starts_at       TIMESTAMPTZ,
    expires_at      TIMESTAMPTZ,
    disabled        BOOLEAN NOT NULL DEFAULT FALSE,
    created_at      TIMESTAMPTZ NOT NULL
);

-- A redemption is the `seq`-th use of a code by a user (unique: exactly once under concurrency).
-- A top-up bonus waits (`status` pending) for the user's next paid top-up.
CREATE TABLE IF NOT EXISTS coupon_redemptions (
    id         TEXT PRIMARY KEY,
    code       TEXT NOT NULL REFERENCES coupons (code),
    user_id    TEXT NOT NULL REFERENCES users (id),
    seq        INTEGER NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('applied', 'pending')),
    payment_id TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    UNIQUE (code, user_id, seq)
);
CREATE INDEX IF NOT EXISTS coupon_redemptions_pending ON coupon_redemptions (user_id, status);

-- The referral bonus of a referee's first paid top-up: once per referee (primary key), at most
-- the monthly cap per referrer (`slot` 1..cap, unique per referrer and month).
CREATE TABLE IF NOT EXISTS referral_bonuses (
    referee_id  TEXT PRIMARY KEY REFERENCES users (id),
    referrer_id TEXT NOT NULL REFERENCES users (id),
    month       TEXT NOT NULL,
    slot        INTEGER NOT NULL,
    payment_id  TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    UNIQUE (referrer_id, month, slot)
);

-- gatewayz:postgres-only begin
ALTER TABLE stripe_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE payments ENABLE ROW LEVEL SECURITY;
ALTER TABLE subscriptions ENABLE ROW LEVEL SECURITY;
ALTER TABLE trials ENABLE ROW LEVEL SECURITY;
ALTER TABLE coupons ENABLE ROW LEVEL SECURITY;
ALTER TABLE coupon_redemptions ENABLE ROW LEVEL SECURITY;
ALTER TABLE referral_bonuses ENABLE ROW LEVEL SECURITY;
-- gatewayz:postgres-only end
