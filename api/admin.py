"""Vercel entry of the admin function: /admin/users (create, list, get, suspend, plan), /admin/users/{id}/credits, /admin/audit.

Vercel's Python runtime serves this file's ASGI `app` with uvicorn; vercel.json rewrites the
public paths here and the app sees the original path. Export `app` only: a top-level `handler`
would be taken for a BaseHTTPRequestHandler class.
"""

from functions.admin import app

__all__ = ["app"]
