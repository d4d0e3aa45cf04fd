"""Vercel entry of the responses function: POST /v1/responses, GET and DELETE
/v1/responses/{response_id} (OpenAI's Responses API, streamed natively).

Vercel's Python runtime serves this file's ASGI `app` with uvicorn; vercel.json rewrites the
public paths here and the app sees the original path. Export `app` only: a top-level `handler`
would be taken for a BaseHTTPRequestHandler class.
"""

from functions.responses import app

__all__ = ["app"]
