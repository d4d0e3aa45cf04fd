"""The embeddings function: `POST /v1/embeddings` (OpenAI's embeddings API, any embedding model of
the catalog).

An answer is one JSON body, never a stream, so it is a buffered route group: Mangum behind the HTTP
API (`handler`), like the catalog's.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from functions.chat import INFERENCE_ERRORS, context
from shared.app import function_app, json_body, runtime_of
from shared.auth import authenticate
from shared.frontends.openai_embeddings import EMBEDDINGS
from shared.observe.lambda_handler import lambda_handler
from shared.openapi import fast_route
from shared.pipeline.run import run

router = APIRouter()


# A plain fast route, like chat's (see functions/chat.py).
@fast_route(
    router,
    "/v1/embeddings",
    methods=["POST"],
    summary="Create embeddings (OpenAI) with any embedding model; billed per input token",
    request="embeddings.EmbeddingsRequest",
    response="embeddings.EmbeddingList",
    errors=INFERENCE_ERRORS,
    tag="inference",
)
async def create_embeddings(request: Request) -> Response:
    principal = await authenticate(request, "inference")
    body = await json_body(request)
    return await run(runtime_of(request), EMBEDDINGS.inbound(body), context(request), principal, EMBEDDINGS)


app = function_app([router], title="Gatewayz embeddings")
handler = lambda_handler(app, "embeddings")
