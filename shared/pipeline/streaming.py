"""Streamed chat (SPEC §2.1): SSE chunks forwarded as they arrive.

An attempt counts as served only once the upstream produced its first chunk: until then any
failure fails over like a non-streamed call. After the first byte has gone to the caller a failure
becomes an SSE `error` frame followed by `[DONE]`. The upstream connection is closed when the
caller goes away, and usage is always captured (asked of the upstream, or estimated) so that the
stream can be billed for what was generated.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from shared.dialects.base import ChatTranslator, Usage
from shared.errors import GatewayError, UpstreamFailed
from shared.history.recorder import Recorder
from shared.limits.limiter import Admission
from shared.pipeline.call import Call, fan_out_count, gateway_headers, prepare
from shared.pipeline.frontend import FrontEnd
from shared.pipeline.meter import Meter, estimate_usage, price, settle_and_finish
from shared.routing.context import RequestContext
from shared.routing.failover import failover
from shared.routing.plan import Candidate
from shared.runtime import Runtime
from shared.transport import http1
from shared.transport.errors import UpstreamError
from shared.transport.upstream import read_body, read_chunk


class UpstreamStream:
    """One open upstream stream, read event by event through its translator."""

    def __init__(self, translator: ChatTranslator, resp: http1.Response) -> None:
        self.tr = translator
        self.resp = resp
        self.parser = translator.stream_parser()
        self.ended = False
        self.saw_finish = False
        self.pending: list[dict[str, Any]] = []
        self._error: UpstreamError | None = None

    async def next(self) -> list[Any]:
        """The next chunks (possibly none); raises an error only after the chunks before it."""
        if self._error is not None:
            raise self._error
        raw = await read_chunk(self.resp)
        events = self.parser.feed(raw) if raw else self.parser.close()
        chunks: list[Any] = []
        try:
            for event, data in events:
                chunks.extend(self.tr.stream_event(event, data))
            if not raw:
                chunks.extend(self.tr.stream_end())
        except UpstreamError as exc:
            self._error = exc
        if not raw:
            self.ended = True
            if self._error is None and not (
                self.tr.stream_done or self.saw_finish or self.tr.finishes(chunks)
            ):
                self._error = UpstreamError(
                    None, "the upstream closed the stream before its end", kind="stream"
                )
        if self.tr.finishes(chunks):
            self.saw_finish = True
        if not chunks and self._error is not None:
            raise self._error
        return chunks

    async def first(self) -> None:
        """Read until the first chunk (the moment the caller would see a byte)."""
        while not self.pending:
            if self.ended:
                raise self._error or UpstreamError(
                    502, "the upstream stream ended without content", kind="protocol"
                )
            self.pending = await self.next()

    def close(self) -> None:
        self.resp.close()  # drops the connection: a half-read stream must not go back to the pool


async def _open(rt: Runtime, candidate: Candidate, call: Call, fan_out: bool) -> UpstreamStream:
    prep = prepare(candidate, call, stream=True, fan_out=fan_out)
    await rt.cloud.authorize(candidate.endpoint, prep.url, prep.headers, prep.body)
    resp = await rt.http.post(prep.url, prep.headers, prep.body, limits=rt.http.stream_timeout)
    if resp.status >= 300:
        raise prep.translator.error(resp.status, resp.headers, await read_body(resp))
    stream = UpstreamStream(prep.translator, resp)
    try:
        await stream.first()
    except BaseException:
        stream.close()
        raise
    return stream


async def _open_all(rt: Runtime, candidate: Candidate, call: Call, copies: int) -> list[UpstreamStream]:
    if not copies:
        return [await _open(rt, candidate, call, False)]
    results = await asyncio.gather(
        *(_open(rt, candidate, call, True) for _ in range(copies)), return_exceptions=True
    )
    failure = next((r for r in results if isinstance(r, BaseException)), None)
    if failure is not None:
        for r in results:
            if isinstance(r, UpstreamStream):
                r.close()
        raise failure
    return [r for r in results if isinstance(r, UpstreamStream)]


async def _chunks(streams: list[UpstreamStream]) -> AsyncIterator[list[Any]]:
    """The chunks of one stream, or of n fanned-out streams merged with their choices re-indexed."""
    if len(streams) == 1:
        s = streams[0]
        pending, s.pending = s.pending, []
        yield pending
        while not s.ended:
            yield await s.next()
        return
    queue: asyncio.Queue[tuple[int, list[dict[str, Any]] | UpstreamError | None]] = asyncio.Queue()
    stream_id = streams[0].tr.response_id

    async def pump(index: int, s: UpstreamStream) -> None:
        try:
            pending, s.pending = s.pending, []
            await queue.put((index, pending))
            while not s.ended:
                await queue.put((index, await s.next()))
            await queue.put((index, None))
        except UpstreamError as exc:
            await queue.put((index, exc))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        live = len(streams)
        while live:
            index, item = await queue.get()
            if item is None:
                live -= 1
            elif isinstance(item, UpstreamError):
                raise item
            else:
                for chunk in item:
                    chunk["id"] = stream_id
                    for choice in chunk.get("choices") or ():
                        choice["index"] = index
                yield item
    finally:
        for task in tasks:
            task.cancel()


class SSEResponse(Response):
    """A lean streaming response for SSE.

    Each item of `body` is sent as one body message: the pipeline joins the frames of one
    upstream read, so events that arrived together leave together and nothing waits to be
    batched. A watcher notices the caller hanging up and calls `on_disconnect` (which closes the
    upstream, ending `body`); the body iterator is always closed, so it settles even then. One
    plain task per stream, where Starlette's StreamingResponse runs an anyio task group.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        body: AsyncIterator[bytes],
        headers: dict[str, str],
        on_disconnect: Callable[[], None],
        after: Callable[[], Awaitable[None]] | None = None,
        hold_close: bool = False,
    ) -> None:
        self.body_iterator = body
        self.on_disconnect = on_disconnect
        # Awaited once the last event is sent (the chat history write, shared.history.recorder):
        # after the response closes, or just before it closes with `hold_close` (serverless).
        self.after = after
        self.hold_close = hold_close
        self.status_code = 200
        self.background = None
        self.init_headers(headers)
        self.disconnected = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    self.disconnected = True
                    self.on_disconnect()
                    return

        watcher = asyncio.create_task(watch())
        try:
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            )
            async for chunk in self.body_iterator:
                if self.disconnected:
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if not self.disconnected:
                if self.after is not None and self.hold_close:
                    await self.after()
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            self.disconnected = True  # the server reports a gone client by failing the send
        finally:
            watcher.cancel()
            await self.body_iterator.aclose()  # type: ignore[attr-defined]
        if self.after is not None and not self.hold_close and not self.disconnected:
            await self.after()


