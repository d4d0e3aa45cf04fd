"""The upstream HTTP client: one pooled aiohttp session per process (per event loop).

aiohttp was chosen by measurement (FACTS.md, SPEC §1): in a bare pass-through on this machine it
served 3-5x the requests/s of an httpx.AsyncClient under concurrency. The session is created
lazily inside the running loop (never at import) and reused across requests and, on Lambda,
across warm invocations.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import aiohttp

from shared.config import Timeouts
from shared.dialects.base import UpstreamError

# Connection-level failures worth one quick retry on the same offer: nothing reached the upstream.
_CONNECT_ERRORS = (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError)


class UpstreamClient:
    def __init__(self, timeouts: Timeouts) -> None:
        self.timeouts = timeouts
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Streams: every socket read (the headers, each event) may wait `stream_idle`; a stream has
        # no total bound. Built once: a timeout object per request showed in profiles.
        self.stream_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeouts.connect, sock_read=timeouts.stream_idle
        )

    def session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            connector = aiohttp.TCPConnector(
                limit=0,  # bounded by the callers' concurrency, not by an arbitrary pool size
                ttl_dns_cache=300,
                enable_cleanup_closed=True,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),  # upstream APIs set no cookies we should keep
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
                headers={"user-agent": "gatewayz/0.1"},
            )
            self._loop = loop
        return self._session

    def call_timeout(self, remaining: float) -> aiohttp.ClientTimeout:
        """A whole (non-streamed) call: each read within `first_byte`, all of it within what is
        left of the request's deadline — aiohttp's own timers, no extra per-request ones."""
        return aiohttp.ClientTimeout(
            total=max(remaining, 0.001),
            sock_connect=self.timeouts.connect,
            sock_read=self.timeouts.first_byte,
        )

    async def post(
        self, url: str, headers: Mapping[str, str], body: bytes, *, limits: aiohttp.ClientTimeout
    ) -> aiohttp.ClientResponse:
        """Send one request; return the response once its headers arrived.

        Transport failures become `UpstreamError(None, kind=connect|timeout)`. A connection
        error is retried once at once: a pooled keep-alive socket the server had closed, or a
        refused connect, costs nothing to try again.
        """
        for attempt in (0, 1):
            try:
                return await self.session().post(url, data=body, headers=headers, timeout=limits)
            except _CONNECT_ERRORS as exc:
                if attempt:
                    raise UpstreamError(
                        None, f"could not connect: {type(exc).__name__}", kind="connect"
                    ) from None
            except (TimeoutError, aiohttp.ServerTimeoutError):
                raise UpstreamError(None, "no response before the timeout", kind="timeout") from None
            except aiohttp.ClientError as exc:
                raise UpstreamError(None, f"transport error: {type(exc).__name__}", kind="connect") from None
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


async def read_body(resp: aiohttp.ClientResponse) -> bytes:
    """The whole body of a response, with read failures classified as transport errors."""
    try:
        return await resp.read()
    except (TimeoutError, aiohttp.ServerTimeoutError):
        raise UpstreamError(None, "the upstream stopped answering mid-response", kind="timeout") from None
    except aiohttp.ClientError as exc:
        raise UpstreamError(
            None, f"transport error while reading: {type(exc).__name__}", kind="connect"
        ) from None
    finally:
        resp.release()


async def read_chunk(resp: aiohttp.ClientResponse) -> bytes:
    """The next bytes of a streamed body (b"" at its end); the session's `sock_read` bounds the wait."""
    try:
        return await resp.content.readany()
    except (TimeoutError, aiohttp.ServerTimeoutError):
        raise UpstreamError(None, "no stream data before the idle timeout", kind="timeout") from None
    except aiohttp.ClientError as exc:
        raise UpstreamError(None, f"stream broken: {type(exc).__name__}", kind="stream") from None
