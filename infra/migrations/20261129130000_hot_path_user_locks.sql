-- The tables every request writes (holds, usage charges, request records) no longer check their
-- user_id against users with a foreign key, on PostgreSQL.
--
-- Why: a foreign-key check takes a KEY SHARE lock on the referenced row, and the user's row is the
-- hottest in the database (every settlement updates its balance). Under load, one user's
-- concurrent requests then either queue behind each other's settlements or, with a NO KEY UPDATE
-- lock held, turn the row's lockers into MultiXacts — measured: ~10 % of a gateway's throughput
-- on PostgreSQL + Redis. Every writer of these rows selects the user row in the same statement
-- (holds and charges are INSERT … SELECT … FROM users), or writes for a request that an existing
-- user's key authenticated; users are suspended, never deleted.
--
-- SQLite keeps the constraints: it takes no row locks, and its foreign-key checks cost nothing
-- comparable.

-- gatewayz:postgres-only begin
ALTER TABLE credit_holds DROP CONSTRAINT IF EXISTS credit_holds_user_id_fkey;
ALTER TABLE credit_transactions DROP CONSTRAINT IF EXISTS credit_transactions_user_id_fkey;
ALTER TABLE request_records DROP CONSTRAINT IF EXISTS request_records_user_id_fkey;
-- gatewayz:postgres-only end
