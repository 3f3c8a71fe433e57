"""A chat relay in front of the fake n8n, run as a real `ferryman serve`, and an SSE reader."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from tests.fakes.n8n import FakeN8n

SHOP = "https://shop.example"
BLOG = "https://blog.example"
EVIL = "https://evil.example"
SECRET = "n8n-shared-secret-" + "s" * 32


def relay_gateway(**relay: Any) -> dict[str, Any]:
    """Seed 004's shape: the webhook, origins and secret from the environment."""
    upstream = relay.pop("upstream_spec", {})
    return {
        "upstreams": {"n8n": {"url": "${N8N_WEBHOOK_URL}", "timeout": {"read": 2}, **upstream}},
        "routes": [],
        "relays": [
            {
                "upstream": "n8n",
                "allow_origins": "${ALLOWED_ORIGINS}",
                "workflow": {"token": {"secret_env": "SESSION_SECRET_KEY"}, "heartbeat": 0.2},
                **relay,
            }
        ],
    }


def relay_env(n8n: FakeN8n) -> dict[str, str]:
    return {
        "N8N_WEBHOOK_URL": n8n.webhook_url,
        "ALLOWED_ORIGINS": f"{SHOP}, {BLOG}",
        "SESSION_SECRET_KEY": SECRET,
    }


@dataclass
class Sse:
    status: int
    headers: Any
    """Case-insensitive (a CIMultiDict)."""
    events: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)
    comments: list[float] = field(default_factory=list)
    ended_at: float = 0.0

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [data for _, name, data in self.events if name == kind]

    @property
    def text(self) -> str:
        return "".join(data["content"] for data in self.of("chunk"))

    @property
    def kinds(self) -> list[str]:
        return [name for _, name, _ in self.events]


async def create_session(
    http: aiohttp.ClientSession, base: str, origin: str = SHOP
) -> tuple[str, str, aiohttp.ClientResponse]:
    """(session id, cookie token, the response)."""
    body = {"origin_domain": origin.split("//")[1], "page_url": origin + "/products/1"}
    async with http.post(
        f"{base}/api/v1/session/create", json=body, headers={"Origin": origin}
    ) as r:
        assert r.status == 200, await r.text()
        data = await r.json()
        cookie = r.headers["Set-Cookie"]
    token = cookie.split(";")[0].split("=", 1)[1]
    return data["session_id"], token, r


async def send_message(
    http: aiohttp.ClientSession,
    base: str,
    token: str,
    message: str,
    origin: str = SHOP,
    path: str = "/api/v1/chat/stream",
) -> Sse:
    headers = {"Origin": origin, "Cookie": f"chat_session_id={token}"}
    async with http.post(
        base + path, json={"message": message, "page_url": origin + "/"}, headers=headers
    ) as r:
        sse = Sse(r.status, r.headers.copy())
        if r.headers.get("Content-Type", "").startswith("application/json"):
            sse.events.append((time.monotonic(), "json", await r.json()))
            return sse
        name, data = "message", b""
        async for raw in r.content:
            line = raw.rstrip(b"\r\n")
            if line.startswith(b":"):
                sse.comments.append(time.monotonic())
            elif line.startswith(b"event: "):
                name = line[7:].decode()
            elif line.startswith(b"data: "):
                data = line[6:]
            elif not line and data:
                sse.events.append((time.monotonic(), name, orjson.loads(data)))
                name, data = "message", b""
        sse.ended_at = time.monotonic()
    return sse
