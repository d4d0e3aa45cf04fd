"""The responses function: `POST /v1/responses`, `GET` and `DELETE /v1/responses/{response_id}`
(OpenAI's Responses API).

Deployed like chat, behind a streaming Function URL (Lambda Web Adapter), because it streams;
`handler` is the Mangum entry for non-streaming deployments and tests.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from mangum import Mangum
from starlette.responses import Response

from functions.chat import context
from shared.app import function_app, json_body, runtime_of
from shared.auth import authenticate
from shared.frontends.openai_responses import delete, responses_front, retrieve
from shared.pipeline.run import run

router = APIRouter()


async def create_response(request: Request) -> Response:
    principal = await authenticate(request, "inference")
    rt = runtime_of(request)
    front = await responses_front(rt, await json_body(request), principal)
    return await run(rt, front.inbound(), context(request), principal, front)


async def get_response(request: Request) -> Response:
    principal = await authenticate(request, "inference")
    stream = request.query_params.get("stream")
    return await retrieve(runtime_of(request), principal, request.path_params["response_id"], stream)


async def delete_response(request: Request) -> Response:
    principal = await authenticate(request, "inference")
    return await delete(runtime_of(request), principal, request.path_params["response_id"])


router.add_route("/v1/responses", create_response, methods=["POST"])
router.add_route("/v1/responses/{response_id}", get_response, methods=["GET"])
router.add_route("/v1/responses/{response_id}", delete_response, methods=["DELETE"])


app = function_app([router], title="Gatewayz responses")
handler = Mangum(app, lifespan="off")
