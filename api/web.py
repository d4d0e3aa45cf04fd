"""Vercel entry of the web function: the dashboard (/, /sign-in, /sign-out, /dashboard/..., /static/...).

Vercel's Python runtime serves this file's ASGI `app` with uvicorn; vercel.json rewrites the
public paths here and the app sees the original path. Export `app` only: a top-level `handler`
would be taken for a BaseHTTPRequestHandler class.
"""

from functions.web import app

__all__ = ["app"]
