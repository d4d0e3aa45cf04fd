"""Server-sent events, in and out (https://html.spec.whatwg.org/multipage/server-sent-events.html).

`SSEParser` turns the byte chunks of an upstream response into (event, data) pairs, whatever the
chunk boundaries and line endings (`\\n`, `\\r\\n`). `frame` writes one `data:` frame.
"""

from __future__ import annotations

from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"


def frame(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


class SSEParser:
    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[tuple[str | None, bytes]]:
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
