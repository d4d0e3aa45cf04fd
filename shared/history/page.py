"""The shared conversation as a small HTML page (what a browser opening a share link gets): no
script, every text escaped, nothing about the owner (the same fields as the JSON view)."""

from __future__ import annotations

from html import escape
from typing import Any

STYLE = (
    "body{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#222}"
    ".m{border-radius:.5rem;padding:.75rem 1rem;margin:.75rem 0;white-space:pre-wrap}"
    ".user{background:#eef3ff}.assistant{background:#f4f4f4}.system,.tool{background:#fffbea;font-size:.9em}"
    ".r{font-size:.75em;text-transform:uppercase;color:#666;margin-bottom:.25rem}"
)


def render(view: dict[str, Any]) -> str:
    messages = "".join(
        f'<div class="m {escape(m["role"])}"><div class="r">{escape(m["role"])}'
        f"{' · ' + escape(m['model']) if m.get('model') else ''}</div>{escape(m['content'])}</div>"
        for m in view["messages"]
    )
    title = escape(view["title"])
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{title} · shared conversation</title><style>{STYLE}</style></head>"
        f"<body><h1>{title}</h1><p>A conversation shared from Gatewayz · last message "
        f"{escape(str(view['updated_at']))}</p>{messages}</body></html>"
    )
