"""The messages function: `POST /v1/messages` and `POST /v1/messages/count_tokens` (Anthropic).

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
from shared.frontends.anthropic_messages import MESSAGES, count_tokens, inbound
from shared.pipeline.run import run

router = APIRouter()


async def messages(request: Request) -> Response:
    principal = await authenticate(request, "inference")
    body = await json_body(request)
    return await run(
        runtime_of(request), inbound(body, request.headers), context(request), principal, MESSAGES
    )


async def messages_count_tokens(request: Request) -> Response:
    principal = await authenticate(request, "inference")
    body = await json_body(request)
    return await count_tokens(runtime_of(request), body, request.headers, context(request), principal)


router.add_route("/v1/messages", messages, methods=["POST"])
router.add_route("/v1/messages/count_tokens", messages_count_tokens, methods=["POST"])


app = function_app([router], title="Gatewayz messages")
handler = Mangum(app, lifespan="off")
