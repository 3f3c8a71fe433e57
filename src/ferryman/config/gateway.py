"""The gateway file as a whole: its sections, and the checks that span them.

Each section lives in a module of its own: `upstreams`, `routes`, `limits`,
`security`, `accounts`.
"""

from __future__ import annotations

import re

from pydantic import field_validator, model_validator

from ferryman.config.accounts import Accounts, pool_permission
from ferryman.config.base import NAME, Model
from ferryman.config.limits import Budgets, Limiter
from ferryman.config.relay import Relay
from ferryman.config.routes import Route
from ferryman.config.security import Security
from ferryman.config.upstreams import PoolCredential, Upstream


class Gateway(Model):
    """The whole gateway file."""

    upstreams: dict[str, Upstream]
    routes: tuple[Route, ...]
    security: Security = Security()
    limiter: Limiter = Limiter()
    budgets: Budgets = Budgets()
    accounts: Accounts = Accounts()
    relays: tuple[Relay, ...] = ()
    """Chat widget relays (`config.relay`)."""

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
        problems.extend(self._relay_problems())
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _relay_problems(self) -> list[str]:
        problems = []
        seen: dict[str, int] = {}
        for index, relay in enumerate(self.relays):
            upstream = self.upstreams.get(relay.upstream)
            if upstream is None:
                problems.append(f"relays[{index}].upstream: unknown upstream {relay.upstream!r}")
            elif isinstance(upstream.credential, PoolCredential):
                problems.append(
                    f"relays[{index}].upstream: {relay.upstream!r} takes keys from a pool; "
                    "a workflow's webhook takes a fixed credential or none"
                )
            for key, what in ((relay.prefix, "prefix"), (relay.name, "name")):
                if key in seen:
                    problems.append(
                        f"relays[{index}].{what}: {key!r} is already used by relays[{seen[key]}]"
                    )
                seen.setdefault(key, index)
        return problems

    def shadowed_by(self, prefix: str) -> list[str]:
        """The routes (and relays) at or under `prefix`, which a gateway page there (the
        console) would hide."""

        def under(path: str) -> bool:
            return path == prefix or path.startswith(prefix + "/")

        found = [f"routes[{i}] ({r.label})" for i, r in enumerate(self.routes) if under(r.path)]
        found += [f"relays[{i}] ({r.name})" for i, r in enumerate(self.relays) if under(r.prefix)]
        return found

    def registration_open(self, override: bool | None) -> bool:
        """Is self-service registration open? `FERRYMAN_REGISTRATION_ENABLED` (the
        override), when set, wins over the file's `accounts.registration`."""
        return self.accounts.registration == "open" if override is None else override

    def warnings(self, *, registration_open: bool = False) -> list[str]:
        """Things that are valid but probably not what the operator meant, above all a
        shared key pool that strangers can spend."""
        notes = []
        for index, route in enumerate(self.routes):
            upstream = self.upstreams.get(route.upstream)
            if upstream is None or route.auth != ("none",):
                continue
            credential = upstream.credential
            where = f"routes[{index}] ({route.label}): open to anyone (auth: [none])"
            if isinstance(credential, PoolCredential):
                if credential.shared_access == "everyone":
                    notes.append(
                        f"{where}: anyone who can reach the gateway spends the shared key "
                        f"pool of upstream {route.upstream!r}"
                    )
                else:
                    notes.append(
                        f"{where}, but upstream {route.upstream!r} lends its shared keys only "
                        "to granted accounts: anonymous requests get 403 unless "
                        "shared_access is everyone"
                    )
            elif credential.kind != "none":
                notes.append(
                    f"{where} while upstream {route.upstream!r} adds a {credential.kind} credential"
                )
        if registration_open:
            notes.extend(self._strangers_can_spend())
        return notes

    def _strangers_can_spend(self) -> list[str]:
        """With registration open: the shared pools a new account may spend at once."""
        notes = []
        for name, upstream in self.upstreams.items():
            credential = upstream.credential
            if not isinstance(credential, PoolCredential):
                continue
            reached = any(r.upstream == name and r.auth != ("none",) for r in self.routes)
            if not reached:
                continue
            if credential.shared_access == "everyone":
                why = f"upstreams.{name}.credential.shared_access is everyone"
            elif self.accounts.grants_pool(name):
                why = f"accounts.permissions grants {pool_permission(name)}"
            else:
                continue
            notes.append(
                f"registration is open and {why}: anyone who can reach the gateway can "
                f"register and spend the shared key pool of upstream {name!r}"
            )
        return notes
