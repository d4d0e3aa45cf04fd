-- Stored responses (POST /v1/responses with store: true), so that a conversation continues by
-- previous_response_id; read back by GET /v1/responses/{id}, removed by DELETE or at expiry
-- (GATEWAYZ_RESPONSES_RETENTION_DAYS, 30 by default; the scheduled job deletes expired rows).
--
-- One row per response, private to its user: `items` is the whole input it answered (the
-- conversation it continued, then its own input; JSON array of Responses input items) and
-- `response` the response object as the caller received it (JSON). A continuation reads one row
-- by primary key. No foreign key to users: the insert runs beside the settlement of the same
-- request, and on PostgreSQL a key check would lock the user's row, the hottest in the database
-- (see 20261129130000_hot_path_user_locks.sql); users are suspended, never deleted.

CREATE TABLE IF NOT EXISTS stored_responses (
    id         TEXT PRIMARY KEY,            -- resp_<hex>, minted by the gateway
    user_id    TEXT NOT NULL,
    model      TEXT NOT NULL,
    items      TEXT NOT NULL,
    response   TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS stored_responses_expires ON stored_responses (expires_at);

-- gatewayz:postgres-only begin
ALTER TABLE stored_responses ENABLE ROW LEVEL SECURITY;
-- gatewayz:postgres-only end
