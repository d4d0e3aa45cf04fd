"""The upstream client as the pipeline uses it: one pooled HTTP/1.1 client per process (per event
loop), its timeouts, and its failures classified as `UpstreamError`s.

The HTTP client is chosen by measurement (SPEC §1): httpx served 3-5x fewer requests/s than
aiohttp in a bare pass-through; in the full pipeline aiohttp itself was then ~18 % of the
gateway's CPU, and `shared.transport.http1` does the same work for about a third of that. The client is
created lazily inside the running loop (never at import) and reused across requests and, on
Lambda, across warm invocations.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from shared.config import Timeouts
from shared.transport.errors import UpstreamError
from shared.transport.http1 import Disconnected, HttpClient, Limits, ReadTimeout, Refused, Response

USER_AGENT = "gatewayz/0.1"


class UpstreamClient:
    def __init__(self, timeouts: Timeouts) -> None:
        self.timeouts = timeouts
        self._client: HttpClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Streams: every wait for bytes (the headers, each event) may last `stream_idle`; a stream
        # has no total bound.
        self.stream_timeout = Limits(connect=timeouts.connect, read=timeouts.stream_idle)

    def client(self) -> HttpClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            # Connections belong to the loop that opened them (a new loop per test, or per
            # Mangum invocation when no loop survives): start over with a new pool.
            self._client = HttpClient(user_agent=USER_AGENT)
            self._loop = loop
        return self._client

    def waiting(self) -> int:
        """Upstream responses in progress (streams included): requests with nothing to do here."""
        return self._client.waiting if self._client is not None else 0

    def call_timeout(self, remaining: float) -> Limits:
        """A whole (non-streamed) call: each wait for bytes within `first_byte`, all of it within
        what is left of the request's deadline."""
        return Limits(
            connect=self.timeouts.connect, read=self.timeouts.first_byte, total=max(remaining, 0.001)
        )

    async def post(self, url: str, headers: Mapping[str, str], body: bytes, *, limits: Limits) -> Response:
        """Send one request; return the response once its headers arrived.

        Transport failures become `UpstreamError(None, kind=connect|timeout)`. A failed connect,
        or a connection dropped before any answer, is retried once at once: nothing reached the
        upstream's model, and trying again costs nothing.
        """
        for attempt in (0, 1):
            try:
                return await self.client().post(url, headers, body, limits)
            except (Refused, Disconnected) as exc:
                if attempt:
                    raise UpstreamError(None, f"could not connect: {exc}", kind="connect") from None
            except ReadTimeout:
                raise UpstreamError(None, "no response before the timeout", kind="timeout") from None
            except ValueError as exc:  # a URL or header the client refuses to send
                raise UpstreamError(None, f"bad upstream request: {exc}", kind="connect") from None
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None


async def read_body(resp: Response) -> bytes:
    """The whole body of a response, with read failures classified as transport errors."""
    try:
        return await resp.read()
    except ReadTimeout:
        raise UpstreamError(None, "the upstream stopped answering mid-response", kind="timeout") from None
    except Disconnected as exc:
        raise UpstreamError(None, f"transport error while reading: {exc}", kind="connect") from None
    finally:
        resp.release()


async def read_chunk(resp: Response) -> bytes:
    """The next bytes of a streamed body (b"" at its end); the read limit bounds the wait."""
    try:
        return await resp.readany()
    except ReadTimeout:
        raise UpstreamError(None, "no stream data before the idle timeout", kind="timeout") from None
    except Disconnected as exc:
        raise UpstreamError(None, f"stream broken: {exc}", kind="stream") from None
