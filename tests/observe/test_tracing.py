"""OpenTelemetry (issue 16): an in-memory exporter receives the request span and one span per
upstream attempt with the `gen_ai.*` attributes; a failover shows two attempt spans; the caller's
W3C `traceparent` makes the request span part of its trace; no secret is in any span."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from shared import observe
from shared.observe.tracing import TraceSink
from tests.conftest import ADMIN_KEY, Account
from tests.fakes.openai_fake import OpenAIFake
from tests.fakes.server import Reply

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    sink = observe.install(TraceSink(provider))
    try:
        yield memory
    finally:
        observe.uninstall(sink)
        provider.shutdown()


def test_a_failover_is_a_request_span_with_two_attempt_spans(
    client: Any, account: Account, openai_fake: OpenAIFake, exporter: InMemorySpanExporter
) -> None:
    openai_fake.script("gpt-4o", Reply(status=503))
    openai_fake.script("openai/gpt-4o", Reply(text="second"))
    raw = client.chat.completions.with_raw_response.create(
        model="openai/gpt-4o",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"},
    )
    usage = raw.parse().usage
    spans: list[ReadableSpan] = list(exporter.get_finished_spans())
    requests = [s for s in spans if s.kind == SpanKind.SERVER]
    attempts = sorted((s for s in spans if s.kind == SpanKind.CLIENT), key=lambda s: s.start_time or 0)
    assert len(requests) == 1 and len(attempts) == 2
    request = requests[0]
    assert request.name == "chat openai/gpt-4o"
    assert f"{request.context.trace_id:032x}" == TRACE_ID  # joined the caller's trace
    assert request.parent is not None and f"{request.parent.span_id:016x}" == CALLER_SPAN
    attributes = dict(request.attributes or {})
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "openai/gpt-4o"
    assert attributes["gen_ai.system"] == "openrouter"
    assert attributes["gen_ai.usage.input_tokens"] == usage.prompt_tokens
    assert attributes["gen_ai.usage.output_tokens"] == usage.completion_tokens
    assert attributes["gatewayz.request_id"] == raw.headers["x-request-id"]
    first, second = attempts
    assert [dict(a.attributes or {})["gen_ai.system"] for a in attempts] == ["openai", "openrouter"]
    assert (
        dict(first.attributes or {})["error.type"] == "503" and first.status.status_code == StatusCode.ERROR
    )
    assert second.status.status_code != StatusCode.ERROR
    for attempt in attempts:
        assert attempt.parent is not None and attempt.parent.span_id == request.context.span_id
        assert request.start_time <= attempt.start_time <= attempt.end_time <= request.end_time  # type: ignore[operator]
    dumped = "".join(s.to_json() for s in spans)
    for secret in (account.key, ADMIN_KEY, "sk-test-openai", "sk-test-openrouter"):
        assert secret not in dumped


class OtlpReceiver:
    """A local OTLP/HTTP trace receiver: `POST /v1/traces` with a protobuf
    ExportTraceServiceRequest, as a collector takes it."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.bodies: list[bytes] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                ok = (
                    self.path == "/v1/traces" and self.headers.get("content-type") == "application/x-protobuf"
                )
                if ok:
                    receiver.bodies.append(body)
                self.send_response(200 if ok else 400)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def spans(self) -> list[Any]:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        out = []
        for body in self.bodies:
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    out.extend(scope.spans)
        return out


def test_the_standard_otel_environment_exports_to_an_otlp_receiver(
    client: Any, openai_fake: OpenAIFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.observe import tracing

    receiver = OtlpReceiver()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    observe.configure_from_env()  # what the server and the Lambda handlers call at start-up
    try:
        client.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": "hi"}])
    finally:
        tracing.reset()  # shuts the provider down: the batch is exported
        receiver.server.shutdown()
        receiver.server.server_close()
    spans = receiver.spans()
    assert [s.name for s in spans] == ["chat openai/gpt-4o"] * 2
    server, client_kind = 2, 3  # the OTLP protobuf's SpanKind values
    assert sorted(s.kind for s in spans) == [server, client_kind]
    request = next(s for s in spans if s.kind == server)
    attributes = {a.key: a.value for a in request.attributes}
    assert attributes["gen_ai.request.model"].string_value == "openai/gpt-4o"
    assert attributes["gen_ai.usage.output_tokens"].int_value > 0
