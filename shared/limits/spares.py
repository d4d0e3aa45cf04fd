"""Spare admissions: a busy key's next rate-limit admission, taken by the end of the request before.

A paid request asks the rate limiter before its upstream call; on Redis or Upstash that is a round
trip on the request's path. The end of a request makes a round trip anyway (its slot release and
token correction, overlapped with the settlement: `settle_and_finish`). For a key that sends
request after request, that end also admits the key's next request ahead, in the same pipelined
write: the same checks at the same costs (one request of every request limit, the ended request's
token estimate of every token limit, a concurrency slot of its own, layer 1 for the same IP). That
admission is a spare. The key's next request takes it and reaches its upstream without waiting for
the hot store (measured in `bench.pg_added`). With a spare hold (shared.billing.spares) as well, a
busy key's request makes no round trip at all before its upstream call.

The rules, like spare holds':
- at most one per key and instance; only at the end of a request of one upstream call whose user
  has no other request in flight here, for a key whose previous request here ended less than
  `spare_s` ago or that ran on a spare; never while the hot store is degraded (its own memory
  stands in for it), nor for a key with a concurrency limit below `MIN_CONCURRENCY` (a slot held
  between requests would refuse the user's requests on other instances);
- taken only by the very key record it was admitted for (any change to the key replaces the
  record), by a request of one upstream call, from the same IP (layer 1 counted that IP), whose
  token estimate is at most the spare's (`TOKEN_MARGIN` times the ended request's: the next turn
  of a conversation is longer); any other request of the key gives it back first (in the same
  write) and is then admitted as usual;
- usable `spare_s` seconds, then given back: its slot released and its units returned to every
  limit it took them from (a GCRA refund); closing the runtime gives every spare back; a crashed
  instance's slot expires with its lease, like those of its requests in flight, and its units with
  the limits' periods.

What a spare costs the user: while it waits (`spare_s` at most) the user's limits count one
request more, so a request on another instance may see one less remaining and be refused at the
very edge of a limit. The request's `x-ratelimit-*` headers are those of the spare's admission.

Off with `GATEWAYZ_SPARE_ADMISSION_SECONDS=0` (the default on Lambda and Vercel, where an instance
frozen between invocations could not give its spare back) and with the in-process store, whose
admission costs no round trip.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared.accounts.keys import KeyRecord
from shared.hot import HotStore, HotStoreDown
from shared.hot.gcra import Decision, Rule, Slot

if TYPE_CHECKING:
    from shared.limits.limiter import Admission

log = logging.getLogger("gatewayz.limits")

MIN_CONCURRENCY = 2  # no spare for a key whose user (or itself) may run fewer requests at once
# A spare takes this many times the ended request's token estimate: a conversation's next request
# sends a longer prompt. The request that takes it corrects the budgets by what it used, as ever.
TOKEN_MARGIN = 2
MAX_KEYS = 50_000  # keys whose last request is remembered: beyond that, forget them all
CLOSE_WAIT_S = 5.0  # how long closing waits for the spares being given back


@dataclass(slots=True)
class Spare:
    key: KeyRecord  # the record it was admitted for
    ip: str | None  # the IP whose layer-1 limit it counted (None: checked before authentication)
    estimate: int  # the tokens it took from every token limit
    rules: list[Rule]  # what it was checked against (refunded when it is given back)
    slots: list[Slot]
    decision: Decision
    admission: Admission  # what the request that takes it holds
    layer1: int = 0  # how many of `rules` are layer 1's (they come first)
    born: float = 0.0


def spare_member() -> str:
    """A slot member of its own: the request that will hold it has no id yet."""
    return "spare:" + os.urandom(8).hex()


def refunds(rules: list[Rule]) -> list[Rule]:
    """What gives back the units a spare took: each rule it consumed, at minus its cost."""
    return [
        Rule(r.key, r.limit, r.period_ms, -r.cost, r.kind, r.name, mode="force")
        for r in rules
        if r.mode == "take" and r.cost
    ]


class SpareAdmissions:
    def __init__(self, hot: HotStore, spare_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.hot = hot
        self.spare_s = spare_s
        self.clock = clock
        self.taken = 0  # spares taken by requests (a metric)
        self._waiting: dict[str, Spare] = {}  # key id → its spare
        self._last_end: dict[str, float] = {}  # key id → when its last request ended here
        self._giving: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def enabled(self) -> bool:
        return self.spare_s > 0 and not self.hot.in_process and not self._closing

    def state(self) -> dict[str, int]:
        """For /v1/status: spares taken since start, and waiting now."""
        return {"taken": self.taken, "waiting": len(self._waiting)}

    def claim(
        self, key: KeyRecord, estimate: int, ip: str | None, calls: int
    ) -> tuple[Spare | None, Spare | None]:
        """The key's waiting spare: (it, None) when this request may take it, (None, it) when it
        may not — the caller gives it back (`give_back`) before its own admission."""
        spare = self._waiting.pop(key.key_id, None)
        if spare is None:
            return None, None
        if (
            spare.key is not key
            or calls != 1
            or estimate > spare.estimate
            or ip != spare.ip
            or self.clock() - spare.born > self.spare_s
        ):
            return None, spare
        self.taken += 1
        return spare, None

    def wanted(self, admission: Admission, alone: bool) -> bool:
        """Whether the end of `admission`'s request should admit its key's next one: the key is
        busy, has no spare waiting here, and the request was its user's only one here (`alone`)."""
        key = admission.key
        if key is None or not self.enabled or not alone or admission.calls != 1 or self.hot.degraded:
            return False
        now = self.clock()
        if len(self._last_end) >= MAX_KEYS:
            self._last_end.clear()
        last, self._last_end[key.key_id] = self._last_end.get(key.key_id), now
        if key.key_id in self._waiting:
            return False
        return admission.spare or (last is not None and now - last <= self.spare_s)

    def admitted(self, spare: Spare) -> None:
        """The admission made ahead: kept for the key's next request if it passed."""
        if not spare.decision.allowed:
            return  # refused: nothing was consumed
        if self._closing or spare.key.key_id in self._waiting or self.hot.degraded:
            self._give_back(spare)  # nobody will take it, or it was decided by this instance's memory
            return
        spare.born = self.clock()
        self._waiting[spare.key.key_id] = spare
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.ensure_future(self._sweep())

    async def close(self) -> None:
        """Give every spare back (the runtime is closing), and wait for that to land."""
        self._closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        for spare in list(self._waiting.values()):
            self._give_back(spare)
        self._waiting.clear()
        if self._giving:
            await asyncio.wait(set(self._giving), timeout=CLOSE_WAIT_S)

    async def _sweep(self) -> None:
        """Give back the spares nobody took in time; ends when none is left."""
        while self._waiting:
            await asyncio.sleep(self.spare_s / 2)
            now = self.clock()
            for spare in [s for s in self._waiting.values() if now - s.born > self.spare_s]:
                del self._waiting[spare.key.key_id]
                self._give_back(spare)

    def _give_back(self, spare: Spare) -> None:
        task = asyncio.ensure_future(self.give_back(spare))
        self._giving.add(task)
        task.add_done_callback(self._giving.discard)

    async def give_back(self, spare: Spare) -> None:
        """Release the spare's slot and refund its units (one call to the store)."""
        try:
            await self.hot.finish(refunds(spare.rules), spare.slots)
        except HotStoreDown:  # the slot is released when the store answers again (FallbackHot)
            log.warning("a spare admission could not be given back: the hot store is out")
