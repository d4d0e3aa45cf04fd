"""Vercel entry of the account function: GET /v1/me, /v1/keys (CRUD, rotate), GET /v1/credits, /v1/usage, /v1/provider-keys.

Vercel's Python runtime serves this file's ASGI `app` with uvicorn; vercel.json rewrites the
public paths here and the app sees the original path. Export `app` only: a top-level `handler`
would be taken for a BaseHTTPRequestHandler class.
"""

from functions.account import app

__all__ = ["app"]
