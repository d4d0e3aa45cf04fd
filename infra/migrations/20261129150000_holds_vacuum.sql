-- Vacuum credit_holds by the number of dead rows, not by the table's size (PostgreSQL).
--
-- Why: every paid request inserts a hold and closes it. Closing leaves a dead entry in the
-- open-holds partial index (credit_holds_open) until a vacuum removes it, and every reserve sums
-- the user's open holds through that index, reading the dead entries too. Measured: 17,530 dead
-- entries made that lookup read 58 index pages (0.15 ms per reserve), growing linearly. Closed holds
-- stay as live rows, so with the default trigger (20 % of the table dead) a table of ten million
-- holds would collect two million dead entries between vacuums. With these settings autovacuum
-- takes the table once 5,000 rows are dead, at its next round (autovacuum_naptime, 1 min by
-- default): the dead entries stay bounded by a minute of traffic.
--
-- SQLite has no dead rows (a closed hold leaves the partial index at once).

-- gatewayz:postgres-only begin
ALTER TABLE credit_holds SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000);
-- gatewayz:postgres-only end
