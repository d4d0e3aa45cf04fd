"""The chat function: `POST /v1/chat/completions` and `POST /v1/completions`.

Deployed behind a streaming Function URL (Lambda Web Adapter) because it streams; `handler` is the
Mangum entry for non-streaming deployments and tests.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from shared.app import billing_id_of, function_app, json_body, request_id_of, runtime_of, started_at
from shared.auth import authenticate
from shared.frontends.completions import COMPLETION, chat_from_completion
from shared.frontends.openai_chat import CHAT
from shared.observe.lambda_handler import lambda_handler
from shared.openapi import fast_route
from shared.pipeline.frontend import Inbound
from shared.pipeline.run import run
from shared.routing.context import RequestContext

router = APIRouter()

# The inference routes are plain Starlette routes: FastAPI's per-request dependency solving and
# validation machinery measured at about a quarter of the whole pipeline's CPU, and these routes
# read the raw body themselves anyway. Authentication is the same function the dependency calls.
# `fast_route` documents them in /openapi.json all the same.
INFERENCE_ERRORS = (400, 401, 402, 403, 404, 413, 429, 502, 503, 504)


def context(request: Request) -> RequestContext:
    headers = request.headers
    history = headers.get("x-gatewayz-history")
    return RequestContext(
        request_id_of(request),
        started_at(request),
        billing_id_of(request),
        state=request.scope.get("state"),
        history=None if history is None else history.strip().lower(),
        session_id=headers.get("x-gatewayz-session-id"),
    )


@fast_route(
    router,
    "/v1/chat/completions",
    methods=["POST"],
    summary="Create a chat completion (OpenAI), streamed with `stream: true`",
    request="inference.ChatCompletionRequest",
    response="inference.ChatCompletion",
    stream="inference.ChatCompletionChunk",
    errors=INFERENCE_ERRORS,
    tag="inference",
)
async def chat_completions(request: Request) -> Response:
    principal = await authenticate(request, "inference")
    body = await json_body(request)
    return await run(runtime_of(request), Inbound(body), context(request), principal, CHAT)


@fast_route(
    router,
    "/v1/completions",
    methods=["POST"],
    summary="Create a legacy text completion (served on top of chat)",
    request="inference.CompletionRequest",
    response="inference.Completion",
    stream="inference.Completion",
    errors=INFERENCE_ERRORS,
    tag="inference",
)
async def completions(request: Request) -> Response:
    principal = await authenticate(request, "inference")
    body = chat_from_completion(await json_body(request))
    return await run(runtime_of(request), Inbound(body), context(request), principal, COMPLETION)


app = function_app([router], title="Gatewayz chat")
handler = lambda_handler(app, "chat")
