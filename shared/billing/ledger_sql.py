"""The ledger's SQL: every statement and routine of shared.billing.ledger (SPEC §4), and the
statements other balance changes (payments, promotions) reuse. The invariants they keep are
listed in shared.billing.ledger."""

from __future__ import annotations

from shared.store.routines import Routine, Statement

# PostgreSQL only (`row_locks`): a row lock that, unlike an UPDATE, writes no new row version (the
# user's row is the hottest in the database: under load its version chain cost CPU on every touch).
# NO KEY UPDATE, the lock an UPDATE of the balance takes anyway: it lets the foreign-key checks of
# rows that point at the user (a reserve's hold) pass; FOR UPDATE would make them wait.
LOCK_USER = "SELECT 1 FROM users WHERE id = :user_id FOR NO KEY UPDATE"
ASYNC_COMMIT = "SELECT set_config('synchronous_commit', 'off', true)"  # this transaction only
# Reserves of one user take turns on a transaction-scoped advisory lock (namespace 7301), not on the
# user's row: a reserve then never waits for a settlement's commit, which holds the row until its
# WAL is flushed. What a settlement in flight has not committed can only make a reserve see less
# credit than there is: its hold, the worst case, still counts until the same commit.
RESERVE_LOCK = "SELECT pg_advisory_xact_lock(7301, hashtext(:user_id))"

# Open holds that still count: unexpired ones (expired ones are swept by the reaper). The partial
# index (user_id, expires_at) WHERE status = 'open' serves both (see its migration).
OPEN_HOLDS_USER = "SELECT COALESCE(SUM(amount_pico), 0) FROM credit_holds WHERE user_id = u.id AND status = 'open' AND expires_at > :now"
# The key's: its user named too, so that both sums use the open-holds index (user_id, expires_at).
_OPEN_HOLDS_KEY = "SELECT COALESCE(SUM(amount_pico), 0) FROM credit_holds WHERE user_id = :user_id AND key_id = :key_id AND status = 'open' AND expires_at > :now"

# The credit row of a balance change: written only if the change keeps the balance >= 0 — and a
# claw-back the balance minus what open holds reserve for requests in flight — and (with an
# idempotency key) only once. The balance update below applies only if this row was written.
INSERT_CREDIT = f"""
INSERT INTO credit_transactions (id, user_id, amount_pico, type, balance_after_pico, payment_id,
                                 idempotency_key, description, metadata, created_at)
SELECT :tx_id, u.id, :amount, :type, u.balance_pico + :amount, :payment_id, :idempotency_key,
       :description, :metadata, :now
FROM users u
WHERE u.id = :user_id AND u.balance_pico + :amount >= 0
  AND (:amount >= 0 OR u.balance_pico + :amount >= ({OPEN_HOLDS_USER}))
ON CONFLICT (idempotency_key) DO NOTHING
"""
APPLY_TX = """
UPDATE users SET balance_pico = balance_pico + (SELECT amount_pico FROM credit_transactions WHERE id = :tx_id)
WHERE id = :user_id AND EXISTS (SELECT 1 FROM credit_transactions WHERE id = :tx_id)
"""
AUDIT_IF_TX = """
INSERT INTO audit_log (id, actor_type, actor_id, action, target_type, target_id, details, ip, created_at)
SELECT :audit_id, :actor_type, :actor_id, :action, 'user', :user_id, :details, :ip, :now
WHERE EXISTS (SELECT 1 FROM credit_transactions WHERE id = :tx_id)
"""
RESULT_TX = """
SELECT u.balance_pico, (SELECT COUNT(*) FROM credit_transactions WHERE id = :tx_id) AS applied,
       (SELECT id FROM credit_transactions WHERE idempotency_key = :idempotency_key) AS existing_tx
FROM users u WHERE u.id = :user_id
"""


def _spend(period: str) -> str:
    return (
        f"(SELECT COALESCE(SUM(amount_pico), 0) FROM key_spend WHERE key_id = :key_id AND period = :{period})"
    )


def _insert_hold(hold: str, key: str, request: str, amount: str, expires: str, room: str) -> str:
    """A hold (the names of its parameters) for an active, unfrozen account with `room` available
    besides its open holds; the caller adds its own conditions after an AND."""
    return f"""
INSERT INTO credit_holds (id, user_id, key_id, request_id, amount_pico, status, expires_at, created_at)
SELECT :{hold}, u.id, :{key}, :{request}, :{amount}, 'open', :{expires}, :now
FROM users u
WHERE u.id = :user_id AND u.status = 'active' AND u.spend_frozen IS NULL
  AND u.balance_pico - ({OPEN_HOLDS_USER}) >= :{room}
  AND"""


