"""The browser page's routes: ``GET /`` and its files at ``GET /static/NAME``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..web import source

_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}


async def _index(request: Request) -> Response:
    return HTMLResponse(source("index.html"), headers={"cache-control": "no-cache"})


async def _static(request: Request) -> Response:
    name = request.path_params["name"]
    try:
        text = source(name)
    except ValueError:
        return PlainTextResponse("not found", status_code=404)
    kind = _TYPES.get(name[name.rfind("."):], "text/plain")
    return Response(text, media_type=kind, headers={"cache-control": "no-cache"})


def page_routes() -> list[Route]:
    """``/`` (the page) and ``/static/{name}`` (only the page's own files)."""
    return [Route("/", _index), Route("/static/{name}", _static)]
