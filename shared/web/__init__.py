"""The web dashboard (SPEC §5 pages over the JSON API): server-rendered Jinja2 pages, vendored
htmx and uPlot under static/vendor (with their licences), no build step."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from starlette.responses import Response

from shared.web import admin, pages, signin, tools

STATIC = Path(__file__).parent / "static"
TYPES = {".js": "text/javascript", ".css": "text/css", ".txt": "text/plain", ".LICENSE": "text/plain"}

static_router = APIRouter(include_in_schema=False)


@static_router.get("/static/{name:path}")
async def static(request: Request, name: str) -> Response:
    path = (STATIC / name).resolve()
    kind = TYPES.get(path.suffix)
    if not path.is_relative_to(STATIC.resolve()) or kind is None or not path.is_file():
        return Response("Not found", status_code=404, media_type="text/plain")
    # Vendored files carry their version in the name; the dashboard's own are small and change.
    cache = "public, max-age=31536000, immutable" if "/vendor/" in str(path) else "public, max-age=300"
    return Response(
        path.read_bytes(),
        media_type=kind,
        headers={"cache-control": cache, "x-content-type-options": "nosniff"},
    )


router = APIRouter(include_in_schema=False)
for part in (signin.router, pages.router, tools.router, admin.router, static_router):
    router.include_router(part)
