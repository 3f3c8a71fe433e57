"""The management API answers errors in the gateway's JSON format too."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException

from ferryman.config.messages import location
from ferryman.errors import GatewayError
from ferryman.observability.context import SCOPE_KEY, RequestContext, new_request_id
from ferryman.observability.responses import error_body

log = structlog.get_logger("ferryman.api")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    422: "validation_error",
    429: "too_many_requests",
}


def _correlation_id(request: Request) -> str:
    ctx: RequestContext | None = request.scope.get(SCOPE_KEY)
    return ctx.correlation_id if ctx is not None else new_request_id()


def json_error(
    request: Request,
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    details: list[dict[str, Any]] | None = None,
) -> Response:
    ctx: RequestContext | None = request.scope.get(SCOPE_KEY)
    if ctx is not None:
        ctx.error = code
    body = error_body(code, message, _correlation_id(request))
    if details is not None:
        payload = orjson.loads(body)
        payload["details"] = details
        body = orjson.dumps(payload)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """Every method some route of `app` serves at the request's path."""
    path = request.url.path
    methods: set[str] = set()
    for route in iter_route_contexts(app.routes):
        regex = getattr(route, "path_regex", None)
        if route.methods and regex is not None and regex.fullmatch(path):
            methods |= route.methods
    return sorted(methods)


def install(app: FastAPI) -> None:
    """Route every error the API can raise into the JSON error format."""

    async def gateway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        headers = {k.decode(): v.decode() for k, v in exc.headers}
        return json_error(request, exc.status, exc.code, exc.message, headers)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
            # FastAPI answers a body that is not UTF-8 with a 400 of its own; it is as
            # unreadable as malformed JSON, which is a 422: one answer for both.
            details = [{"field": "(body)", "message": "not JSON: the body is not UTF-8"}]
            message = "(body): not JSON: the body is not UTF-8"
            return json_error(request, 422, "validation_error", message, details=details)
        code = _CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        headers = exc.headers
        if exc.status_code == 405:
            # Starlette's Allow names the methods of the first route on the path only.
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(app, request))}
        return json_error(request, exc.status_code, code, message, headers)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        details = []
        for error in exc.errors():
            loc = tuple(part for part in error["loc"] if part != "body")
            if error["type"] == "json_invalid":
                loc = ()  # its location is a character offset, not a field
            details.append({"field": location(loc) or "(body)", "message": error["msg"]})
        first = details[0] if details else {"field": "(body)", "message": "invalid request"}
        message = f"{first['field']}: {first['message']}"
        return json_error(request, 422, "validation_error", message, details=details)

    async def unexpected(request: Request, exc: Exception) -> Response:
        # A bug of ours: the same one JSON answer and one log line as on the proxy's
        # side (Starlette's own would be a plain-text 500). Observe knows it is told.
        log.error(
            "unhandled_error",
            correlation_id=_correlation_id(request),
            route="management",
            exc_info=exc,
        )
        return json_error(
            request, 500, "internal_error", "the gateway failed to handle this request"
        )

    app.add_exception_handler(Exception, unexpected)
    app.add_exception_handler(GatewayError, gateway_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
