"""The responses function: `POST /v1/responses`, `GET` and `DELETE /v1/responses/{response_id}`
(OpenAI's Responses API).

Deployed like chat, behind a streaming Function URL (Lambda Web Adapter), because it streams;
`handler` is the Mangum entry for non-streaming deployments and tests.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from functions.chat import context
from shared.app import function_app, json_body, runtime_of
from shared.auth import Inference, authenticate
from shared.frontends.openai_responses import delete, responses_front, retrieve
from shared.observe.lambda_handler import lambda_handler
from shared.openapi import documented, fast_route
from shared.pipeline.run import run

router = APIRouter()
# Plain fast routes, like chat's (see functions/chat.py).
ERRORS = (400, 401, 402, 403, 404, 413, 429, 502, 503, 504)


@fast_route(
    router,
    "/v1/responses",
    methods=["POST"],
    summary="Create a response (OpenAI Responses API), streamed with `stream: true`; any model",
    request="responses.ResponsesRequest",
    response="responses.ResponseObject",
    stream="responses.ResponseStreamEvent",
    errors=ERRORS,
    tag="inference",
)
async def create_response(request: Request) -> Response:
    principal = await authenticate(request, "inference")
    rt = runtime_of(request)
    front = await responses_front(rt, await json_body(request), principal)
    return await run(rt, front.inbound(), context(request), principal, front)


# Reading and deleting stored responses are plain FastAPI routes: not on the hot path, and FastAPI
# documents their path parameter.
@router.get("/v1/responses/{response_id}")
@documented(
    "Read a response you stored (`store: true`), as it was returned",
    response="responses.ResponseObject",
    errors=(400, 401, 403, 404),
    tag="inference",
)
async def get_response(
    request: Request, principal: Inference, response_id: str, stream: str | None = None
) -> Response:
    return await retrieve(runtime_of(request), principal, response_id, stream)


@router.delete("/v1/responses/{response_id}")
@documented(
    "Delete a response you stored",
    response="responses.DeletedResponse",
    errors=(401, 403, 404),
    tag="inference",
)
async def delete_response(request: Request, principal: Inference, response_id: str) -> Response:
    return await delete(runtime_of(request), principal, response_id)


app = function_app([router], title="Gatewayz responses")
handler = lambda_handler(app, "responses")
