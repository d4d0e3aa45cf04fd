"""Vercel entry of the catalog function: GET /v1/models, /v1/models/{id}, /v1/providers, /v1/gateways.

Vercel's Python runtime serves this file's ASGI `app` with uvicorn; vercel.json rewrites the
public paths here and the app sees the original path. Export `app` only: a top-level `handler`
would be taken for a BaseHTTPRequestHandler class.
"""

from functions.catalog import app

__all__ = ["app"]
