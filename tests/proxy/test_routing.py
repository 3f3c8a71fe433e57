"""Route matching: longest whole-segment prefix, host before none, 405 without fallback."""

from __future__ import annotations

from typing import Any

import pytest

from ferryman.config.loading import parse_gateway
from ferryman.errors import MethodNotAllowed, NotFound
from ferryman.proxy.routing import RouteTable


def table(*routes: dict[str, Any]) -> RouteTable:
    gateway = parse_gateway(
        {"upstreams": {"up": {"url": "http://up.internal"}}, "routes": list(routes)},
        source="test",
    )
    return RouteTable.from_gateway(gateway)


def route(path: str, name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "path": path, "upstream": "up", **extra}


def test_longest_prefix_wins_on_whole_segments() -> None:
    t = table(route("/", "root"), route("/v1", "v1"), route("/v1/chat", "chat"))
    assert t.match("GET", "", "/v1/chat/completions").name == "chat"
    assert t.match("GET", "", "/v1/chat").name == "chat"
    assert t.match("GET", "", "/v1/chats").name == "v1"
    assert t.match("GET", "", "/v1").name == "v1"
    assert t.match("GET", "", "/v10").name == "root"
    assert t.match("GET", "", "/").name == "root"


def test_no_route_is_not_found() -> None:
    t = table(route("/v1", "v1"))
    with pytest.raises(NotFound):
        t.match("GET", "", "/v2/x")
    with pytest.raises(NotFound):
        t.match("GET", "", "/")


def test_wrong_method_is_405_and_never_falls_back_to_a_shorter_prefix() -> None:
    t = table(route("/", "root"), route("/admin", "admin", methods=["get", "HEAD"]))
    assert t.match("GET", "", "/admin/x").name == "admin"
    with pytest.raises(MethodNotAllowed) as info:
        t.match("POST", "", "/admin/x")
    assert info.value.allow == ("GET", "HEAD")
    assert t.match("POST", "", "/other").name == "root"


def test_same_prefix_split_by_method() -> None:
    t = table(route("/x", "read", methods=["GET"]), route("/x", "write", methods=["POST"]))
    assert t.match("GET", "", "/x").name == "read"
    assert t.match("POST", "", "/x/y").name == "write"
    with pytest.raises(MethodNotAllowed) as info:
        t.match("DELETE", "", "/x")
    assert info.value.allow == ("GET", "POST")


def test_host_bound_routes_beat_host_less_ones() -> None:
    t = table(
        route("/", "any"),
        route("/", "api", host="api.example.com"),
        route("/", "tenant", host="*.tenants.example.com"),
    )
    assert t.match("GET", "api.example.com", "/x").name == "api"
    assert t.match("GET", "other.example.com", "/x").name == "any"
    assert t.match("GET", "a.tenants.example.com", "/x").name == "tenant"
    assert t.match("GET", "tenants.example.com", "/x").name == "any"


def test_host_mismatch_falls_to_a_shorter_prefix() -> None:
    t = table(route("/", "root"), route("/api", "api", host="api.example.com"))
    assert t.match("GET", "www.example.com", "/api/x").name == "root"
