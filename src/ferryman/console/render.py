"""Pages: Jinja2 templates from the package, and the headers every console answer has.

Every asset is the gateway's own (`static/`), so the policy allows scripts, styles and
images from the console's own origin only: no inline script, no CDN, no frame.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from ferryman import __version__

POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

#: Beside the gateway's own (nosniff, frame options, referrer policy).
HEADERS = {"Content-Security-Policy": POLICY, "Cache-Control": "no-store"}


@cache
def environment() -> Environment:
    return Environment(
        loader=PackageLoader("ferryman.console", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def preload() -> None:
    """Compile every template now (the management app is built in a worker thread), not
    on each page's first view (about 100 ms each on a slow machine)."""
    env = environment()
    for name in env.list_templates(extensions=["html"]):
        env.get_template(name)


def base_path(request: Request) -> str:
    """The console's path as the browser sees it: a trusted proxy's `X-Forwarded-Prefix`
    (else `FERRYMAN_ROOT_PATH`) and the console's own path."""
    settings = request.app.state.auth.settings
    root = settings.root_path
    trusted = getattr(request.app.state, "trusted", None)
    forwarded = request.headers.get("x-forwarded-prefix")
    peer = request.client.host if request.client else ""
    if forwarded is not None and trusted is not None and trusted.trusts(peer):
        cleaned = "/" + "/".join(p for p in forwarded.split("/") if p and p not in (".", ".."))
        root = "" if cleaned == "/" else cleaned
    return str(root + settings.console_path)


def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = (
        environment()
        .get_template(template)
        .render(base=base_path(request), version=__version__, **context)
    )
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def redirect(request: Request, to: str) -> RedirectResponse:
    """303 to a console page (`to` relative to the console's root)."""
    return RedirectResponse(base_path(request) + to, status_code=303, headers=HEADERS)
