"""Vercel entry of the messages function: POST /v1/messages, POST /v1/messages/count_tokens
(Anthropic, streamed natively).

Vercel's Python runtime serves this file's ASGI `app` with uvicorn; vercel.json rewrites the
public paths here and the app sees the original path. Export `app` only: a top-level `handler`
would be taken for a BaseHTTPRequestHandler class.
"""

from functions.messages import app

__all__ = ["app"]
