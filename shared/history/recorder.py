"""Recording one inference request into chat history, from the pipeline (every front end).

Opt-in only: a key with `store_history`, a request with `x-gatewayz-history: on`, or a front end
that asks for it (`store: true` on /v1/responses); `x-gatewayz-history: off` turns a key's default
off for one request. Nothing is recorded for anonymous callers.

Sessions: a request continues the session named by `x-gatewayz-session-id` (one of the caller's,
as returned by an earlier answer), adding only its new turn (the messages after its last
assistant message, then the answer); without the header every request starts a new session,
titled from its first user message. The answer carries `x-gatewayz-session-id` either way, so a
client continues by sending it back. A named session that is not the caller's is never written
into: the turn starts a new session under a fresh id (visible in GET /v1/sessions).

Off the hot path: nothing is read or written before the answer, and the text is assembled and
the turn written after the answer's last byte has been sent, never delaying a byte of it. Where:
- on a server process (`gatewayz serve`, a container) right after the response is closed, as a
  Starlette background task is: the caller's connection is free at once (a keep-alive client's
  next request is not held behind the write);
- on serverless platforms, whose environment freezes once the response ends (AWS Lambda, Vercel:
  `AWS_LAMBDA_FUNCTION_NAME` or `VERCEL` set), before the response is closed, so that the write
  completes inside the invocation. The caller already has every byte of the answer (a whole
  answer has its Content-Length; a stream its last event); only the closing of the response waits.
A failing or slow write (bounded by `WRITE_TIMEOUT_S`) is logged and counted
(`HistoryStore.failed`), never raised: the caller already has the answer. Only complete answers
are recorded: a stream that failed or that the caller left is not.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from shared.errors import InvalidRequest
from shared.history.extract import StreamText, answer_text, request_messages

if TYPE_CHECKING:
    from shared.auth import Principal
    from shared.pipeline.frontend import FrontEnd
    from shared.routing.context import RequestContext
    from shared.runtime import Runtime

log = logging.getLogger("gatewayz")
WRITE_TIMEOUT_S = 5.0  # the longest a history write may hold the response open
SESSION_ID = re.compile(r"^ses_[0-9a-f]{24}$")
HISTORY_HEADER = "x-gatewayz-history"
SESSION_HEADER = "x-gatewayz-session-id"


class Recorder:
    """One opted-in request: what its history turn needs, gathered as the answer goes out."""

    def __init__(
        self, rt: Runtime, user_id: str, session_id: str, continuing: bool, request_id: str, body: Any
    ) -> None:
        self.rt = rt
        self.hold_close = freezes_after_response(rt.settings.env)  # write before the response closes
        self.user_id = user_id
        self.session_id = session_id
        self.continuing = continuing
        self.request_id = request_id
        self.body = body  # the pivot request; read after the answer
        self.model = str(body.get("model") or "")
        self.answer: str | None = None
        self.stream: StreamText | None = None

    def whole(self, source: str, model: str, body: dict[str, Any]) -> None:
        """A whole answer (before the front end renders it: the text is read in the
        translator's shape)."""
        self.model = model
        self.answer = answer_text(source, body)

    def streamed(self, source: str, model: str) -> StreamText:
        self.model = model
        self.stream = StreamText(source)
        return self.stream

    async def write(self) -> None:
        """Write the turn; never raises (the answer is already with the caller)."""
        from shared.history.store import Turn

        try:
            answer = self.answer if self.stream is None else self.stream.text()
            if answer is None:
                return
            turn = Turn(
                user_id=self.user_id,
                session_id=self.session_id,
                continuing=self.continuing,
                request_id=self.request_id,
                model=self.model,
                messages=request_messages(self.body),
                answer=answer,
            )
            await asyncio.wait_for(self.rt.history.write(turn), WRITE_TIMEOUT_S)
        except Exception as exc:
            self.rt.history.failed += 1
            log.warning(
                "chat history not written for request %s (%s): the answer was not affected",
                self.request_id,
                type(exc).__name__,
            )


def freezes_after_response(env: Mapping[str, str]) -> bool:
    """Whether the platform may freeze the process once the response ends (AWS Lambda, Vercel)."""
    return bool(env.get("AWS_LAMBDA_FUNCTION_NAME") or env.get("VERCEL"))


def recorder_for(
    rt: Runtime, principal: Principal, ctx: RequestContext, front: FrontEnd, body: Any
) -> Recorder | None:
    """The request's recorder when it opted in; a 400 for a malformed history header (checked
    before anything is reserved, so it changes nothing)."""
    asked = ctx.history
    if asked is not None and asked not in ("on", "off"):
        raise InvalidRequest(f"{HISTORY_HEADER} must be 'on' or 'off'.", param=HISTORY_HEADER)
    named = ctx.session_id
    if named is not None and not SESSION_ID.match(named):
        raise InvalidRequest(
            f"{SESSION_HEADER} must be a session id returned by the gateway (ses_ and 24 hex digits).",
            param=SESSION_HEADER,
        )
    key = principal.key
    if key is None or asked == "off":
        return None
    if not (asked == "on" or key.store_history or front.stores_history):
        return None
    from shared.history.store import new_session_id

    session_id = named or new_session_id()
    return Recorder(rt, key.user_id, session_id, named is not None, ctx.billing_id, body)


class RecordedResponse(Response):
    """A whole answer whose history turn is written once its body is sent: after the response
    closes, or just before (`hold_close`, serverless) — with Content-Length set, the caller has the
    whole answer either way."""

    def __init__(self, content: bytes, headers: dict[str, str], recorder: Recorder) -> None:
        super().__init__(content, headers=headers, media_type="application/json")
        self.recorder = recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        hold = self.recorder.hold_close
        await send({"type": "http.response.body", "body": self.body, "more_body": hold})
        try:
            await self.recorder.write()
        finally:
            if hold:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
