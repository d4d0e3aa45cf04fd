"""Which admissions are near certain: the pipeline sends those alongside the credit reservation.

A paid request needs the limiter's admission (a hot-store round trip) and a credit hold (a
database round trip). In turn, a request the limiter refuses never reaches the database the
limiter protects; at once, the request waits for one round trip instead of two (measured in
`bench.pg_added`). This instance remembers, per key, how much room its last admission left in every
rate limit it checked, and how many of the user's requests it has in flight; when there is room
for two more such requests and the in-flight ones fill at most half the user's concurrency, the
next admission will all but surely pass, and the pipeline overlaps it with the reservation.

A misjudgement (another instance spent the room meanwhile) costs one hold written and dropped. A
refusal leaves no room on record: the key's next requests take turns again, each admission first,
until one leaves room; so a flood of refused requests reaches the database at most once per key
and instance. A record older than a few seconds says nothing (others may have spent since).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from shared.hot.gcra import Decision

FRESH_S = 10.0  # how long an admission's room speaks for the next one
MAX_KEYS = 50_000  # the records kept: beyond that, forget them all (the next requests take turns)


class Forecast:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._room: dict[str, tuple[float, int, int]] = {}  # key id → (when, requests, tokens) left
        self._in_flight: dict[str, int] = {}  # user id → this instance's admitted requests not finished

    def admits(self, key_id: str, user_id: str, calls: int, tokens: int, concurrency: int | None) -> bool:
        """Whether an admission of `calls` requests and `tokens` tokens for the key is near certain."""
        seen = self._room.get(key_id)
        if seen is None or self.clock() - seen[0] > FRESH_S:
            return False
        _, requests_left, tokens_left = seen
        if requests_left < 2 * calls or tokens_left < 2 * tokens:
            return False
        return concurrency is None or self._in_flight.get(user_id, 0) + calls <= concurrency // 2

    def admitted(self, key_id: str, user_id: str, decision: Decision) -> None:
        """What an admission decided: its room, and (when allowed) one more request in flight."""
        if len(self._room) >= MAX_KEYS:
            self._room.clear()
        if not decision.allowed:
            self._room[key_id] = (self.clock(), 0, 0)
            return
        requests = tokens = 1 << 62  # no limit of that kind: unlimited room
        for state in decision.states:
            if state.rule.kind == "tokens":
                tokens = min(tokens, state.remaining)
            else:
                requests = min(requests, state.remaining)
        self._room[key_id] = (self.clock(), requests, tokens)
        self._in_flight[user_id] = self._in_flight.get(user_id, 0) + 1

    def alone(self, user_id: str) -> bool:
        """Whether the user has at most one request admitted here and not finished (the one
        asking, at its end): the lone-request rule of spare holds and spare admissions."""
        return self._in_flight.get(user_id, 0) <= 1

    def finished(self, user_id: str) -> None:
        left = self._in_flight.get(user_id, 0) - 1
        if left > 0:
            self._in_flight[user_id] = left
        else:
            self._in_flight.pop(user_id, None)
