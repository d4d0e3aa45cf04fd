"""Circuit breakers and measured latency in the hot-state store, shared by every instance (SPEC §3).

One breaker per offer (`o:provider|model`) and one per provider (`p:provider`), each a field of
one hash, and one EWMA of latency (TTFB) and throughput (tokens/s) per offer in another. Every
change and every read is one atomic step: `sync` applies a batch of events (successes, failures,
429s, requests for a half-open trial) and, when asked, returns every breaker that is not plainly
closed plus the latency table — one round trip, which an instance makes at most once a second on
the hot path (successes wait for it; failures and trials are sent at once).

The states: closed → open when, within a window, at least `min_requests` calls were made and the
failure share reached `failure_rate`; open for `cooldown`; then half-open: at most `trials` calls
are let through (across all instances: the store counts them) — a success closes, a failure opens
again for another cooldown. A trial that never reports (its instance froze) is forgotten after one
more cooldown. 429s do not count as failures: they mark the offer "saturated" for the retry-after.

The same rules exist twice, like the limiter's GCRA: `apply` (Python, for the in-memory store)
and `LUA` (Redis and Upstash); the contract suite runs both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CLOSED, OPEN, HALF_OPEN = 0, 1, 2
STATE_NAMES = {CLOSED: "closed", OPEN: "open", HALF_OPEN: "half-open"}


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    window_ms: int = 60_000
    min_requests: int = 5
    failure_permille: int = 500  # the failure share that opens, in thousandths
    cooldown_ms: int = 30_000
    trials: int = 1
    alpha_permille: int = 200  # EWMA weight of one new sample
    latency_ttl_ms: int = 7 * 86_400_000  # an offer without traffic for this long is forgotten
    prefix: str = "hb:"  # of the two hashes' keys

    def keys(self) -> list[str]:
        return [f"{self.prefix}breakers", f"{self.prefix}latency"]

    def args(self) -> list[int]:
        return [
            self.window_ms,
            self.min_requests,
            self.failure_permille,
            self.cooldown_ms,
            self.trials,
            self.alpha_permille,
            self.latency_ttl_ms,
        ]


@dataclass(slots=True)
class Event:
    """`ok`: `count` successes, `a` = sum of their TTFB in ms, `b` = sum of tokens/s samples and
    `c` their count; `fail`: `count` failures; `sat`: a 429, `a` = its retry-after in ms;
    `trial`: asks to send one call (answered 1 or 0)."""

    kind: str
    offer: str  # "provider|model"
    provider: str
    count: int = 1
    a: float = 0.0
    b: float = 0.0
    c: int = 0

    def args(self) -> list[str | int]:
        return [self.kind, self.offer, self.provider, self.count, f"{self.a:.3f}", f"{self.b:.3f}", self.c]


@dataclass(slots=True)
class Snapshot:
    now_ms: int  # the store's clock
    results: list[int]  # one per event: the offer's state after it, or 1/0 for a trial
    # key (o:… or p:…) → (state, open_until_ms, last_failure_ms, saturated_until_ms, opened_ms)
    breakers: dict[str, tuple[int, int, int, int, int]]
    latency: dict[str, tuple[float, float, int]]  # offer → (ttfb_ms, tokens_per_s, samples)


def _fields(raw: str | None) -> list[float]:
    # st | window start | n | failures | open until | trials taken | last failure | saturated until | opened
    if not raw:
        return [0.0] * 9
    return [float(x) for x in raw.split("|")]


def _dump(f: list[float]) -> str:
    return "|".join(str(int(x)) for x in f)


def _state(f: list[float], now: float) -> int:
    if f[0] == OPEN:
        return HALF_OPEN if now >= f[4] else OPEN
    return CLOSED


def _roll(f: list[float], now: float, cfg: BreakerConfig) -> None:
    if now - f[1] > cfg.window_ms:
        f[1], f[2], f[3] = now, 0, 0


def apply(
    breakers: dict[str, str],
    latency: dict[str, str],
    cfg: BreakerConfig,
    events: list[Event],
    snapshot: bool,
    now: float,
) -> Snapshot:
    """The Python twin of `LUA`, on the two hashes as dicts (the caller holds them locked)."""
    results: list[int] = []
    for ev in events:
        keys = (f"o:{ev.offer}", f"p:{ev.provider}")
        fs = [_fields(breakers.get(k)) for k in keys]
        if ev.kind == "trial":
            ok = 1
            for f in fs:
                st = _state(f, now)
                if st == OPEN:
                    ok = 0
                elif st == HALF_OPEN:
                    if f[5] >= cfg.trials and now - f[4] > cfg.cooldown_ms:
                        f[5], f[4] = 0, now  # its trials never reported: a new round
                    if f[5] >= cfg.trials:
                        ok = 0
            if ok:
                for k, f in zip(keys, fs, strict=True):
                    if _state(f, now) == HALF_OPEN:
                        f[5] += 1
                        breakers[k] = _dump(f)
            results.append(ok)
            continue
        for k, f in zip(keys, fs, strict=True):
            st = _state(f, now)
            if ev.kind == "ok":
                if st == HALF_OPEN:
                    f = [0.0] * 9
                    f[1] = now
                else:
                    _roll(f, now, cfg)
                f[2] += ev.count
            elif ev.kind == "fail":
                f[6] = now
                if st != CLOSED:
                    f[0], f[4], f[5] = OPEN, now + cfg.cooldown_ms, 0
                else:
                    _roll(f, now, cfg)
                    f[2] += ev.count
                    f[3] += ev.count
                    if f[2] >= cfg.min_requests and f[3] * 1000 >= f[2] * cfg.failure_permille:
                        f[0], f[4], f[5], f[8] = OPEN, now + cfg.cooldown_ms, 0, now
            elif ev.kind == "sat":
                f[7] = max(f[7], now + max(ev.a, 1000.0))
            breakers[k] = _dump(f)
        if ev.kind == "ok":
            _ewma(latency, ev, cfg, now)
        results.append(_state(_fields(breakers[keys[0]]), now))
    if not snapshot:
        return Snapshot(int(now), results, {}, {})
    out: dict[str, tuple[int, int, int, int, int]] = {}
    for k, raw in list(breakers.items()):
        f = _fields(raw)
        if f[0] == CLOSED and f[7] <= now and now - f[1] > cfg.window_ms:
            del breakers[k]  # nothing left to remember
        elif f[0] != CLOSED or f[7] > now:
            out[k] = (_state(f, now), int(f[4]), int(f[6]), int(f[7]), int(f[8]))
    lat: dict[str, tuple[float, float, int]] = {}
    for k, raw in list(latency.items()):
        ttfb, tps, n, updated = (float(x) for x in raw.split("|"))
        if now - updated > cfg.latency_ttl_ms:
            del latency[k]
        else:
            lat[k] = (ttfb, tps, int(n))
    return Snapshot(int(now), results, out, lat)


def _ewma(latency: dict[str, str], ev: Event, cfg: BreakerConfig, now: float) -> None:
    # A batch of n samples moves the average as n single samples of the batch's mean would.
    raw = latency.get(ev.offer)
    ttfb, tps, n = 0.0, 0.0, 0.0
    if raw is not None:
        ttfb, tps, n = (float(x) for x in raw.split("|")[:3])
    alpha = cfg.alpha_permille / 1000
    if ev.count > 0:
        w = 1 - (1 - alpha) ** ev.count
        mean = ev.a / ev.count
        ttfb = mean if n == 0 else ttfb + w * (mean - ttfb)
    if ev.c > 0:
        w = 1 - (1 - alpha) ** ev.c
        mean = ev.b / ev.c
        tps = mean if tps == 0 else tps + w * (mean - tps)
    latency[ev.offer] = f"{ttfb:.3f}|{tps:.3f}|{int(n) + ev.count}|{int(now)}"


# KEYS: the breakers' hash, the latency hash. ARGV: the 7 config numbers, the number of events,
# 7 per event (kind, offer, provider, count, a, b, c), then 1 to return the snapshot.
# Returns {now, n, results..., 2*k breaker fields and values..., latency fields and values} with
# the two tables flattened as {count, field, value, ...}.
LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window, minreq, permille, cooldown, trials, alpha, latttl =
  tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]),
  tonumber(ARGV[5]), tonumber(ARGV[6]) / 1000, tonumber(ARGV[7])
local function load(k)
  local raw = redis.call('HGET', KEYS[1], k)
  local f = {0, 0, 0, 0, 0, 0, 0, 0, 0}
  if raw then
    local i = 1
    for x in string.gmatch(raw, '[^|]+') do f[i] = tonumber(x); i = i + 1 end
  end
  return f
end
local function dump(k, f)
  local parts = {}
  for i = 1, 9 do parts[i] = string.format('%d', f[i]) end
  redis.call('HSET', KEYS[1], k, table.concat(parts, '|'))
end
local function state(f)
  if f[1] == 1 then if now >= f[5] then return 2 end return 1 end
  return 0
end
local function roll(f)
  if now - f[2] > window then f[2] = now; f[3] = 0; f[4] = 0 end
end
local n = tonumber(ARGV[8])
local results = {}
for e = 1, n do
  local b = 8 + (e - 1) * 7
  local kind, offer, provider = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local count, a, bb, c = tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5]), tonumber(ARGV[b + 6]), tonumber(ARGV[b + 7])
  local keys = {'o:' .. offer, 'p:' .. provider}
  local fs = {load(keys[1]), load(keys[2])}
  if kind == 'trial' then
    local ok = 1
    for i = 1, 2 do
      local f = fs[i]
      local st = state(f)
      if st == 1 then ok = 0
      elseif st == 2 then
        if f[6] >= trials and now - f[5] > cooldown then f[6] = 0; f[5] = now end
        if f[6] >= trials then ok = 0 end
      end
    end
    if ok == 1 then
      for i = 1, 2 do
        if state(fs[i]) == 2 then fs[i][6] = fs[i][6] + 1; dump(keys[i], fs[i]) end
      end
    end
    results[e] = ok
  else
    for i = 1, 2 do
      local f = fs[i]
      local st = state(f)
      if kind == 'ok' then
        if st == 2 then f = {0, now, 0, 0, 0, 0, 0, 0, 0} else roll(f) end
        f[3] = f[3] + count
      elseif kind == 'fail' then
        f[7] = now
        if st ~= 0 then
          f[1] = 1; f[5] = now + cooldown; f[6] = 0
        else
          roll(f)
          f[3] = f[3] + count
          f[4] = f[4] + count
          if f[3] >= minreq and f[4] * 1000 >= f[3] * permille then
            f[1] = 1; f[5] = now + cooldown; f[6] = 0; f[9] = now
          end
        end
      elseif kind == 'sat' then
        local wait = a
        if wait < 1000 then wait = 1000 end
        if now + wait > f[8] then f[8] = now + wait end
      end
      dump(keys[i], f)
      fs[i] = f
    end
    if kind == 'ok' then
      local raw = redis.call('HGET', KEYS[2], offer)
      local ttfb, tps, samples = 0, 0, 0
      if raw then
        local v = {}
        for x in string.gmatch(raw, '[^|]+') do v[#v + 1] = tonumber(x) end
        ttfb, tps, samples = v[1], v[2], v[3]
      end
      if count > 0 then
        local w = 1 - (1 - alpha) ^ count
        local mean = a / count
        if samples == 0 then ttfb = mean else ttfb = ttfb + w * (mean - ttfb) end
      end
      if c > 0 then
        local w = 1 - (1 - alpha) ^ c
        local mean = bb / c
        if tps == 0 then tps = mean else tps = tps + w * (mean - tps) end
      end
      redis.call('HSET', KEYS[2], offer, string.format('%.3f|%.3f|%d|%d', ttfb, tps, samples + count, now))
    end
    results[e] = state(fs[1])
  end
end
local out = {now, n}
for e = 1, n do out[#out + 1] = results[e] end
if ARGV[9 + n * 7] ~= '1' then return out end
local all = redis.call('HGETALL', KEYS[1])
local br = {}
for i = 1, #all, 2 do
  local k = all[i]
  local f = {}
  for x in string.gmatch(all[i + 1], '[^|]+') do f[#f + 1] = tonumber(x) end
  if f[1] == 0 and f[8] <= now and now - f[2] > window then
    redis.call('HDEL', KEYS[1], k)
  elseif f[1] ~= 0 or f[8] > now then
    br[#br + 1] = k
    br[#br + 1] = string.format('%d|%d|%d|%d|%d', state(f), f[5], f[7], f[8], f[9])
  end
end
out[#out + 1] = #br / 2
for i = 1, #br do out[#out + 1] = br[i] end
local lat = redis.call('HGETALL', KEYS[2])
local keep = {}
for i = 1, #lat, 2 do
  local v = {}
  for x in string.gmatch(lat[i + 1], '[^|]+') do v[#v + 1] = x end
  if now - tonumber(v[4]) > latttl then
    redis.call('HDEL', KEYS[2], lat[i])
  else
    keep[#keep + 1] = lat[i]
    keep[#keep + 1] = v[1] .. '|' .. v[2] .. '|' .. v[3]
  end
end
out[#out + 1] = #keep / 2
for i = 1, #keep do out[#out + 1] = keep[i] end
return out
"""


def lua_args(cfg: BreakerConfig, events: list[Event], snapshot: bool) -> list[str | int]:
    args: list[str | int] = [*cfg.args(), len(events)]
    for ev in events:
        args += ev.args()
    args.append(1 if snapshot else 0)
    return args


def _text(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def snapshot_from_lua(reply: list[Any]) -> Snapshot:
    now, n = int(reply[0]), int(reply[1])
    results = [int(x) for x in reply[2 : 2 + n]]
    i = 2 + n
    breakers: dict[str, tuple[int, int, int, int, int]] = {}
    latency: dict[str, tuple[float, float, int]] = {}
    if i < len(reply):
        count = int(reply[i])
        i += 1
        for _ in range(count):
            st, until, lf, sat, opened = (int(x) for x in _text(reply[i + 1]).split("|"))
            breakers[_text(reply[i])] = (st, until, lf, sat, opened)
            i += 2
        count = int(reply[i])
        i += 1
        for _ in range(count):
            ttfb, tps, samples = _text(reply[i + 1]).split("|")
            latency[_text(reply[i])] = (float(ttfb), float(tps), int(samples))
            i += 2
    return Snapshot(now, results, breakers, latency)
