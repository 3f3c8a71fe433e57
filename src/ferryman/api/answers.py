"""The error answers of the management API, as its routes declare them.

Every error is one JSON object (the gateway's format); a route names the statuses of
its own checks with `answers()`. Those every route shares (401, 404, 422, ...) are
added to the OpenAPI document by api/openapi.py from the route's dependencies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field


class FieldProblem(BaseModel):
    field: str
    """The field, dotted (`budget.period`), or `(body)` for the body as a whole."""
    message: str


class ErrorOut(BaseModel):
    """Every error the API answers, whatever its status."""

    error: str = Field(examples=["key_not_found"])
    """The machine-readable code (the README's error table lists them)."""
    message: str
    """What went wrong, for a person."""
    correlation_id: str
    """The request's id, also in `X-Request-ID` and in the gateway's log line."""
    timestamp: str
    details: list[FieldProblem] | None = None
    """422 only: each field refused, and why."""


def answers(codes: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """A route's own error answers, for its decorator: `{409: "key_revoked"}`."""
    return {status: {"model": ErrorOut, "description": text} for status, text in codes.items()}
