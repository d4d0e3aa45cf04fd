"""AWS event-stream framing in, as (event, payload) pairs: the streamed body of Bedrock's
ConverseStream (https://docs.aws.amazon.com/AmazonS3/latest/API/RESTSelectObjectAppendix.html
describes the binary format: prelude with both lengths and its CRC32, headers, payload, message
CRC32).

The frames are decoded by botocore's own `EventStreamBuffer` — the parser boto3 uses, CRC checks
included — whatever the chunk boundaries. A message whose `:message-type` is `event` becomes
(`:event-type`, payload); an `exception` becomes (`exception:<:exception-type>`, payload); an
`error` (`:error-code`) likewise. A frame that fails its checks is a protocol error. botocore is
imported when the first Bedrock stream opens, never at start-up.
"""

from __future__ import annotations

from typing import Any

import orjson

from shared.transport.errors import UpstreamError


class EventStreamParser:
    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        from botocore.eventstream import EventStreamBuffer

        self._buffer: Any = EventStreamBuffer()

    def feed(self, chunk: bytes) -> list[tuple[str | None, bytes]]:
        from botocore.eventstream import ParserError

        if not chunk:
            return []
        self._buffer.add_data(chunk)
        out: list[tuple[str | None, bytes]] = []
        try:
            for message in self._buffer:
                out.append(_event(message.headers, message.payload))
        except ParserError as exc:
            raise UpstreamError(None, f"malformed event-stream frame: {exc}", kind="protocol") from None
        return out

    def close(self) -> list[tuple[str | None, bytes]]:
        """A stream that ends inside a frame leaves nothing usable: its bytes are dropped (the
        pipeline then reports the stream as cut short unless the answer had already ended)."""
        return []


def _event(headers: dict[str, Any], payload: bytes) -> tuple[str | None, bytes]:
    kind = headers.get(":message-type")
    if kind == "exception":
        return f"exception:{headers.get(':exception-type') or 'unknown'}", payload
    if kind == "error":  # the text is in a header, the payload empty
        message = orjson.dumps({"message": str(headers.get(":error-message") or "")})
        return f"exception:{headers.get(':error-code') or 'unknown'}", message
    return headers.get(":event-type"), payload
