-- Keys that share a budget (issue 10's "a key never lifts its own restrictions", continued).
--
-- A key's spend limits and own rate limits were counted under its own id, so a restricted key
-- could reset them: rotating itself (the new secret is a new row, with fresh counters) or minting
-- keys with the same limits (each with counters of its own). `budget_key_id` names the key whose
-- counters a key draws from: set for a rotated key's replacement (the key it replaces, or that
-- key's budget) and for a key minted by a key with spend or rate limits (the minter's budget).
-- NULL: the key's own. Spend (`key_spend`, the holds counted against a spend limit) and the
-- per-key rate limits are then counted once for all the keys of a budget.
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS budget_key_id TEXT;