INSERT_HOLD = f"""{_insert_hold("hold_id", "key_id", "request_id", "amount", "expires_at", "amount")} (CAST(:limit_day AS BIGINT) IS NULL OR {_spend("day")} + ({_OPEN_HOLDS_KEY}) + :amount <= :limit_day)
  AND (CAST(:limit_month AS BIGINT) IS NULL OR {_spend("month")} + ({_OPEN_HOLDS_KEY}) + :amount <= :limit_month)
  AND (CAST(:limit_total AS BIGINT) IS NULL OR {_spend("total")} + ({_OPEN_HOLDS_KEY}) + :amount <= :limit_total)
ON CONFLICT (request_id) DO NOTHING
RETURNING id
"""
# Why a reserve failed (read only on that path).
DIAGNOSE = f"""
SELECT u.status, u.spend_frozen, u.balance_pico, ({OPEN_HOLDS_USER}) AS held,
       {_spend("day")} AS spent_day, {_spend("month")} AS spent_month, {_spend("total")} AS spent_total,
       ({_OPEN_HOLDS_KEY}) AS key_held
FROM users u WHERE u.id = :user_id
"""

INSERT_USAGE = """
INSERT INTO credit_transactions (id, user_id, amount_pico, type, balance_after_pico, request_id, key_id,
                                 description, metadata, created_at)
SELECT :tx_id, u.id, -(CASE WHEN u.balance_pico < :cost THEN u.balance_pico ELSE :cost END), 'usage',
       u.balance_pico - (CASE WHEN u.balance_pico < :cost THEN u.balance_pico ELSE :cost END),
       :request_id, :key_id, :description, :metadata, :now
FROM users u WHERE u.id = :user_id AND :cost > 0
ON CONFLICT (request_id) WHERE type = 'usage' DO NOTHING
"""
# The request's hold: its own, or the spare it took (`hold_request_id`, see shared.billing.spares),
# which from then on carries the id of the request it served.
CLOSE_HOLD = """
UPDATE credit_holds SET status = :hold_status, closed_at = :now, request_id = :request_id
WHERE request_id = :hold_request_id AND user_id = :user_id AND status IN ('open', 'expired')
"""
# A spare: the hold of the key's next request, written by this settlement (shared.billing.spares)
# under a reservation's checks, once this charge is applied and this request's hold closed — and
# with room left for more than it (`spare_room`). Never by a replayed settlement (its record exists).
INSERT_SPARE = f"""{_insert_hold("spare_hold_id", "spend_key_id", "spare_request_id", "spare_amount", "spare_expires_at", "spare_room")} NOT EXISTS (SELECT 1 FROM request_records WHERE request_id = :request_id)
ON CONFLICT (request_id) DO NOTHING
"""
# Counted under the key's budget (`KeyRecord.budget_id`: the key, or the key it shares limits with).
ADD_SPEND = """
INSERT INTO key_spend (key_id, period, amount_pico)
SELECT :spend_key_id, p.period, -t.amount_pico
FROM credit_transactions t, (SELECT :day AS period UNION ALL SELECT :month UNION ALL SELECT :total) p
WHERE t.id = :tx_id
ON CONFLICT (key_id, period) DO UPDATE SET amount_pico = key_spend.amount_pico + excluded.amount_pico
"""
INSERT_RECORD = """
INSERT INTO request_records (request_id, user_id, key_id, model, provider, endpoint, status, http_status,
    input_tokens, cache_read_tokens, cache_write_tokens, output_tokens, reasoning_tokens, estimated,
    cost_pico, byok, latency_ms, attempts, client_request_id, created_at)
VALUES (:request_id, :user_id, :key_id, :model, :provider, :endpoint, :status, :http_status,
    :input_tokens, :cache_read_tokens, :cache_write_tokens, :output_tokens, :reasoning_tokens, :estimated,
    COALESCE((SELECT -amount_pico FROM credit_transactions WHERE id = :tx_id), 0),
    :byok, :latency_ms, :attempts, :client_request_id, :now)
ON CONFLICT (request_id) DO NOTHING
RETURNING cost_pico,
    (SELECT COUNT(*) FROM credit_holds WHERE request_id = :spare_request_id AND status = 'open') > 0
"""
# A hold whose request the rate limiter refused (its reserve ran alongside the admission): the
# request never ran, so nothing of it stays; a commit that a crash forgets leaves the hold to expire.
DROP_HOLD = Routine(
    "drop_hold",
    (("request_id", "text"), ("user_id", "text")),
    (
        Statement(ASYNC_COMMIT, dialect="postgres"),
        Statement(
            "DELETE FROM credit_holds WHERE request_id = :request_id AND user_id = :user_id "
            "AND status = 'open' RETURNING id"
        ),
    ),
)
TOUCH_KEY = "UPDATE api_keys SET last_used_at = :now WHERE id = :key_id"
REAP = """
UPDATE credit_holds SET status = 'expired', closed_at = :now
WHERE status = 'open' AND expires_at <= :now
RETURNING id
"""

