"""Static files a gateway serves to browsers: the JavaScript SDK under ``/sdk/`` and the live
workflow view at ``/ui``.

They ship inside the Python package (``frys/gateway/static``) as plain files, so a gateway
serves them with no build step and a page loads with no other host: the SDK's dependencies
are vendored next to it (``npm run vendor`` in ``web/`` writes ``static/sdk``).

Content types are set here rather than guessed from the machine's MIME table, because a
browser refuses a module script that is not served as JavaScript and that table differs
between machines. Every file is revalidated (``no-cache``, with ETag and Last-Modified), so a
new gateway version is picked up at once, and the view's page forbids any resource that is
not the gateway's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from aiohttp import web

STATIC_DIR: Final = Path(__file__).parent / "static"
SDK_DIR: Final = STATIC_DIR / "sdk"
UI_DIR: Final = STATIC_DIR / "ui"

CONTENT_TYPES: Final = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".ts": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    "": "text/plain; charset=utf-8",
}

UI_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""The view's Content-Security-Policy: its own scripts and styles, WebSockets to gateways,
nothing from another host."""


def _file(base: Path, relative: str, extra: dict[str, str] | None = None) -> web.FileResponse:
    """``relative`` under ``base``, or 404: no path outside it, no hidden file, no folder."""
    parts = [p for p in relative.split("/") if p]
    if not parts or any(p.startswith(".") or "\\" in p for p in parts):
        raise web.HTTPNotFound()
    path = base.joinpath(*parts).resolve()
    if not path.is_relative_to(base.resolve()) or not path.is_file():
        raise web.HTTPNotFound()
    suffix = path.suffix if path.suffix in CONTENT_TYPES else ""
    headers = {
        "Content-Type": CONTENT_TYPES[suffix],
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
        **(extra or {}),
    }
    return web.FileResponse(path, headers=headers)


async def sdk_file(request: web.Request) -> web.FileResponse:
    """``GET /sdk/{path}``: the SDK's modules, type declarations and vendored dependencies."""
    return _file(SDK_DIR, request.match_info["path"], {"Access-Control-Allow-Origin": "*"})


async def ui_page(request: web.Request) -> web.FileResponse:
    """``GET /ui``: the live workflow view. The token travels in the URL's fragment
    (``/ui#token=...``), which browsers never send to the server."""
    return _file(
        UI_DIR,
        "index.html",
        {"Content-Security-Policy": UI_POLICY, "Referrer-Policy": "no-referrer"},
    )


async def ui_file(request: web.Request) -> web.FileResponse:
    """``GET /ui/{path}``: the view's scripts and styles."""
    return _file(UI_DIR, request.match_info["path"])
