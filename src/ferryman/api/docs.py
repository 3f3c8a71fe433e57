"""The interactive API docs at `/docs`, with nothing loaded from a CDN.

Swagger UI's script, styles and icon are the files the `fastapi-offline` package ships,
served under `/docs/assets`. The page gets a Content-Security-Policy of its own: this
origin only, and its one inline script (which starts Swagger UI) allowed by hash rather
than by `'unsafe-inline'`. The online validator is off, so the page calls nobody else.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

PAGE = "/docs"
ASSETS = "/docs/assets"

_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.S)


def _policy(page: bytes) -> str:
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(page)
    )
    # Swagger UI's React components set style attributes: styles need 'unsafe-inline'.
    return (
        f"default-src 'none'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    )


def install_docs(app: FastAPI, openapi_url: str) -> None:
    """Serve the docs page and its assets from the package (once, at app creation)."""
    page = bytes(
        get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},
        ).body
    )
    headers = {"content-security-policy": _policy(page)}

    @app.get(PAGE, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(page, headers=headers)

    assets = Path(str(files("fastapi_offline") / "static"))
    app.mount(ASSETS, StaticFiles(directory=assets), name="docs-assets")
