"""Every page of the console, as routers for the management app to include."""

from __future__ import annotations

from fastapi import APIRouter

from ferryman.console.keys import keys_router
from ferryman.console.passes import passes_router
from ferryman.console.routes import console_router
from ferryman.console.status import status_router
from ferryman.console.upstream_keys import upstream_keys_router
from ferryman.console.users import users_router


def routers(path: str) -> list[APIRouter]:
    """The console's pages under `path`."""
    return [
        console_router(path),
        keys_router(path),
        users_router(path),
        passes_router(path),
        upstream_keys_router(path),
        status_router(path),
    ]
