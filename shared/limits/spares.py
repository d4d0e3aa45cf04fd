"""Spare admissions: a busy key's next rate-limit admission, taken by the end of the request before.

A paid request asks the rate limiter before its upstream call; on Redis or Upstash that is a round
trip on the request's path. The end of a request makes a round trip anyway (its slot release and
token correction, overlapped with the settlement: `settle_and_finish`). For a key that sends
request after request, that end also admits the key's next request ahead, in the same pipelined
write: the same checks at the same costs (one request of every request limit, `TOKEN_MARGIN` times
the ended request's token estimate of every token limit, a concurrency slot of its own, layer 1 for
the same IP). That admission is a spare. The key's next request takes it and reaches its upstream without waiting for
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
  of a conversation is longer); any other request of the key gives it back first (a call of its
  own, so that at a limit's edge its units are this request's) and is then admitted as usual;
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

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared.accounts.keys import KeyRecord
from shared.hot import HotStore, HotStoreDown
from shared.hot.gcra import Decision, Rule, Slot
from shared.spares import SpareTable

if TYPE_CHECKING:
    from shared.limits.limiter import Admission

log = logging.getLogger("gatewayz.limits")

MIN_CONCURRENCY = 2  # no spare for a key whose user (or itself) may run fewer requests at once
# A spare takes this many times the ended request's token estimate: a conversation's next request
# sends a longer prompt. The request that takes it corrects the budgets by what it used, as ever.
TOKEN_MARGIN = 2


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


class SpareAdmissions(SpareTable[Spare]):
    def __init__(self, hot: HotStore, spare_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(spare_s, clock)
        self.hot = hot
        self.taken = 0  # spares taken by requests (a metric)

    @property
    def enabled(self) -> bool:
        return self.spare_s > 0 and not self.hot.in_process and not self._closing

    def state(self) -> dict[str, int]:
        """For /v1/status: spares taken since start, and waiting now."""
        return {"taken": self.taken, "waiting": len(self._waiting)}

    def key_of(self, spare: Spare) -> str:
        return spare.key.key_id

    def claim(
        self, key: KeyRecord, estimate: int, ip: str | None, calls: int
    ) -> tuple[Spare | None, Spare | None]:
        """The key's waiting spare: (it, None) when this request may take it, (None, it) when it
        may not — the caller gives it back (`undo`) before its own admission."""
        spare = self.take(key.key_id)
        if spare is None:
            return None, None
        if (
            spare.key is not key
            or calls != 1
            or estimate > spare.estimate
            or ip != spare.ip
            or not self.fresh(spare)
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
        return self.busy(key.key_id, admission.spare)

    def admitted(self, spare: Spare) -> None:
        """The admission made ahead: kept for the key's next request if it passed."""
        if not spare.decision.allowed:
            return  # refused: nothing was consumed
        if self.hot.degraded:  # decided by this instance's memory, not the shared store
            self.undo_later(spare)
            return
        self.wait(spare)

    async def undo(self, spare: Spare) -> None:
        """Release the spare's slot and refund its units (one call to the store)."""
        try:
            await self.hot.finish(refunds(spare.rules), spare.slots)
        except HotStoreDown:  # the slot is released when the store answers again (FallbackHot)
            log.warning("a spare admission could not be given back: the hot store is out")
