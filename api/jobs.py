"""Vercel entry of the scheduled jobs: the cron in vercel.json calls GET /internal/jobs/reap-holds
with `Authorization: Bearer $CRON_SECRET`. Export `app` only (see api/chat.py)."""

from functions.jobs import app

__all__ = ["app"]
