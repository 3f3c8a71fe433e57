"""The management API's OpenAPI document, true to every answer the API gives.

FastAPI documents a route's success and a 422 in a format of its own. The API answers
more than that, always in the gateway's JSON error format: 401 and 403 where a
credential is needed, 404 for an unknown id, 429 from its own limits, 503 while it
starts or when a limiter fails closed. Those are added here from what each route
depends on, so a new route is documented the day it is written; what only a route
knows (a 400, 402 or 409 of its own checks) it declares with `answers()`.

The document also states this gateway's own choices where a request must match them:
the pass durations on sale and the upstreams with a key pool. A client generated from
it, or a fuzzer (schemathesis runs against it in the test suite), then sends what the
API accepts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts

from ferryman.api.answers import ErrorOut
from ferryman.api.deps import get_caller
from ferryman.api.limits import limit_auth
from ferryman.api.stats_routes import get_reader, limit_reader
from ferryman.auth.sessions import COOKIE


@dataclass(frozen=True)
class ApiFacts:
    """This gateway's choices that a request body must match."""

    pass_durations: tuple[int, ...]
    pooled_upstreams: tuple[str, ...]


_ERROR_REF = {"$ref": "#/components/schemas/ErrorOut"}

_SECURITY_SCHEMES = {
    "user_token": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "The access token `POST /api/v1/auth/login` returns.",
    },
    "session": {
        "type": "apiKey",
        "in": "cookie",
        "name": COOKIE,
        "description": "The cookie `POST /api/v1/auth/session` sets; a request that "
        "changes something sends its `csrf_token` as `X-CSRF-Token` too.",
    },
    "stats_key": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "fm_ client key with the stats:read scope",
        "description": "The stats endpoints also take a client key with `stats:read`.",
    },
}

_COMMON: dict[str, tuple[str, str]] = {
    "401": (
        "needs_credential",
        "`missing_credential`, `invalid_credential`, `revoked_credential`, "
        "`expired_credential`, `account_disabled`",
    ),
    "403": ("needs_credential", "`admin_required`, `csrf_failed`, `insufficient_scope`"),
    "404": ("has_id", "an unknown id, or one the caller may not see (the same answer)"),
    "422": ("always", "`validation_error`: the request does not match this document"),
    "429": ("limited", "`rate_limited`: the API's own limit (with `Retry-After`)"),
    "503": ("always", "`starting`, or `limiter_unavailable` when a limit fails closed"),
}

_RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}},
}


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _calls(dependency)


def _traits(route: RouteContext) -> set[str]:
    calls = set(_calls(route.dependant))
    traits = {"always"}
    if get_caller in calls or get_reader in calls:
        traits.add("needs_credential")
    if get_reader in calls:
        traits.add("stats_key")
    if limit_auth in calls or limit_reader in calls:
        traits.add("limited")
    if "{" in (route.path_format or ""):
        traits.add("has_id")
    return traits


def _complete_operation(operation: dict[str, Any], traits: set[str]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    for status, (trait, text) in _COMMON.items():
        if trait in traits and (status == "422" or status not in responses):
            responses[status] = {"description": text}
    for status, answer in responses.items():
        if int(status) >= 400:
            # Errors are JSON whatever the route's own answers are (a CSV, say).
            answer["content"] = {"application/json": {"schema": _ERROR_REF}}
            if status == "429":
                answer["headers"] = _RETRY_AFTER
    if "needs_credential" in traits:
        schemes: list[dict[str, list[str]]] = [{"user_token": []}, {"session": []}]
        if "stats_key" in traits:
            schemes.append({"stats_key": []})
        operation["security"] = schemes


def _state_choices(schemas: dict[str, Any], facts: ApiFacts) -> None:
    purchase = schemas.get("PurchaseIn", {}).get("properties", {})
    if "duration_hours" in purchase and facts.pass_durations:
        purchase["duration_hours"]["enum"] = list(facts.pass_durations)
    upstream_key = schemas.get("UpstreamKeyIn", {}).get("properties", {})
    if "upstream" in upstream_key and facts.pooled_upstreams:
        upstream_key["upstream"]["enum"] = list(facts.pooled_upstreams)


def build(app: FastAPI, facts: ApiFacts) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {})
    schemas: dict[str, Any] = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    error = ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(error.pop("$defs", {}))
    schemas["ErrorOut"] = error
    components["securitySchemes"] = _SECURITY_SCHEMES
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        traits = _traits(route)
        for method in route.methods or ():
            operation = schema["paths"].get(route.path_format or "", {}).get(method.lower())
            if operation is not None:
                _complete_operation(operation, traits)
    _state_choices(schemas, facts)
    return schema


def install_openapi(app: FastAPI, facts: ApiFacts) -> None:
    """Serve `build`'s document at the app's openapi_url. Building it takes a quarter
    of a second: the mount that loads the management API has it built in the same
    worker thread (`app.openapi()`), so no request waits for it on the event loop."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build(app, facts)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
