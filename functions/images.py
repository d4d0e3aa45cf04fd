"""The images function: `POST /v1/images/generations` (OpenAI's image generation, any image model
of the catalog).

One JSON answer, but a generation can take a minute and more (longer than the HTTP API's 30 s), so
it is deployed like chat, behind a Function URL (Lambda Web Adapter); `handler` is the Mangum entry
for other deployments and tests.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from functions.chat import INFERENCE_ERRORS, context
from shared.app import function_app, json_body, runtime_of
from shared.auth import authenticate
from shared.frontends.openai_images import IMAGES
from shared.observe.lambda_handler import lambda_handler
from shared.openapi import fast_route
from shared.pipeline.run import run

router = APIRouter()


# A plain fast route, like chat's (see functions/chat.py).
@fast_route(
    router,
    "/v1/images/generations",
    methods=["POST"],
    summary="Generate images (OpenAI) with any image model; billed per image or per token",
    request="images.ImageRequest",
    response="images.ImagesResponse",
    errors=INFERENCE_ERRORS,
    tag="inference",
)
async def generate_images(request: Request) -> Response:
    principal = await authenticate(request, "inference")
    body = await json_body(request)
    return await run(runtime_of(request), IMAGES.inbound(body), context(request), principal, IMAGES)


app = function_app([router], title="Gatewayz images")
handler = lambda_handler(app, "images")
