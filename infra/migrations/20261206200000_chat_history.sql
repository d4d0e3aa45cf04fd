-- Chat history (issue 18, SPEC §9): opt-in sessions and messages, feedback, share links.
--
-- History is written only for opted-in requests (a key's `store_history`, the request header
-- `x-gatewayz-history: on`, or `store: true` on /v1/responses), after the answer. Titles and
-- message contents are Fernet ciphertexts under GATEWAYZ_ENCRYPTION_KEYS (the BYOK key ring);
-- model, role and times stay plain so that lists filter and retention deletes in SQL.
-- A session is deleted with its messages and share links when its owner deletes it, or when its
-- last activity is older than the owner's retention (users.history_retention_days, NULL: the
-- operator's default GATEWAYZ_HISTORY_RETENTION_DAYS), by the scheduled purge-history job.
-- No foreign keys to users (as stored_responses): users are suspended, never deleted, and the
-- writes must not lock the user's row, the hottest in the database.

ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS store_history BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE users ADD COLUMN IF NOT EXISTS history_retention_days INTEGER;

CREATE TABLE IF NOT EXISTS chat_sessions (
    id            TEXT PRIMARY KEY,            -- ses_<hex>, minted when the request arrives
    user_id       TEXT NOT NULL,
    title         TEXT NOT NULL,               -- encrypted
    model         TEXT NOT NULL,               -- the model of the last answer
    message_count INTEGER NOT NULL DEFAULT 0,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS chat_sessions_user ON chat_sessions (user_id, updated_at);
CREATE INDEX IF NOT EXISTS chat_sessions_updated ON chat_sessions (updated_at);

CREATE TABLE IF NOT EXISTS chat_messages (
    id         TEXT PRIMARY KEY,               -- msg_<hex>
    session_id TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    seq        INTEGER NOT NULL,               -- order within the session
    role       TEXT NOT NULL,                  -- system | user | assistant | tool
    content    TEXT NOT NULL,                  -- encrypted
    model      TEXT,                           -- answers: the model that wrote it
    request_id TEXT,                           -- the gateway request that carried or produced it
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS chat_messages_session ON chat_messages (session_id, seq);
CREATE INDEX IF NOT EXISTS chat_messages_request ON chat_messages (request_id);

-- Feedback on an answer (a message of the caller's history) or on any request of theirs.
CREATE TABLE IF NOT EXISTS chat_feedback (
    id         TEXT PRIMARY KEY,               -- fb_<hex>
    user_id    TEXT NOT NULL,
    message_id TEXT,
    request_id TEXT,
    thumbs     TEXT,                           -- up | down
    rating     INTEGER,                        -- 1..5
    comment    TEXT,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS chat_feedback_created ON chat_feedback (created_at);

-- Read-only public links to a session. Only the SHA-256 of the token is kept: the database alone
-- does not give anyone a working link.
CREATE TABLE IF NOT EXISTS chat_shares (
    token_hash TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS chat_shares_session ON chat_shares (session_id);

-- gatewayz:postgres-only begin
ALTER TABLE chat_sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE chat_messages ENABLE ROW LEVEL SECURITY;
ALTER TABLE chat_feedback ENABLE ROW LEVEL SECURITY;
ALTER TABLE chat_shares ENABLE ROW LEVEL SECURITY;
-- gatewayz:postgres-only end
