"""Vendor streams cut anywhere (issue 10, defect 9): the exact bytes each fake upstream sends
(OpenAI, Anthropic, Gemini — Gemini frames with CRLF) are read through the real transport, then
fed to the SSE parser split at every position, byte by byte, behind a byte-order mark, and with
other line endings. The events — and what the dialect's translator makes of them — must not
depend on where the reads fell."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from shared.config import Settings
from shared.dialects import translator_class
from shared.providers import resolve_providers
from shared.transport.http1 import HttpClient, Limits
from shared.transport.sse import BOM, SSEParser
from tests.conftest import run_off_main_thread, upstream_env
from tests.fakes.server import FakeServer, Reply, ToolCall

Event = tuple[str | None, bytes]
# (provider row, native model, the pivot request): each asks for what makes a stream rich —
# reasoning, a tool call, usage.
CASES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "openai": ("openai", "gpt-4o", {"stream_options": {"include_usage": True}}),
    "anthropic": ("anthropic", "claude-sonnet-4-5", {"reasoning_effort": "low", "max_tokens": 4096}),
    "gemini": ("google", "gemini-2.5-flash", {"reasoning_effort": "low"}),
}
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]


def parse(pieces: Iterator[bytes] | list[bytes]) -> list[Event]:
    parser = SSEParser()
    events: list[Event] = []
    for piece in pieces:
        events += parser.feed(piece)
    return events + parser.close()


def translated(dialect: str, native: str, events: list[Event]) -> list[Any]:
    tr = translator_class(dialect)(
        model_id=f"x/{native}", native_id=native, supports=frozenset(), max_output_tokens=None
    )
    chunks = [c for event, data in events for c in tr.stream_event(event, data)] + tr.stream_end()
    # What the caller reads: the choices and usage (chunk ids, timestamps and the ids a translator
    # makes up for tool calls differ between translators, not between reads).
    seen = orjson.dumps([(c.get("choices"), c.get("usage")) for c in chunks]).decode()
    return orjson.loads(re.sub(r'"id":"call_[0-9a-f]+"', '"id":"call"', seen))


@pytest.fixture(scope="module")
def streams(fakes: dict[str, FakeServer]) -> dict[str, bytes]:
    return run_off_main_thread(lambda: fetch_streams(fakes))


async def fetch_streams(fakes: dict[str, FakeServer]) -> dict[str, bytes]:
    """The raw body of one stream per dialect, as the gateway's own client receives it."""
    endpoints = resolve_providers(Settings.from_env(upstream_env(fakes)))
    client = HttpClient(user_agent="t")
    out: dict[str, bytes] = {}
    try:
        for dialect, (provider, native, extra) in CASES.items():
            reply = Reply(text="Split me anywhere, please.", chunks=4, reasoning="Thinking it over.")
            fakes[dialect].script(native, reply, Reply(tool_calls=[ToolCall("lookup", {"q": "x y"})]))
            endpoint = endpoints[provider]
            for _ in range(2):  # a text answer with reasoning, then a tool call
                tr = translator_class(dialect)(
                    model_id=f"x/{native}",
                    native_id=native,
                    supports=endpoint.provider.supports,
                    max_output_tokens=None,
                )
                body = {
                    "model": native,
                    "messages": [{"role": "user", "content": "hi"}],
                    "tools": TOOLS,
                    **extra,
                }
                headers = {**endpoint.headers, "content-type": "application/json", **tr.extra_headers}
                resp = await client.post(
                    endpoint.base_url + tr.path(True),
                    headers,
                    orjson.dumps(tr.request(body, True)),
                    Limits(connect=2, read=5, total=10),
                )
                assert resp.status == 200, await resp.read()
                out[dialect] = out.get(dialect, b"") + await resp.read()
    finally:
        client.close()
    return out


@pytest.mark.parametrize("dialect", list(CASES))
async def test_every_split_position_gives_the_same_events(streams: dict[str, bytes], dialect: str) -> None:
    raw = streams[dialect]
    whole = parse([raw])
    assert len(whole) >= 6 and all(data for _, data in whole)
    if dialect == "gemini":
        assert b"\r\n\r\n" in raw  # the case that broke: a read ending between \r and \n
    for i in range(1, len(raw)):
        assert parse([raw[:i], raw[i:]]) == whole, f"split at byte {i}: {raw[max(0, i - 20) : i + 20]!r}"


@pytest.mark.parametrize("dialect", list(CASES))
async def test_byte_by_byte_behind_a_bom_and_with_any_line_ending(
    streams: dict[str, bytes], dialect: str
) -> None:
    raw = streams[dialect]
    _, native, _ = CASES[dialect]
    whole = parse([raw])
    reference = translated(dialect, native, whole)
    lf = raw.replace(b"\r\n", b"\n")
    variants = {
        "as sent": raw,
        "with a BOM": BOM + raw,
        "CRLF": lf.replace(b"\n", b"\r\n"),
        "CR": lf.replace(b"\n", b"\r"),
        "CRLF with a BOM": BOM + lf.replace(b"\n", b"\r\n"),
    }
    for name, variant in variants.items():
        events = parse(variant[i : i + 1] for i in range(len(variant)))
        assert events == whole, name
        assert translated(dialect, native, events) == reference, name


def test_a_bom_is_dropped_however_it_arrives_and_nothing_else_waits() -> None:
    raw = BOM + b"data: first\r\n\r\ndata: second\r\n\r\n"
    for i in range(1, 4):
        assert parse([raw[:i], raw[i:]]) == [(None, b"first"), (None, b"second")]
    p = SSEParser()
    assert p.feed(b"data: x\n\n") == [(None, b"x")]  # no BOM: the first event is not held back
    p = SSEParser()
    assert p.feed(b"\xef") == [] and p.feed(b"\xbb") == [] and p.feed(b"\xbfdata: y\n\n") == [(None, b"y")]
    # The BOM is the stream's first bytes only; later on those bytes belong to the data.
    assert parse([b"data: x\n\ndata: " + BOM + b"\n\n"]) == [(None, b"x"), (None, BOM)]
