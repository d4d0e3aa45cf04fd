"""What the gateway knows of one request while it is served: its ids, when it arrived, and the
upstream attempts made for it (shown to the caller in `x-gatewayz-attempts`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Attempt:
    provider: str
    model: str
    status: str
    ms: int
    started: float = 0.0  # perf_counter at the attempt's start (the trace spans of shared/observe)

    def header(self) -> str:
        return f"{self.provider}:{self.status}:{self.ms}"


@dataclass(slots=True)
class RequestContext:
    request_id: str  # echoed to the caller (theirs if they sent a sane one)
    started: float = field(default_factory=time.perf_counter)  # perf_counter at arrival
    billing_id: str = ""  # always server-generated: the key of holds, charges and records
    attempts: list[Attempt] = field(default_factory=list)
    breaker_note: str = ""  # set when every offer's breaker was open (x-gatewayz-breaker)
    upstream_s: float = 0.0  # time spent waiting on upstreams, for x-gatewayz-overhead-ms
    # The request's ASGI state: the gateway middleware leaves `deferred_ip` there when layer 1
    # is to be checked with the admission (`Limiter.admit`).
    state: dict[str, Any] | None = None
    # Chat history (shared.history.recorder): the `x-gatewayz-history` and
    # `x-gatewayz-session-id` headers as sent (checked by the pipeline), None when absent.
    history: str | None = None
    session_id: str | None = None

    def take_deferred_ip(self) -> str | None:
        return self.state.pop("deferred_ip", None) if self.state is not None else None

    def incoming_via(self) -> str | None:
        """The request's own `via` (it came through proxies), which upstream calls pass on."""
        return self.state.get("via") if self.state is not None else None

    def overhead_ms(self) -> str:
        return f"{max(0.0, (time.perf_counter() - self.started - self.upstream_s) * 1000):.2f}"

    def __post_init__(self) -> None:
        if not self.billing_id:
            self.billing_id = self.request_id

    def attempts_header(self) -> str:
        return ", ".join(self.attempt_headers())

    def attempt_headers(self) -> list[str]:
        return [a.header() for a in self.attempts]