async def stream_chat(
    rt: Runtime,
    call: Call,
    plan: list[Candidate],
    ctx: RequestContext,
    front: FrontEnd,
    meter: Meter | None,
    admission: Admission,
    recorder: Recorder | None = None,
) -> Response:
    """Open the stream (failing over until the first chunk); the caller releases what it holds if
    this raises. Once the response starts, its generator settles and finishes itself."""

    async def attempt(candidate: Candidate) -> list[UpstreamStream]:
        return await _open_all(rt, candidate, call, fan_out_count(candidate, call.params))

    candidate, streams = await failover(plan, ctx, attempt, rt.settings.timeouts, rt.health)
    first_byte = time.perf_counter()
    tr = streams[0].tr
    headers = gateway_headers(candidate, ctx, tr)
    headers.update(admission.headers())
    headers["cache-control"] = "no-cache"
    headers["x-accel-buffering"] = "no"  # proxies (nginx, Vercel) must not buffer the stream
    writer = front.writer(call, tr, candidate.model_id)
    text = recorder.streamed(tr.source, candidate.model_id) if recorder is not None else None
    if recorder is not None:
        headers["x-gatewayz-session-id"] = recorder.session_id

    attempts = ctx.attempt_headers()

    def hang_up() -> None:
        for s in streams:
            s.close()  # a pending upstream read fails at once: the generator ends and settles

    finished = False  # the answer went out whole (what chat history records)

    async def events() -> AsyncIterator[bytes]:
        nonlocal finished
        output_chars = 0
        unsettled: GatewayError | None = None
        status = "cancelled"  # until the stream ends, by itself or with an error
        try:
            async for chunks in _chunks(streams):
                if not chunks:
                    continue
                output_chars += tr.output_chars(chunks)
                if text is not None:
                    text.add(chunks)
                yield writer.items(chunks)
            status = "ok"
        except UpstreamError as exc:
            if response.disconnected:
                return  # the caller hung up: nothing to tell them ("cancelled" is recorded)
            status = "error"
            failed = UpstreamFailed(
                f"{candidate.provider_id}: {exc.message}", code=str(exc.status or exc.kind)
            )
            yield writer.error(failed, ctx.request_id)
        finally:
            for s in streams:
                s.close()
            # Whatever ended the stream, what was generated is billed (SPEC §4), exactly once.
            usage = _stream_usage(streams, call.body, output_chars)
            if status == "ok":  # tokens/s after the first byte: the offer's measured throughput
                rt.health.tokens(
                    candidate.provider_id,
                    candidate.model_id,
                    usage.output_tokens,
                    time.perf_counter() - first_byte,
                )
            cost = price(rt, candidate, usage)
            try:  # the slot is released (overlapped) whatever the settlement does
                cost = await settle_and_finish(rt, meter, admission, candidate, usage, cost, attempts, status)
            except GatewayError as exc:  # the database went away: the stream cannot be billed
                unsettled = exc
        if status != "ok":
            return
        if unsettled is not None:  # its hold stays until the reaper: the caller is told, not billed
            yield writer.error(unsettled, ctx.request_id)
            return
        finished = True  # only a whole answer goes into chat history
        yield writer.end(usage, cost)

    async def record() -> None:
        if finished and recorder is not None:
            await recorder.write()

    response = SSEResponse(
        events(),
        headers,
        hang_up,
        record if recorder is not None else None,
        hold_close=recorder is not None and recorder.hold_close,
    )
    return response


def _stream_usage(streams: list[UpstreamStream], body: dict[str, Any], output_chars: int) -> Usage:
    total = Usage()
    for s in streams:
        if s.tr.usage is None:
            return estimate_usage(body, output_chars)
        total.add(s.tr.usage)
    return total
