"""Vercel entry of the health probes: the cron in vercel.json calls GET /internal/jobs/probes
with `Authorization: Bearer $CRON_SECRET`. Export `app` only (see api/chat.py)."""

from functions.probes import app

__all__ = ["app"]
