"""The gateway file as a whole: its sections, and the checks that span them.

Each section lives in a module of its own: `upstreams`, `routes`, `limits`,
`security`.
"""

from __future__ import annotations

import re

from pydantic import field_validator, model_validator

from ferryman.config.base import NAME, Model
from ferryman.config.limits import Budgets, Limiter
from ferryman.config.routes import Route
from ferryman.config.security import Security
from ferryman.config.upstreams import Upstream


class Gateway(Model):
    """The whole gateway file."""

    upstreams: dict[str, Upstream]
    routes: tuple[Route, ...]
    security: Security = Security()
    limiter: Limiter = Limiter()
    budgets: Budgets = Budgets()

    @field_validator("upstreams")
    @classmethod
    def _check_upstream_names(cls, value: dict[str, Upstream]) -> dict[str, Upstream]:
        for name in value:
            if not re.match(NAME, name):
                raise ValueError(f"upstream name {name!r} must match {NAME}")
        return value

    @model_validator(mode="after")
    def _check_references(self) -> Gateway:
        # Raised as ValueError, the loader rewrites these into field paths.
        problems: list[str] = []
        seen_names: dict[str, int] = {}
        seen_matches: dict[tuple[str | None, str, tuple[str, ...] | None], int] = {}
        for index, route in enumerate(self.routes):
            if route.upstream not in self.upstreams:
                known = ", ".join(sorted(self.upstreams)) or "none defined"
                problems.append(
                    f"routes[{index}].upstream: unknown upstream {route.upstream!r} "
                    f"(known: {known})"
                )
            if route.label in seen_names:
                problems.append(
                    f"routes[{index}].name: {route.label!r} is already used by "
                    f"routes[{seen_names[route.label]}]"
                )
            seen_names.setdefault(route.label, index)
            match = (route.host, route.path, route.methods)
            if match in seen_matches:
                problems.append(
                    f"routes[{index}].path: {route.path!r} is matched the same way by "
                    f"routes[{seen_matches[match]}]"
                )
            seen_matches.setdefault(match, index)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def warnings(self) -> list[str]:
        """Things that are valid but probably not what the operator meant."""
        notes = []
        for index, route in enumerate(self.routes):
            upstream = self.upstreams.get(route.upstream)
            if route.auth == ("none",) and upstream and upstream.credential.kind != "none":
                notes.append(
                    f"routes[{index}] ({route.label}): open to anyone (auth: [none]) while "
                    f"upstream {route.upstream!r} adds a {upstream.credential.kind} credential"
                )
        return notes
