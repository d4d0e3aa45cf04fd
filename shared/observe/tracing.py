"""OpenTelemetry traces, opt-in by `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`): one
span per inference request and one child span per upstream attempt, with the `gen_ai.*` semantic
conventions; the request span joins the caller's trace when it sent a W3C `traceparent`.

The spans are written when the request settles, from the times the seam carries (arrival, each
attempt's start and duration): nothing runs on the request path, and a request that fails over
shows one attempt span per provider tried. The OTLP/HTTP exporter reads the standard OTEL_*
variables (endpoint, headers, timeout); the SDK is imported only when tracing is on.
"""

from __future__ import annotations

import os
import time
from typing import Any

from shared.observe import RequestEvent

SCOPE = "gatewayz"


class TraceSink:
    def __init__(self, provider: Any) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer(SCOPE)

    def http(self, route: str, method: str, status: int, seconds: float, request_id: str) -> None:
        pass

    def request(self, event: RequestEvent) -> None:
        from opentelemetry.trace import SpanKind, Status, StatusCode
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        # perf_counter seconds to epoch nanoseconds (span times are wall-clock).
        offset = time.time_ns() - time.perf_counter_ns()

        def ns(perf: float) -> int:
            return int(perf * 1e9) + offset

        parent = (
            TraceContextTextMapPropagator().extract({"traceparent": event.traceparent})
            if event.traceparent
            else None
        )
        operation = "chat"
        request = self.tracer.start_span(
            f"{operation} {event.model}",
            context=parent,
            kind=SpanKind.SERVER,
            start_time=ns(event.started),
            attributes={
                "gen_ai.operation.name": operation,
                "gen_ai.request.model": event.model,
                "gen_ai.response.model": event.model,
                "gen_ai.system": event.provider or "none",
                "gen_ai.usage.input_tokens": event.input_tokens,
                "gen_ai.usage.output_tokens": event.output_tokens,
                "gatewayz.request_id": event.request_id,
                "gatewayz.endpoint": event.route,
                "gatewayz.cost_usd": str(event.cost),
                "gatewayz.attempts": len(event.attempts),
                "gatewayz.overhead_ms": round(event.overhead_s * 1000, 3),
                "http.response.status_code": event.http_status,
            },
        )
        from opentelemetry.trace import set_span_in_context

        inside = set_span_in_context(request)
        for attempt in event.attempts:
            span = self.tracer.start_span(
                f"{operation} {attempt.model}",
                context=inside,
                kind=SpanKind.CLIENT,
                start_time=ns(attempt.started),
                attributes={
                    "gen_ai.operation.name": operation,
                    "gen_ai.system": attempt.provider,
                    "gen_ai.request.model": attempt.model,
                    "gatewayz.upstream_status": attempt.status,
                },
            )
            if attempt.status != "200":
                span.set_attribute("error.type", attempt.status)
                span.set_status(Status(StatusCode.ERROR))
            span.end(end_time=ns(attempt.started + attempt.seconds))
        if event.http_status >= 500:
            request.set_status(Status(StatusCode.ERROR))
        request.end()


_SINK: TraceSink | None = None


def otlp_sink() -> TraceSink:
    """The process's OTLP-exporting sink (a batch processor: export happens off the request)."""
    global _SINK
    if _SINK is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        service = os.environ.get("OTEL_SERVICE_NAME", "gatewayz")
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        _SINK = TraceSink(provider)
    return _SINK


def reset() -> None:
    """Export what is pending and forget the OTLP sink (tests, or a reconfiguration)."""
    global _SINK
    from shared.observe import uninstall

    if _SINK is not None:
        uninstall(_SINK)
        _SINK.provider.shutdown()
    _SINK = None
