"""The web page at `/`: plain HTML, CSS and JavaScript shipped in the package (web/), no CDN, no build step.

The page and its two assets carry no data (the model list and every result
come from the token-checked API), so they are served without the token; the
page asks for the token when the server wants one and sends it as the
Authorization header.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Response
from fastapi.responses import HTMLResponse

WEB = Path(__file__).with_name("web")
_ASSETS = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}


def router() -> APIRouter:
    page = APIRouter(include_in_schema=False)
    cache = {"Cache-Control": "no-cache"}

    @page.get("/")
    async def index() -> HTMLResponse:
        return HTMLResponse((WEB / "index.html").read_text(), headers=cache)

    for name, media in _ASSETS.items():
        async def serve(name: str = name, media: str = media) -> Response:
            return Response((WEB / name).read_bytes(), media_type=media, headers=cache)
        page.add_api_route(f"/{name}", serve, methods=["GET"])
    return page
