"""Mounting the console on the service: its pages, static files, sign-in redirects and HTML errors."""

from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from service.console import approvals, audit, features, monitoring, operations, pages
from service.console.render import error_page
from service.console.session import LoginRequired

STATIC = Path(__file__).with_name("static")
#: The console's routers: sign-in and models, approvals, endpoints, monitoring, features, audit.
ROUTERS = (
    pages.router,
    approvals.router,
    operations.router,
    monitoring.router,
    features.router,
    audit.router,
)


def plotly_js() -> Path:
    """plotly's bundled JavaScript, from the installed Python package (no CDN)."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def install_console(app: FastAPI) -> None:
    """Add the console's pages and static files to the service."""
    app.state.console_secret = secrets.token_bytes(32)
    app.state.page_error = error_page
    for console_router in ROUTERS:
        app.include_router(console_router)

    files = {
        "console.css": STATIC / "console.css",
        "console.js": STATIC / "console.js",
        "plotly.min.js": plotly_js(),
    }

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        path = files.get(name)
        if path is None:
            return Response("not found", status_code=404)
        media = "text/css" if name.endswith(".css") else "text/javascript"
        return FileResponse(path, media_type=media, headers={"Cache-Control": "public, max-age=3600"})

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""), safe="")
        return RedirectResponse(f"/login?next={target}", status_code=303)
