"""Rendering: the Jinja2 environment (autoescaped: a key name, a model id or a chat message is
text, never markup), the security headers of every page, and the form reader.

Jinja2 is imported on the first page, never by the other functions of the local server.
"""

from __future__ import annotations

import functools
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

HERE = Path(__file__).parent
MAX_FORM_BYTES = 64 * 1024

# No inline script or style anywhere: scripts and styles come from /static only, so an injected
# tag would not run even if escaping failed. Chart data travels in JSON <script> blocks, which
# the browser never executes.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cache-control": "no-store",  # pages hold balances and, once, a key's secret
}


def usd(value: Any, places: int = 4) -> str:
    """A decimal USD string as `$1.2345` (exact: no float on the way)."""
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return str(value)
    sign, size, quantum = ("-" if amount < 0 else ""), abs(amount), Decimal(1).scaleb(-places)
    if 0 < size < quantum:  # a sub-cent request cost stays visible, digit for digit
        return f"{sign}${format(size.normalize(), 'f')}"
    return f"{sign}${size.quantize(quantum):,}"


def per_million(value: Any) -> str:
    """A per-token USD price as the price of a million tokens."""
    try:
        return usd(Decimal(str(value)) * 1_000_000, 2)
    except (InvalidOperation, ValueError):
        return str(value)


def when(value: Any) -> str:
    """An ISO time as `2026-12-06 14:11 UTC`."""
    text = str(value or "")
    return text[:16].replace("T", " ") + " UTC" if len(text) >= 16 else text


@functools.cache
def environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["usd"] = usd
    env.filters["when"] = when
    env.filters["per_million"] = per_million
    return env


def page(template: str, status: int = 200, headers: dict[str, str] | None = None, **context: Any) -> Response:
    html = environment().get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers={**PAGE_HEADERS, **(headers or {})})


async def read_form(request: Request) -> dict[str, list[str]]:
    """An `application/x-www-form-urlencoded` body (every form of the dashboard), bounded."""
    raw = await request.body()
    if len(raw) > MAX_FORM_BYTES:
        return {}
    return parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=200)


def field(form: dict[str, list[str]], name: str) -> str:
    values = form.get(name)
    return values[0].strip() if values else ""


def lines(form: dict[str, list[str]], name: str) -> list[str]:
    """A textarea of one item per line (or comma-separated), blanks dropped."""
    text = field(form, name).replace(",", "\n")
    return [item.strip() for item in text.splitlines() if item.strip()]
