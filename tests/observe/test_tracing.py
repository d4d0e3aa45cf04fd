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
