"""Vercel entry of the history function: /v1/sessions (list, search, get, rename, delete, share
links), /v1/shared/{token}, /v1/feedback, /v1/history/settings, /admin/feedback.

Vercel's Python runtime serves this file's ASGI `app` with uvicorn; vercel.json rewrites the
public paths here and the app sees the original path. Export `app` only: a top-level `handler`
would be taken for a BaseHTTPRequestHandler class.
"""

from functions.history import app

__all__ = ["app"]
