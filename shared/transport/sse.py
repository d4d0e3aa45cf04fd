"""Server-sent events, in and out (https://html.spec.whatwg.org/multipage/server-sent-events.html).

`SSEParser` turns the byte chunks of an upstream response into (event, data) pairs, whatever the
chunk boundaries and line endings (`\\n`, `\\r\\n`, `\\r`) — a CRLF may arrive split across two
reads, its `\\r` ending one and its `\\n` starting the next (Gemini frames with CRLF) — and with
the stream's leading byte-order mark, if any, dropped as the standard says. `frame` writes one
`data:` frame.
"""

from __future__ import annotations

from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"


def frame(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


BOM = b"\xef\xbb\xbf"


class SSEParser:
    __slots__ = ("_buf", "_cr", "_started")

    def __init__(self) -> None:
        self._buf = b""
        self._cr = False  # the last chunk ended with \r: a \n that starts the next one is its pair
        self._started = False  # past the stream's first bytes (where a BOM may be)

    def feed(self, chunk: bytes) -> list[tuple[str | None, bytes]]:
        if not chunk:
            return []
        if not self._started:
            head = self._buf + chunk  # nothing is parsed before the first three bytes are known
            if len(head) < len(BOM) and BOM.startswith(head):
                self._buf = head
                return []
            self._started = True
            self._buf = b""
            chunk = head[len(BOM) :] if head.startswith(BOM) else head
        if self._cr and chunk[:1] == b"\n":
            chunk = chunk[1:]  # the second half of a CRLF whose \r ended the last chunk
        self._cr = chunk[-1:] == b"\r"
        buf = self._buf + chunk if self._buf else chunk
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        events: list[tuple[str | None, bytes]] = []
        start = 0
        while True:
            end = buf.find(b"\n\n", start)
            if end < 0:
                break
            block = buf[start:end]
            start = end + 2
            if block:
                parsed = _parse_block(block)
                if parsed is not None:
                    events.append(parsed)
        self._buf = buf[start:]
        return events

    def close(self) -> list[tuple[str | None, bytes]]:
        """Whatever a stream left without a final blank line."""
        rest, self._buf = self._buf.strip(), b""
        self._started = self._cr = False
        parsed = _parse_block(rest) if rest else None
        return [parsed] if parsed is not None else []


def _parse_block(block: bytes) -> tuple[str | None, bytes] | None:
    if block.startswith(b"data: ") and b"\n" not in block:  # the common case, one data line
        return None, block[6:]
    event: str | None = None
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if not line or line.startswith(b":"):
            continue  # comment / keep-alive
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            event = value.decode("utf-8", "replace")
    if not data and event is None:
        return None
    return event, b"\n".join(data)
