"""The messages function: `POST /v1/messages` and `POST /v1/messages/count_tokens` (Anthropic).

Deployed like chat, behind a streaming Function URL (Lambda Web Adapter), because it streams;
`handler` is the Mangum entry for non-streaming deployments and tests.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from functions.chat import context
from shared.app import function_app, json_body, runtime_of
from shared.auth import authenticate
from shared.frontends.anthropic_messages import MESSAGES, count_tokens, inbound
from shared.observe.lambda_handler import lambda_handler
from shared.openapi import fast_route
from shared.pipeline.run import run

router = APIRouter()
# Plain fast routes, like chat's (see functions/chat.py); errors in the Anthropic envelope.
ERRORS = (400, 401, 402, 403, 404, 413, 429, 502, 503, 504)


@fast_route(
    router,
    "/v1/messages",
    methods=["POST"],
    summary="Create a message (Anthropic Messages API), streamed with `stream: true`; any model",
    request="messages.MessagesRequest",
    response="messages.AnthropicMessage",
    stream="messages.StreamEvent",
    errors=ERRORS,
    tag="inference",
    error="messages.AnthropicErrorEnvelope",
)
async def messages(request: Request) -> Response:
    principal = await authenticate(request, "inference")
    body = await json_body(request)
    return await run(
        runtime_of(request), inbound(body, request.headers), context(request), principal, MESSAGES
    )


@fast_route(
    router,
    "/v1/messages/count_tokens",
    methods=["POST"],
    summary="Count a Messages request's input tokens (Anthropic's count for Claude models, else an estimate)",
    request="messages.CountTokensRequest",
    response="messages.TokenCount",
    errors=(400, 401, 403, 404, 429),
    headers=("x-request-id", "x-gatewayz-model", "x-gatewayz-estimated"),
    tag="inference",
    error="messages.AnthropicErrorEnvelope",
)
async def messages_count_tokens(request: Request) -> Response:
    principal = await authenticate(request, "inference")
    body = await json_body(request)
    return await count_tokens(runtime_of(request), body, request.headers, context(request), principal)


app = function_app([router], title="Gatewayz messages")
handler = lambda_handler(app, "messages")
