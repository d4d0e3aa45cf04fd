"""GCRA (the generic cell rate algorithm) over several limits at once, all or nothing.

A limit of L units per period P spaces units T = P/L apart and lets a full period's worth through
at once: a request of cost c is allowed when TAT' = max(TAT, now) + c·T ends no later than
now + P, and then TAT' is stored. There are no calendar buckets: the window slides with every
request, one number per limit. Every check of a request (requests and tokens, per minute and per
day, per key and per user) and its concurrency slot are decided in one atomic step: if anything
refuses, nothing is consumed.

The same algorithm exists twice: `check` (Python, for the in-memory store and the fallback) and
`LUA` (one script, for Redis and Upstash). The limiter contract suite runs both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

CONCURRENCY_RETRY_MS = 1000  # the retry-after of a refused concurrency slot (the Lua script's too)


# Plain (not frozen) slotted dataclasses: built several times per request, and a frozen
# dataclass's __init__ costs a setattr call per field.
@dataclass(slots=True)
class Rule:
    key: str  # hot-state key holding this limit's TAT
    limit: int  # units per period
    period_ms: int
    cost: int  # units this request takes
    kind: str = "requests"  # requests | tokens, for the response headers
    name: str = ""  # e.g. "key:rpm", for metrics and messages
    # take: checked and consumed; peek: checked, never consumed (is a budget already spent?);
    # force: consumed without a check (a correction after the fact: may be negative, never refuses)
    mode: str = "take"

    @property
    def peek(self) -> bool:
        return self.mode == "peek"


@dataclass(slots=True)
class Slot:
    """A concurrency slot: at most `limit` live leases in the set at `key`. A request that needs
    several (one per upstream call of a fanned-out `n`) lists one Slot per lease, each with its
    own member: they are taken together or not at all."""

    key: str
    member: str
    limit: int
    lease_ms: int


@dataclass(slots=True)
class RuleState:
    rule: Rule
    remaining: int  # units left now
    reset_ms: int  # until the limit is fully replenished


@dataclass(slots=True)
class Decision:
    allowed: bool
    retry_after_ms: int  # when refused: until the request would be allowed
    states: tuple[RuleState, ...]
    refused_by: str = ""  # the rule (or "concurrency") that refused
    slot_taken: bool = False


def _state(rule: Rule, tat: float, now: float) -> RuleState:
    interval = rule.period_ms / rule.limit
    used = max(0.0, tat - now)
    remaining = max(0, math.floor((rule.period_ms - used) / interval + 1e-9))
    return RuleState(rule, min(remaining, rule.limit), math.ceil(used))


def check(
    tats: dict[str, float],
    slots: dict[str, dict[str, float]],
    rules: list[Rule],
    slot_list: list[Slot],
    now: float,
) -> Decision:
    """Decide and, when allowed, update `tats`/`slots` in place (the caller holds them locked)."""
    allowed, retry, refused_by = True, 0.0, ""
    planned: list[tuple[Rule, float, float]] = []
    for rule in rules:
        interval = rule.period_ms / rule.limit
        tat = max(tats.get(rule.key, now), now)
        new_tat = max(tat + rule.cost * interval, now)
        if rule.mode != "force" and rule.cost > 0 and new_tat - rule.period_ms > now:
            allowed = False
            wait = new_tat - rule.period_ms - now
            if wait > retry:
                retry, refused_by = wait, rule.name or rule.key
        planned.append((rule, tat, new_tat))
    adding: dict[str, int] = {}  # leases this decision takes per key, before any is stored
    for slot in slot_list if allowed else ():
        leases = slots.setdefault(slot.key, {})
        for member, expiry in list(leases.items()):
            if expiry <= now:
                del leases[member]
        if slot.member in leases:
            continue  # already held: renewed below
        if len(leases) + adding.get(slot.key, 0) >= slot.limit:
            allowed = False
            # A slot frees when a request ends (soon, usually), or at the latest when a lease expires.
            retry = min(CONCURRENCY_RETRY_MS, min(leases.values()) - now) if leases else 0.0
            refused_by = "concurrency"
            break
        adding[slot.key] = adding.get(slot.key, 0) + 1
    if not allowed:
        return Decision(False, math.ceil(retry), tuple(_state(r, t, now) for r, t, _ in planned), refused_by)
    for rule, _, new_tat in planned:
        if not rule.peek:
            tats[rule.key] = new_tat
    for slot in slot_list:
        slots[slot.key][slot.member] = now + slot.lease_ms
    return Decision(
        True, 0, tuple(_state(r, t if r.peek else n, now) for r, t, n in planned), slot_taken=bool(slot_list)
    )


# KEYS: the rules' keys, then the slots' keys.
# ARGV: n_rules, per rule (limit, period_ms, cost, mode: 0 take, 1 peek, 2 force); n_slots, per slot
# (member, limit, lease_ms).
# Returns: {allowed, retry_after_ms, refused (0 none, i for rule i, -1 a slot), per rule remaining, reset_ms}.
LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = tonumber(ARGV[1])
local allowed, retry, refused = 1, 0, 0
local plan = {}
for i = 1, n do
  local limit = tonumber(ARGV[2 + (i - 1) * 4])
  local period = tonumber(ARGV[3 + (i - 1) * 4])
  local cost = tonumber(ARGV[4 + (i - 1) * 4])
  local mode = ARGV[5 + (i - 1) * 4]
  local peek = mode == '1'
  local interval = period / limit
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local new_tat = tat + cost * interval
  if new_tat < now then new_tat = now end
  if mode ~= '2' and cost > 0 and new_tat - period > now then
    allowed = 0
    if new_tat - period - now > retry then retry = new_tat - period - now; refused = i end
  end
  plan[i] = {tat, new_tat, interval, period, limit, peek}
end
local base = 2 + n * 4
local m = tonumber(ARGV[base])
if allowed == 1 then
  local adding = {}
  for j = 1, m do
    local slot_key = KEYS[n + j]
    local member = ARGV[base + 1 + (j - 1) * 3]
    local slot_limit = tonumber(ARGV[base + 2 + (j - 1) * 3])
    redis.call('ZREMRANGEBYSCORE', slot_key, '-inf', now)
    if not redis.call('ZSCORE', slot_key, member) then
      local taking = adding[slot_key] or 0
      if redis.call('ZCARD', slot_key) + taking >= slot_limit then
        allowed = 0
        refused = -1
        retry = 1000
        local first = redis.call('ZRANGE', slot_key, 0, 0, 'WITHSCORES')
        if first[2] and tonumber(first[2]) - now < retry then retry = tonumber(first[2]) - now end
        break
      end
      adding[slot_key] = taking + 1
    end
  end
end
if allowed == 1 then
  for j = 1, m do
    local lease = tonumber(ARGV[base + 3 + (j - 1) * 3])
    redis.call('ZADD', KEYS[n + j], now + lease, ARGV[base + 1 + (j - 1) * 3])
    redis.call('PEXPIRE', KEYS[n + j], lease)
  end
end
local out = {allowed, math.ceil(retry), refused}
for i = 1, n do
  local p = plan[i]
  local tat = p[1]
  if allowed == 1 and not p[6] then
    tat = p[2]
    redis.call('SET', KEYS[i], string.format('%.3f', tat), 'PX', math.max(1, math.ceil(tat - now)))
  end
  local used = tat - now
  if used < 0 then used = 0 end
  local remaining = math.floor((p[4] - used) / p[3] + 1e-9)
  if remaining < 0 then remaining = 0 end
  if remaining > p[5] then remaining = p[5] end
  out[#out + 1] = remaining
  out[#out + 1] = math.ceil(used)
end
return out
"""

