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
import hashlib
from collections.abc import Mapping

from shared.config import Timeouts
from shared.transport.errors import UpstreamError
from shared.transport.http1 import Disconnected, HttpClient, Limits, ReadTimeout, Refused, Response
from shared.transport.proxies import ProxyConfig

USER_AGENT = "gatewayz/0.1"


def loop_mark(key_secret: str) -> str:
    """This deployment's name in the `via` header of its upstream calls: the same on every instance
    that shares the key secret (and so the database), different between deployments, and telling
    nothing about the secret. A request that arrives carrying it was sent by this deployment to
    itself (SPEC §1: `OPENAI_BASE_URL` is also the OpenAI SDK's variable)."""
    digest = hashlib.sha256(b"gatewayz loop mark\0" + key_secret.encode()).hexdigest()
    return f"gatewayz-{digest[:12]}"


class UpstreamClient:
    def __init__(
        self, timeouts: Timeouts, proxies: ProxyConfig | None = None, mark: str | None = None
    ) -> None:
        self.timeouts = timeouts
        self.proxies = proxies
        self.mark = mark  # see `loop_mark`; every upstream call says `via: 1.1 <mark>`
        self.via = f"1.1 {mark}" if mark else None
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
            self._client = HttpClient(user_agent=USER_AGENT, proxies=self.proxies, via=self.via)
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

    def forwarded_via(self, incoming: str | None) -> str | None:
        """The `via` of an upstream call made for a request that came through proxies (`incoming`
        is its own `via`): theirs, then ours, so that a loop through other gateways comes back
        marked (RFC 9110 §7.6.3). None: the client's default (ours alone)."""
        if not incoming or not self.via:
            return None
        return f"{incoming}, {self.via}"

    async def post(self, url: str, headers: Mapping[str, str], body: bytes, *, limits: Limits) -> Response:
        """Send one request; return the response once its headers arrived.

        Transport failures become `UpstreamError(None, kind=connect|timeout)`. Only a failed
        connect is tried again (once, at once): nothing was sent. A connection lost after the
        request was written is never retried here — the upstream may have received it, and it is
        paid for (failover to another offer is the pipeline's decision).
        """
        for attempt in (0, 1):
            try:
                return await self.client().post(url, headers, body, limits)
            except Refused as exc:
                if attempt:
                    raise UpstreamError(None, f"could not connect: {exc}", kind="connect") from None
            except Disconnected as exc:
                raise UpstreamError(None, f"connection lost: {exc}", kind="connect") from None
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
