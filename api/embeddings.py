"""Vercel entry of the embeddings function: POST /v1/embeddings.

Vercel's Python runtime serves this file's ASGI `app` with uvicorn; vercel.json rewrites the
public path here and the app sees the original path. Export `app` only: a top-level `handler`
would be taken for a BaseHTTPRequestHandler class.
"""

from functions.embeddings import app

__all__ = ["app"]
