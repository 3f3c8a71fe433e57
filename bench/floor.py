"""The floor: the least a Python reverse proxy can do (uvicorn + aiohttp, no extras).

Usage: python bench/floor.py --upstream http://127.0.0.1:PORT --port P
"""

from __future__ import annotations

import argparse
from typing import Any

import aiohttp
import uvicorn
from yarl import URL

HOP_BY_HOP = frozenset(
    b"connection keep-alive proxy-authenticate proxy-authorization proxy-connection"
    b" te trailer transfer-encoding upgrade".split()
)
REQUEST_DROP = HOP_BY_HOP | {b"host"}
SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")


class Floor:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self.session is None:
            self.session = aiohttp.ClientSession(
                auto_decompress=False,
                skip_auto_headers=SKIP_AUTO_HEADERS,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        target = self.upstream + scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode("latin-1")
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in scope["headers"]
            if name not in REQUEST_DROP
        ]
        async with self.session.request(
            scope["method"],
            URL(target, encoded=True),
            headers=headers,
            data=body or None,
            allow_redirects=False,
        ) as response:
            content = await response.read()
            out = [(n, v) for n, v in response.raw_headers if n.lower() not in HOP_BY_HOP]
        await send({"type": "http.response.start", "status": response.status, "headers": out})
        await send({"type": "http.response.body", "body": content})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        Floor(args.upstream),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        server_header=False,
        date_header=False,
    )


if __name__ == "__main__":
    main()
