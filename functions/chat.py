"""The chat function: `POST /v1/chat/completions` and `POST /v1/completions`.

Deployed behind a streaming Function URL (Lambda Web Adapter) because it streams; `handler` is the
Mangum entry for non-streaming deployments and tests.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from mangum import Mangum
from starlette.responses import Response

from shared.app import billing_id_of, function_app, json_body, request_id_of, runtime_of, started_at
from shared.auth import authenticate
from shared.frontends.completions import COMPLETION, chat_from_completion
from shared.frontends.openai_chat import CHAT
from shared.pipeline.frontend import Inbound
from shared.pipeline.run import run
from shared.routing.context import RequestContext

router = APIRouter()

# The inference routes are plain Starlette routes: FastAPI's per-request dependency solving and
# validation machinery measured at about a quarter of the whole pipeline's CPU, and these routes
# read the raw body themselves anyway. Authentication is the same function the dependency calls.


def context(request: Request) -> RequestContext:
    return RequestContext(
        request_id_of(request), started_at(request), billing_id_of(request), state=request.scope.get("state")
    )


async def chat_completions(request: Request) -> Response:
    principal = await authenticate(request, "inference")
    body = await json_body(request)
    return await run(runtime_of(request), Inbound(body), context(request), principal, CHAT)


async def completions(request: Request) -> Response:
    principal = await authenticate(request, "inference")
    body = chat_from_completion(await json_body(request))
    return await run(runtime_of(request), Inbound(body), context(request), principal, COMPLETION)


router.add_route("/v1/chat/completions", chat_completions, methods=["POST"])
router.add_route("/v1/completions", completions, methods=["POST"])


app = function_app([router], title="Gatewayz chat")
handler = Mangum(app, lifespan="off")
