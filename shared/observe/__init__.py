"""The observability seam (issue 16): every request ends here, and the enabled backends hear it.

Two events reach the seam:
- `http_finished`: every HTTP request (route template, method, status, seconds, request id), from the
  gateway middleware;
- `request_finished`: every metered inference request, from the meter when it settles or
  releases (model, provider, attempts, tokens, cost, upstream latency, TTFB, overhead).

Backends (`Sink`s) plug in behind it: Prometheus on the server (`shared.observe.prometheus`),
Powertools Logger and EMF metrics on Lambda (`shared.observe.lambda_handler`), a JSON log line
(`GATEWAYZ_REQUEST_LOG=1`). With none installed, each event costs one truth test of `SINKS`: the
record is built only when someone listens. The record carries ids, never a secret (no key, no
token, no body), so every backend may export all of it.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from shared.billing.ledger import RequestRecord
    from shared.routing.context import RequestContext

log = logging.getLogger("gatewayz.observe")


@dataclass(slots=True)
class AttemptEvent:
    provider: str
    model: str
    status: str  # the upstream's HTTP status, or the failure's label (timeout, connect, ...)
    seconds: float
    started: float = 0.0  # perf_counter at its start


@dataclass(slots=True)
class RequestEvent:
    """One inference request, as every backend sees it (no secret: ids, names, numbers)."""

    request_id: str
    route: str  # the endpoint (chat, completions, messages, responses)
    user_id: str
    key_id: str | None
    model: str
    provider: str | None
    status: str  # ok, error, partial...
    http_status: int
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost: Decimal = Decimal(0)
    latency_s: float = 0.0  # arrival to settlement
    upstream_s: float = 0.0  # time spent waiting on upstreams
    ttfb_s: float | None = None  # the served attempt's time to its first byte (streams)
    overhead_s: float = 0.0  # latency minus upstream time: what the gateway added
    stream: bool = False
    attempts: list[AttemptEvent] = field(default_factory=list)
    started: float = 0.0  # perf_counter at the request's arrival
    traceparent: str | None = None  # the caller's W3C trace context, if it sent one

    @property
    def failovers(self) -> int:
        return max(0, len(self.attempts) - 1)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["cost"] = str(self.cost)
        out["failovers"] = self.failovers
        out.pop("started")
        for attempt in out["attempts"]:
            attempt.pop("started")
        return out


class Sink(Protocol):
    def request(self, event: RequestEvent) -> None: ...

    def http(self, route: str, method: str, status: int, seconds: float, request_id: str) -> None: ...


SINKS: list[Sink] = []


def install(sink: Sink) -> Sink:
    if sink not in SINKS:
        SINKS.append(sink)
    return sink


def uninstall(sink: Sink) -> None:
    if sink in SINKS:
        SINKS.remove(sink)


def _each(call: str, *args: Any) -> None:
    for sink in list(SINKS):
        try:
            getattr(sink, call)(*args)
        except Exception:  # a backend's failure must never fail the request it observes
            log.exception("observability backend %s failed", type(sink).__name__)


def http_finished(route: str, method: str, status: int, started: float, request_id: str) -> None:
    if SINKS:
        _each("http", route, method, status, time.perf_counter() - started, request_id)


def request_finished(
    ctx: RequestContext, record: RequestRecord, cost: Decimal, http_status: int, stream: bool
) -> None:
    """Called by the meter with what it wrote to the ledger; builds the event only when listened to."""
    if not SINKS:
        return
    latency = time.perf_counter() - ctx.started
    attempts = [AttemptEvent(a.provider, a.model, a.status, a.ms / 1000, a.started) for a in ctx.attempts]
    served = [a for a in attempts if a.status == "200"]
    event = RequestEvent(
        request_id=ctx.request_id,
        route=record.endpoint,
        user_id=record.user_id,
        key_id=record.key_id,
        model=record.model,
        provider=record.provider,
        status=record.status,
        http_status=http_status,
        input_tokens=record.input_tokens,
        output_tokens=record.output_tokens,
        cached_tokens=record.cache_read_tokens,
        reasoning_tokens=record.reasoning_tokens,
        cost=cost,
        latency_s=latency,
        upstream_s=ctx.upstream_s,
        # A stream's attempt ends at its first chunk: its duration is the time to first byte.
        ttfb_s=served[-1].seconds if stream and served else None,
        overhead_s=max(0.0, latency - ctx.upstream_s),
        stream=stream,
        attempts=attempts,
        started=ctx.started,
        traceparent=ctx.state.get("traceparent") if ctx.state is not None else None,
    )
    _each("request", event)


class LogSink:
    """One JSON line per inference request on the `gatewayz.request` logger (GATEWAYZ_REQUEST_LOG=1)."""

    def __init__(self) -> None:
        self.logger = logging.getLogger("gatewayz.request")

    def request(self, event: RequestEvent) -> None:
        # The record's fields ride as `extra=`: a field each in `--log-format json`, one JSON
        # object after the message in text (shared/observe/logs.py).
        self.logger.info("inference request", extra=event.as_dict())

    def http(self, route: str, method: str, status: int, seconds: float, request_id: str) -> None:
        pass


_LOG_SINK = LogSink()


def configure_from_env() -> None:
    """The backends the environment asks for (idempotent; the server and Lambda call it)."""
    if os.environ.get("GATEWAYZ_REQUEST_LOG", "").lower() in ("1", "true", "yes"):
        install(_LOG_SINK)
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        from shared.observe.tracing import otlp_sink

        install(otlp_sink())
