"""Spare holds: a busy key's next reservation, written by the settlement of the request before.

A paid request takes two database transactions: the reservation before the upstream call and the
settlement after it. For a key that sends request after request, the settlement can write, in its
own transaction, the hold of the key's next request — a spare — under a reservation's checks (an
active account, not frozen, and room for more than the spare: `ROOM` times its amount, so that a
spare never takes the last of an account's credit). The key's next request whose worst case fits
in it takes it and reaches its upstream without a database round trip: one transaction per request
instead of two (measured in `bench.pg_added`; the settlement's commit is the durable one anyway).

The rules that keep a spare a reservation like any other:
- at most one per key and instance, for keys without spend limits (those count holds per key);
- written only for a key whose previous request here ended less than `spare_s` ago, or that ran
  on a spare (a key with a steady stream of requests), and whose user has no other request in
  flight here: a spare is a reservation, so its settlement takes the user's turn with the
  reservations (`RESERVE_LOCK`) until its durable commit — with several of the user's requests
  at once, their reservations would wait for it (measured: one user at c=10, -10 % req/s);
- taken only by the very key record (from the key cache) it was written for: any change to the
  key or its account (limits, revoke, suspension) replaces the record and strands the spare;
- usable `spare_s` seconds after it was written, then dropped (its hold deleted): a freeze of the
  account, which no key record shows, reaches a key that runs on spares within that time (and
  within one request: the settlements write none for a frozen account);
- a request that took one and was refused by the rate limiter gives it back;
- a reservation refused for want of credit first drops this instance's spares of the user and
  tries again, so this instance's spares never turn a request that fits into a 402 (another
  instance's, written only while the account had `ROOM` times its amount available, holds its
  share until it is taken or dropped: `spare_s` at most);
- a drop the database refuses (an outage) is tried again until it lands, as is the drop of a
  spare whose settlement's outcome is unknown (its answer was lost): nothing is left behind once
  the database is back; closing the runtime drops the spares; a crashed instance's expire with
  its other holds.

Off (`GATEWAYZ_SPARE_HOLD_SECONDS=0`, the default on Lambda and Vercel, where an instance frozen
between invocations could not drop its spare) and on SQLite, where a reservation is a local
transaction that costs less than the bookkeeping.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from decimal import Decimal

from shared.accounts.keys import KeyRecord
from shared.billing.ledger import HOLD_TTL, Ledger, Spare
from shared.errors import DependencyUnavailable
from shared.spares import SpareTable

log = logging.getLogger("gatewayz.billing")

ROOM = 4  # a spare is written only if the account has this many times its amount available
RETRY_S = (0.1, 0.2, 0.5, 1.0, 2.0)  # waits between tries of a drop the database refused (then 2 s)


class Spares(SpareTable[Spare]):
    def __init__(self, ledger: Ledger, spare_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(spare_s, clock)
        self.ledger = ledger

    @property
    def enabled(self) -> bool:
        return self.spare_s > 0 and self.ledger.db.dialect == "postgres" and not self._closing

    def key_of(self, spare: Spare) -> str:
        return spare.key_id

    def waits_for(self, key: KeyRecord) -> bool:
        return key.key_id in self._waiting

    def take_for(self, key: KeyRecord, amount: Decimal) -> Spare | None:
        """The key's spare, when one is waiting, still fresh, and holds at least `amount`."""
        spare = self._waiting.get(key.key_id)
        if spare is None or spare.amount < amount or not self.fresh(spare):
            return None
        if spare.owner is not key or key.has_spend_limits:  # the key changed since: not its spare
            return None
        return self.take(key.key_id)

    def offer(self, key: KeyRecord, amount: Decimal, took: Spare | None, alone: bool) -> Spare | None:
        """A spare for the settlement of the key's request that reserved `amount` to write: when the
        key is busy, has none waiting here, and its request is the user's only one in flight here
        (`alone`)."""
        if not self.enabled or amount <= 0 or key.has_spend_limits or not alone:
            return None
        if not self.busy(key.key_id, took is not None):
            return None
        return Spare(user_id=key.user_id, key_id=key.key_id, owner=key, amount=amount, room=amount * ROOM)

    def settled(self, spare: Spare) -> None:
        """After the settlement that was asked to write `spare`: keep it if it was written."""
        if spare.written:
            self.wait(spare)

    def unknown(self, spare: Spare) -> None:
        """The settlement asked to write `spare` failed, or its caller was cancelled: it may have
        committed all the same (its answer lost) or still be landing (a settlement outlives its
        caller), so the spare is dropped once the settlements under way have landed (a no-op if
        it was never written)."""
        self.in_background(self._delete(spare, after_settlements=True))

    async def drop_user(self, user_id: str) -> bool:
        """Drop this instance's spares of the user (a reservation did not fit); whether any was."""
        mine = [s for s in self._waiting.values() if s.user_id == user_id]
        for spare in mine:
            del self._waiting[spare.key_id]
        dropped = await asyncio.gather(*(self._delete_once(spare) for spare in mine))
        for spare, done in zip(mine, dropped, strict=True):
            if not done:  # the database went out meanwhile: tried again in the background
                self.undo_later(spare)
        return bool(mine)

    def closing(self) -> None:
        """No more spares: the runtime is closing (its settlements still landing write none)."""
        self._closing = True

    async def undo(self, spare: Spare) -> None:
        await self._delete(spare)

    async def _delete(self, spare: Spare, after_settlements: bool = False) -> None:
        """Delete the spare's hold, trying again while the database is out (until the hold would
        have expired by itself)."""
        if after_settlements:
            await self.ledger.drain()
        give_up = self.clock() + HOLD_TTL.total_seconds()
        for attempt in itertools.count():
            if await self._delete_once(spare) or self.clock() > give_up:
                return
            if attempt == 0:
                log.warning("a spare hold could not be dropped (the database is out): trying again")
            await asyncio.sleep(RETRY_S[min(attempt, len(RETRY_S) - 1)])

    async def _delete_once(self, spare: Spare) -> bool:
        try:
            await self.ledger.drop_hold(spare.user_id, spare.request_id)
            return True
        except DependencyUnavailable:
            return False