# The end of a request in one call: token corrections (forced, never refused) and slot releases.
# KEYS: the rules' keys, then the slots' keys. ARGV: n_rules, per rule (limit, period_ms, cost),
# then the slots' members.
FINISH_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = tonumber(ARGV[1])
for i = 1, n do
  local limit = tonumber(ARGV[2 + (i - 1) * 3])
  local period = tonumber(ARGV[3 + (i - 1) * 3])
  local cost = tonumber(ARGV[4 + (i - 1) * 3])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local new_tat = tat + cost * (period / limit)
  if new_tat > now then
    redis.call('SET', KEYS[i], string.format('%.3f', new_tat), 'PX', math.max(1, math.ceil(new_tat - now)))
  else
    redis.call('DEL', KEYS[i])
  end
end
for j = n + 1, #KEYS do
  redis.call('ZREM', KEYS[j], ARGV[2 + n * 3 + (j - n - 1)])
end
return 1
"""

RELEASE_LUA = """
for i = 1, #KEYS do redis.call('ZREM', KEYS[i], ARGV[i]) end
return #KEYS
"""


def decision_from_lua(rules: list[Rule], reply: list[int], slots: list[Slot]) -> Decision:
    allowed = bool(int(reply[0]))
    refused = int(reply[2])
    refused_by = (
        "concurrency"
        if refused == -1
        else (rules[refused - 1].name or rules[refused - 1].key)
        if refused
        else ""
    )
    states = tuple(
        RuleState(rule, int(reply[3 + 2 * i]), int(reply[4 + 2 * i])) for i, rule in enumerate(rules)
    )
    return Decision(allowed, int(reply[1]), states, refused_by, slot_taken=allowed and bool(slots))
