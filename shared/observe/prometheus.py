"""The Prometheus backend of the observability seam and the server's `GET /metrics`.

Enabled on the server by `GATEWAYZ_METRICS=1` or by setting `GATEWAYZ_METRICS_TOKEN` (then
`/metrics` wants `Authorization: Bearer <token>`). prometheus_client is imported only then, so a
server without metrics and every Lambda function never load it. Labels are bounded sets: route
templates, catalog model ids, provider ids, statuses — never a user, key or request id.
"""

from __future__ import annotations

import hmac
import os

from fastapi import APIRouter, Request
from starlette.responses import Response

from shared.observe import RequestEvent, install

# Seconds: from a cache-hot 5 ms answer to a long generation.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# The gateway's own share of a request: sub-millisecond when all is well.
OVERHEAD_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)

# Every series this module exports (infra/grafana and the tests read this list).
SERIES = (
    "gatewayz_http_requests_total",
    "gatewayz_http_request_duration_seconds",
    "gatewayz_rate_limited_total",
    "gatewayz_inference_requests_total",
    "gatewayz_upstream_attempts_total",
    "gatewayz_upstream_latency_seconds",
    "gatewayz_upstream_ttfb_seconds",
    "gatewayz_failovers_total",
    "gatewayz_tokens_total",
    "gatewayz_cost_usd_total",
    "gatewayz_overhead_seconds",
)


def enabled() -> bool:
    return bool(metrics_token()) or os.environ.get("GATEWAYZ_METRICS", "").lower() in ("1", "true", "yes")


def metrics_token() -> str:
    return os.environ.get("GATEWAYZ_METRICS_TOKEN", "")


class PrometheusSink:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "gatewayz_http_requests", "HTTP requests by route template, method and status",
            ["route", "method", "status"], registry=r,
        )  # fmt: skip
        self.http_duration = Histogram(
            "gatewayz_http_request_duration_seconds", "HTTP request duration (to the end of the response)",
            ["route", "method"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.rate_limited = Counter(
            "gatewayz_rate_limited", "Requests refused by the rate limiter (429)", ["route"], registry=r
        )
        self.inference = Counter(
            "gatewayz_inference_requests", "Metered inference requests by outcome",
            ["endpoint", "model", "provider", "status"], registry=r,
        )  # fmt: skip
        self.attempts = Counter(
            "gatewayz_upstream_attempts", "Upstream attempts by provider, model and upstream status",
            ["provider", "model", "status"], registry=r,
        )  # fmt: skip
        self.upstream = Histogram(
            "gatewayz_upstream_latency_seconds", "Upstream attempt duration (to the first chunk for a stream)",
            ["provider", "model"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.ttfb = Histogram(
            "gatewayz_upstream_ttfb_seconds", "Time to the first streamed chunk of the served attempt",
            ["provider", "model"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.failovers = Counter(
            "gatewayz_failovers", "Attempts beyond the first (failovers)", ["endpoint", "model"], registry=r
        )
        self.tokens = Counter(
            "gatewayz_tokens", "Tokens billed, by kind (input, output, cached, reasoning)",
            ["model", "provider", "kind"], registry=r,
        )  # fmt: skip
        self.cost = Counter("gatewayz_cost_usd", "Credits charged, in USD", ["model", "provider"], registry=r)
        self.overhead = Histogram(
            "gatewayz_overhead_seconds", "Gateway overhead: request latency minus upstream time",
            ["endpoint"], buckets=OVERHEAD_BUCKETS, registry=r,
        )  # fmt: skip

    def http(self, route: str, method: str, status: int, seconds: float, request_id: str) -> None:
        self.http_requests.labels(route, method, str(status)).inc()
        self.http_duration.labels(route, method).observe(seconds)
        if status == 429:
            self.rate_limited.labels(route).inc()

    def request(self, event: RequestEvent) -> None:
        provider = event.provider or "none"
        self.inference.labels(event.route, event.model, provider, event.status).inc()
        for attempt in event.attempts:
            self.attempts.labels(attempt.provider, attempt.model, attempt.status).inc()
            self.upstream.labels(attempt.provider, attempt.model).observe(attempt.seconds)
        if event.ttfb_s is not None:
            self.ttfb.labels(provider, event.model).observe(event.ttfb_s)
        if event.failovers:
            self.failovers.labels(event.route, event.model).inc(event.failovers)
        for kind, count in (
            ("input", event.input_tokens),
            ("output", event.output_tokens),
            ("cached", event.cached_tokens),
            ("reasoning", event.reasoning_tokens),
        ):
            if count:
                self.tokens.labels(event.model, provider, kind).inc(count)
        if event.cost:
            self.cost.labels(event.model, provider).inc(float(event.cost))
        self.overhead.labels(event.route).observe(event.overhead_s)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


_SINK: PrometheusSink | None = None


def sink() -> PrometheusSink:
    """The process's one Prometheus sink, installed behind the seam on first use."""
    global _SINK
    if _SINK is None:
        _SINK = PrometheusSink()
    install(_SINK)
    return _SINK


def reset() -> None:
    """Forget every series (tests): the next `sink()` starts from zero."""
    global _SINK
    from shared.observe import uninstall

    if _SINK is not None:
        uninstall(_SINK)
    _SINK = None


def metrics_router() -> APIRouter:
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        token = metrics_token()
        if token:
            presented = request.headers.get("authorization", "")
            if not hmac.compare_digest(presented.encode(), f"Bearer {token}".encode()):
                return Response(
                    b'{"error":{"message":"/metrics needs the metrics token.","type":"authentication_error"}}',
                    status_code=401,
                    media_type="application/json",
                    headers={"www-authenticate": "Bearer"},
                )
        body, content_type = sink().render()
        return Response(body, media_type=content_type.split(";")[0], headers={"content-type": content_type})

    return router
