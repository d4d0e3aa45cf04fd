"""SSE parsing over arbitrary chunk boundaries and line endings."""

from __future__ import annotations

from shared.transport.sse import SSEParser, frame


def test_events_split_across_chunks() -> None:
    p = SSEParser()
    assert p.feed(b'data: {"a"') == []
    assert p.feed(b":1}\n") == []
    assert p.feed(b"\ndata: [DONE]\n\n") == [(None, b'{"a":1}'), (None, b"[DONE]")]


def test_named_events_comments_and_crlf() -> None:
    p = SSEParser()
    raw = b': keep-alive\r\n\r\nevent: message_start\r\ndata: {"x":1}\r\n\r\nevent: ping\ndata: {}\n\n'
    assert p.feed(raw) == [("message_start", b'{"x":1}'), ("ping", b"{}")]


def test_multi_line_data_and_unterminated_tail() -> None:
    p = SSEParser()
    assert p.feed(b"data: a\ndata: b\n\ndata: tail") == [(None, b"a\nb")]
    assert p.close() == [(None, b"tail")]
    assert p.close() == []


def test_frame() -> None:
    assert frame({"a": 1}) == b'data: {"a":1}\n\n'