# The two transactions of every paid request (see shared.store.routines).
_PERIODS = (("day", "text"), ("month", "text"), ("total", "text"))
RESERVE = Routine(
    "reserve",
    (
        ("hold_id", "text"),
        ("user_id", "text"),
        ("key_id", "text"),
        ("request_id", "text"),
        ("amount", "bigint"),
        ("expires_at", "timestamptz"),
        ("now", "timestamptz"),
        ("limit_day", "bigint"),
        ("limit_month", "bigint"),
        ("limit_total", "bigint"),
        *_PERIODS,
    ),
    (
        # A hold is a guard, not money: its commit need not wait for the disk. A crash may forget
        # the last moment's holds (their requests then settle without one); every charge is durable.
        Statement(ASYNC_COMMIT, dialect="postgres"),
        Statement(RESERVE_LOCK, dialect="postgres"),
        Statement(INSERT_HOLD),
    ),
    # Never a bitmap scan for the user's open holds. Each closed hold leaves a dead entry in the
    # open-holds index until a vacuum; a plain index scan marks the entries it finds dead so that
    # later scans skip them (and inserts reclaim their space), a bitmap scan never does, and
    # re-reads every one with its table page on every reserve. The planner picks the bitmap scan
    # once the table is large (measured in `bench.soak` with autovacuum off: from ~100,000
    # requests of one user, 19,000 entries and 560 pages per reserve, 0.35 → 10 ms in the server).
    settings=(("enable_bitmapscan", "off"),),
)
SETTLE = Routine(
    "settle",
    (
        ("tx_id", "text"),
        ("cost", "bigint"),
        ("hold_status", "text"),
        ("description", "text"),
        ("metadata", "text"),
        ("now", "timestamptz"),
        ("request_id", "text"),
        ("user_id", "text"),
        ("key_id", "text"),
        ("model", "text"),
        ("provider", "text"),
        ("endpoint", "text"),
        ("status", "text"),
        ("http_status", "integer"),
        ("input_tokens", "integer"),
        ("cache_read_tokens", "integer"),
        ("cache_write_tokens", "integer"),
        ("output_tokens", "integer"),
        ("reasoning_tokens", "integer"),
        ("estimated", "boolean"),
        ("byok", "boolean"),
        ("latency_ms", "integer"),
        ("attempts", "text"),
        ("client_request_id", "text"),
        *_PERIODS,
        ("spend_key_id", "text"),
        ("track_spend", "boolean"),
        ("touch_key", "boolean"),
        ("hold_request_id", "text"),
        ("spare", "boolean"),
        ("spare_hold_id", "text"),
        ("spare_request_id", "text"),
        ("spare_amount", "bigint"),
        ("spare_room", "bigint"),
        ("spare_expires_at", "timestamptz"),
    ),
    (
        Statement(LOCK_USER, dialect="postgres"),
        # A spare is a reservation: it takes its turn with the user's reserves (see RESERVE_LOCK).
        Statement(RESERVE_LOCK, when="spare", dialect="postgres"),
        Statement(INSERT_USAGE),
        Statement(APPLY_TX),
        Statement(CLOSE_HOLD),
        Statement(ADD_SPEND, when="track_spend"),
        Statement(TOUCH_KEY, when="touch_key"),
        Statement(INSERT_SPARE, when="spare"),
        Statement(INSERT_RECORD),
    ),
    # What was charged (the record's cost; NULL when the request was settled before), and whether
    # the spare asked for was written.
    returns=("bigint", "boolean"),
    settings=(("enable_bitmapscan", "off"),),  # the open-holds sum, as in RESERVE
)
