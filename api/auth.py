"""Vercel entry of the auth function: POST /auth/session.

Vercel's Python runtime serves this file's ASGI `app` with uvicorn; vercel.json rewrites the
public path here. Export `app` only: a top-level `handler` would be taken for a
BaseHTTPRequestHandler class.
"""

from functions.auth import app

__all__ = ["app"]
