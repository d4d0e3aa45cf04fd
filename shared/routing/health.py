"""Passive health from real traffic, per (provider, model), kept in this process.

Routing reads it to put offers that keep failing behind healthy ones (a simple breaker: after
`threshold` consecutive failures an offer is "down" for `cooldown` seconds, then one request probes
it) and to sort by latency or throughput. The shared, cross-instance breaker of SPEC §3 moves this
state into the hot-state store when that store lands; the interface stays the same.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

_ALPHA = 0.2  # EWMA weight of the newest sample


@dataclass(slots=True)
class _Stats:
    latency_ms: float = 0.0  # EWMA of time to first byte
    tokens_per_s: float = 0.0
    failures: int = 0  # consecutive
    down_until: float = 0.0
    successes: int = 0
    total: int = 0


class HealthBook:
    def __init__(self, threshold: int = 3, cooldown: float = 30.0) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._stats: dict[tuple[str, str], _Stats] = {}

    def reset(self) -> None:
        self._stats.clear()

    def _get(self, provider: str, model: str) -> _Stats:
        key = (provider, model)
        stats = self._stats.get(key)
        if stats is None:
            stats = self._stats[key] = _Stats()
        return stats

    def success(
        self, provider: str, model: str, latency_ms: float, output_tokens: int = 0, seconds: float = 0.0
    ) -> None:
        s = self._get(provider, model)
        s.latency_ms = latency_ms if not s.total else (1 - _ALPHA) * s.latency_ms + _ALPHA * latency_ms
        if output_tokens and seconds > 0:
            rate = output_tokens / seconds
            s.tokens_per_s = rate if not s.tokens_per_s else (1 - _ALPHA) * s.tokens_per_s + _ALPHA * rate
        s.failures = 0
        s.down_until = 0.0
        s.successes += 1
        s.total += 1

    def failure(self, provider: str, model: str) -> None:
        s = self._get(provider, model)
        s.failures += 1
        s.total += 1
        if s.failures >= self.threshold:
            s.down_until = time.monotonic() + self.cooldown

    def is_down(self, provider: str, model: str) -> bool:
        s = self._stats.get((provider, model))
        return s is not None and s.down_until > time.monotonic()

    def latency(self, provider: str, model: str) -> float:
        s = self._stats.get((provider, model))
        return s.latency_ms if s and s.total else float("inf")

    def throughput(self, provider: str, model: str) -> float:
        s = self._stats.get((provider, model))
        return s.tokens_per_s if s else 0.0

    def snapshot(self) -> list[dict[str, object]]:
        now = time.monotonic()
        return [
            {
                "provider": p,
                "model": m,
                "status": "down" if s.down_until > now else "up",
                "latency_ms": round(s.latency_ms, 1),
                "success_rate": round(s.successes / s.total, 4) if s.total else None,
            }
            for (p, m), s in self._stats.items()
        ]
