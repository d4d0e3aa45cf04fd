"""The HTML status page at `/status` (issue 15): server-rendered from `/v1/status`'s data, no build
step, no script — providers with live state and uptime, ongoing and recent incidents, a latency
sparkline (inline SVG) per provider. Everything shown is escaped."""

from __future__ import annotations

from html import escape
from typing import Any

_STYLE = """body{font:15px/1.4 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;width:100%}td,th{padding:.35rem .5rem;border-bottom:1px solid #ddd;text-align:left}
.operational{color:#137333}.degraded{color:#b3261e}.unconfigured{color:#888}.ongoing{color:#b3261e}"""


def _pct(value: Any) -> str:
    return "—" if value is None else f"{float(value) * 100:.2f}%"


def _spark(points: list[int]) -> str:
    if len(points) < 2:
        return ""
    top = max(points) or 1
    step = 100 / (len(points) - 1)
    coords = " ".join(f"{i * step:.1f},{20 - 18 * p / top:.1f}" for i, p in enumerate(points))
    return f'<svg width="100" height="20" aria-label="latency"><polyline fill="none" stroke="#555" points="{coords}"/></svg>'


def render_status(data: dict[str, Any]) -> str:
    uptime = data.get("uptime", {})
    rows = []
    for p in data["providers"]:
        if not p["configured"]:
            continue
        u = uptime.get(p["id"], {})
        rows.append(
            f'<tr><td>{escape(p["name"])}</td><td class="{escape(p["status"])}">{escape(p["status"])}</td>'
            f"<td>{_pct(u.get('24h'))}</td><td>{_pct(u.get('7d'))}</td><td>{_spark(u.get('latency_ms', []))}</td></tr>"
        )
    incidents = [
        f'<li class="{escape(i["status"])}">{escape(i["status"])}: {escape(i["provider"])}'
        f"{' / ' + escape(i['model']) if i.get('model') else ''} since {escape(str(i['started_at']))}"
        f"{' — resolved ' + escape(str(i['resolved_at'])) if i.get('resolved_at') else ''}</li>"
        for i in data.get("incidents", [])
    ]
    breakers = [
        f"<li>{escape(b['provider'])}{' / ' + escape(b['model']) if b.get('model') else ''}: {escape(b['state'])}</li>"
        for b in data.get("breakers", [])
    ]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Gatewayz status</title>'
        f"<style>{_STYLE}</style></head><body><h1>Gatewayz status</h1>"
        "<h2>Providers</h2><table><tr><th>Provider</th><th>Now</th><th>24 h</th><th>7 d</th><th>Latency</th></tr>"
        + "".join(rows)
        + "</table><h2>Incidents</h2>"
        + (f"<ul>{''.join(incidents)}</ul>" if incidents else "<p>No incidents in the last 7 days.</p>")
        + "<h2>Breakers</h2>"
        + (f"<ul>{''.join(breakers)}</ul>" if breakers else "<p>Every breaker is closed.</p>")
        + "</body></html>"
    )
