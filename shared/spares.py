"""What spare holds (shared.billing.spares) and spare admissions (shared.limits.spares) share: a
table of at most one spare per key, waiting on this instance for the key's next request.

A request's end tells the table (`busy`) and learns whether its key is busy: its previous request
here ended less than `spare_s` ago, or this one ran on a spare — a steady stream of requests. A
spare made for a busy key `wait`s `spare_s` for the key's next request, which takes it (`take`);
one nobody takes in time is undone by a sweeper (`undo`: the subclass's, in the background), as is
one that finds another waiting, and every spare when the table closes. A spare taken and not used
is `put_back` for what is left of its time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any, Generic, Protocol, TypeVar

MAX_KEYS = 50_000  # keys whose last request is remembered: beyond that, forget them all
CLOSE_WAIT_S = 5.0  # how long closing waits for the undoing under way


class Waiting(Protocol):
    born: float  # when it began to wait (the table's clock)


S = TypeVar("S", bound=Waiting)


class SpareTable(Generic[S]):
    def __init__(self, spare_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.spare_s = spare_s
        self.clock = clock
        self._waiting: dict[str, S] = {}  # key id → its spare
        self._last_end: dict[str, float] = {}  # key id → when its last request ended here
        self._background: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._closing = False

    def key_of(self, spare: S) -> str:
        raise NotImplementedError

    async def undo(self, spare: S) -> None:
        """Take back what the spare holds (in the shared store it was made in)."""
        raise NotImplementedError

    def busy(self, key_id: str, took: bool) -> bool:
        """A request of the key ended now (`took`: on a spare): whether the key is busy and has
        no spare waiting, i.e. whether a spare for its next request is worth making."""
        now = self.clock()
        if len(self._last_end) >= MAX_KEYS:
            self._last_end.clear()
        last, self._last_end[key_id] = self._last_end.get(key_id), now
        if key_id in self._waiting:
            return False
        return took or (last is not None and now - last <= self.spare_s)

    def fresh(self, spare: S) -> bool:
        return self.clock() - spare.born <= self.spare_s

    def take(self, key_id: str) -> S | None:
        """The key's waiting spare, out of the table (the caller checks that it may use it)."""
        return self._waiting.pop(key_id, None)

    def wait(self, spare: S) -> None:
        """A new spare: it waits `spare_s` for its key's next request."""
        spare.born = self.clock()
        self.put_back(spare)

    def put_back(self, spare: S) -> None:
        """Waits for what is left of its time; undone if another waits already, if its time is
        up, or if the table is closing."""
        key_id = self.key_of(spare)
        if key_id in self._waiting or self._closing or not self.fresh(spare):
            self.undo_later(spare)
            return
        self._waiting[key_id] = spare
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.ensure_future(self._sweep())

    def undo_later(self, spare: S) -> None:
        self.in_background(self.undo(spare))

    def in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)  # a reference keeps it alive; close waits for it
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        """Undo every spare (the runtime is closing), and wait for the undoing under way."""
        self._closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        for spare in list(self._waiting.values()):
            self.undo_later(spare)
        self._waiting.clear()
        if self._background:
            await asyncio.wait(set(self._background), timeout=CLOSE_WAIT_S)

    async def _sweep(self) -> None:
        """Undo the spares nobody took in time; ends when none is left."""
        while self._waiting:
            await asyncio.sleep(self.spare_s / 2)
            for spare in [s for s in self._waiting.values() if not self.fresh(s)]:
                del self._waiting[self.key_of(spare)]
                self.undo_later(spare)
