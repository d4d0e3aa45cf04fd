"""The Lambda entry of every buffered function: Mangum, observed with Powertools.

`lambda_handler(app, "catalog")` is a `Mangum` (so the deploy tests and Lambda see the same
object as before) whose every invocation:
- logs one JSON line through the Powertools `Logger` (service, cold start, function name and
  request, correlation id = the gateway's request id, route, method, status, duration);
- emits CloudWatch EMF metrics through Powertools `Metrics`: Requests, Errors (status >= 500),
  Latency by function; and, through the observability seam, Tokens, Cost, Overhead and
  Failovers by function, model and provider.

Powertools is imported on the first invocation, not at import, so an import of the function
module (tests, `gatewayz serve`, the cold-start bench) never pays for it. Namespace and service
come from POWERTOOLS_METRICS_NAMESPACE and POWERTOOLS_SERVICE_NAME (template.yaml).
"""

from __future__ import annotations

import os
import time
from typing import Any

from mangum import Mangum

from shared import observe
from shared.observe import RequestEvent
from shared.observe.errors import configure_sentry
from shared.observe.errors import flush as flush_sentry
from shared.observe.logs import redact_handlers

NAMESPACE = "Gatewayz"


class EmfSink:
    """Inference figures per model and provider, one EMF blob per request (on Lambda, one
    request per invocation, so nothing accumulates between flushes)."""

    def __init__(self, function: str) -> None:
        self.function = function

    def request(self, event: RequestEvent) -> None:
        from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

        metrics = EphemeralMetrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", NAMESPACE))
        metrics.add_dimension("function", self.function)
        metrics.add_dimension("model", event.model)
        metrics.add_dimension("provider", event.provider or "none")
        metrics.add_metric("InputTokens", MetricUnit.Count, event.input_tokens)
        metrics.add_metric("OutputTokens", MetricUnit.Count, event.output_tokens)
        metrics.add_metric("CostUsd", MetricUnit.Count, float(event.cost))
        metrics.add_metric("OverheadMs", MetricUnit.Milliseconds, event.overhead_s * 1000)
        metrics.add_metric("Failovers", MetricUnit.Count, event.failovers)
        metrics.flush_metrics()

    def http(self, route: str, method: str, status: int, seconds: float, request_id: str) -> None:
        pass


class WebAdapterSink(EmfSink):
    """The streaming functions (uvicorn under the Lambda Web Adapter) have no handler to wrap:
    the seam's HTTP event gives them the same JSON log line and EMF blob as ObservedMangum."""

    def __init__(self, function: str) -> None:
        super().__init__(function)
        from aws_lambda_powertools import Logger

        self.logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", f"gatewayz-{function}"))
        self.cold = True

    def http(self, route: str, method: str, status: int, seconds: float, request_id: str) -> None:
        from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

        cold, self.cold = self.cold, False
        self.logger.set_correlation_id(request_id)
        self.logger.info(
            "request",
            extra={
                "cold_start": cold,
                "function_name": os.environ.get("AWS_LAMBDA_FUNCTION_NAME"),
                "request_id": request_id,
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
            },
        )
        metrics = EphemeralMetrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", NAMESPACE))
        metrics.add_dimension("function", self.function)
        metrics.add_metric("Requests", MetricUnit.Count, 1)
        metrics.add_metric("Errors", MetricUnit.Count, 1 if status >= 500 else 0)
        metrics.add_metric("LatencyMs", MetricUnit.Milliseconds, seconds * 1000)
        if cold:
            metrics.add_metric("ColdStart", MetricUnit.Count, 1)
        metrics.flush_metrics()


def observe_web_adapter(function: str) -> WebAdapterSink:
    redact_handlers()
    observe.configure_from_env()
    configure_sentry()
    return observe.install(WebAdapterSink(function))  # type: ignore[return-value]


class ObservedMangum(Mangum):
    def __init__(self, app: Any, function: str) -> None:
        super().__init__(app, lifespan="off")
        self.function = function
        self.cold = True
        self._tools: tuple[Any, Any] | None = None
        self.emf: observe.Sink | None = None

    def tools(self) -> tuple[Any, Any]:
        if self._tools is None:
            from aws_lambda_powertools import Logger, Metrics

            service = os.environ.get("POWERTOOLS_SERVICE_NAME", f"gatewayz-{self.function}")
            logger = Logger(service=service)
            metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", NAMESPACE))
            redact_handlers()  # the runtime's own handler writes the gateway's log lines to CloudWatch
            observe.configure_from_env()
            configure_sentry()
            self.emf = observe.install(EmfSink(self.function))
            self._tools = (logger, metrics)
        return self._tools

    def forget(self) -> None:
        """Back to a fresh execution environment (tests): cold again, Powertools set up anew."""
        if self.emf is not None:
            observe.uninstall(self.emf)
            self.emf = None
        self._tools = None
        self.cold = True

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        from aws_lambda_powertools.metrics import MetricUnit

        logger, metrics = self.tools()
        cold, self.cold = self.cold, False
        started = time.perf_counter()
        status = 500
        response: dict[str, Any] = {}
        try:
            response = super().__call__(event, context)
            status = int(response.get("statusCode", 500))
            return response
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000
            headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
            request_id = headers.get("x-request-id") or (event.get("requestContext") or {}).get("requestId")
            logger.set_correlation_id(request_id)
            http = (event.get("requestContext") or {}).get("http") or {}
            logger.info(
                "request",
                extra={
                    "cold_start": cold,
                    "function_name": getattr(context, "function_name", None),
                    "function_request_id": getattr(context, "aws_request_id", None),
                    "request_id": request_id,
                    "method": http.get("method") or event.get("httpMethod"),
                    "route": event.get("routeKey") or event.get("resource"),
                    "status": status,
                    "duration_ms": round(elapsed_ms, 2),
                },
            )
            metrics.add_dimension("function", self.function)
            metrics.add_metric("Requests", MetricUnit.Count, 1)
            metrics.add_metric("Errors", MetricUnit.Count, 1 if status >= 500 else 0)
            metrics.add_metric("LatencyMs", MetricUnit.Milliseconds, elapsed_ms)
            if cold:
                metrics.add_metric("ColdStart", MetricUnit.Count, 1)
            metrics.flush_metrics()
            flush_sentry()


def lambda_handler(app: Any, function: str) -> ObservedMangum:
    """The `handler` of functions/<function>.py (built at import, in Lambda's init phase: with
    SnapStart, that is when the snapshot is taken, so the restore hook is registered here)."""
    from shared import snapstart

    snapstart.register()
    return ObservedMangum(app, function)
