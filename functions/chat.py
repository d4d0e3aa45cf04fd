"""The chat function: `POST /v1/chat/completions` and `POST /v1/completions`.

Deployed behind a streaming Function URL (Lambda Web Adapter) because it streams; `handler` is the
Mangum entry for non-streaming deployments and tests.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from mangum import Mangum
from starlette.responses import Response

from shared.app import billing_id_of, create_app, json_body, request_id_of, runtime_of, started_at
from shared.auth import Inference
from shared.completions import COMPLETION, chat_from_completion
from shared.failover import RequestContext
from shared.pipeline import run_chat

router = APIRouter()


@router.post("/v1/chat/completions")
async def chat_completions(request: Request, principal: Inference) -> Response:
    body = await json_body(request)
    ctx = RequestContext(request_id_of(request), started_at(request), billing_id_of(request))
    return await run_chat(runtime_of(request), body, ctx, principal)


@router.post("/v1/completions")
async def completions(request: Request, principal: Inference) -> Response:
    body = chat_from_completion(await json_body(request))
    ctx = RequestContext(request_id_of(request), started_at(request), billing_id_of(request))
    return await run_chat(runtime_of(request), body, ctx, principal, COMPLETION, endpoint="completions")


app = create_app([router], title="Gatewayz chat")
handler = Mangum(app, lifespan="off")
