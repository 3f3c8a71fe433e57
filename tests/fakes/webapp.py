"""A small single-page web app on loopback, written as if it owned its host's root: the
app a pass route is meant to put under a prefix (seed 002).

    GET /               → 302 /login until the app's own cookie is set, then the page
    GET /login          sets `app_session` (Path=/) and redirects to /
    GET /static/app.css background from /static/bg.svg
    GET /static/app.js  a module: fetch("/api/data"), a WebSocket to "/ws" built from
                        location.host, and history.pushState("/done")
    GET /api/data       JSON with the app's own absolute URL in it
    GET /ws             WebSocket: answers "pong:" + each message
"""

from __future__ import annotations

from aiohttp import WSMsgType, web

INDEX = """<!doctype html>
<html><head><meta charset="utf-8"><title>App</title>
<link rel="stylesheet" href="/static/app.css">
<script type="module" src="/static/app.js"></script>
</head><body>
<h1>App</h1>
<img src="/static/bg.svg" alt="" width="10" height="10">
<p id="data">loading</p><p id="ws">connecting</p><p id="link"></p>
<a id="about" href="/about">about</a>
</body></html>
"""

CSS = "body { font-family: sans-serif; background: url(/static/bg.svg) no-repeat; }\n"

JS = """const data = await (await fetch("/api/data")).json();
document.querySelector("#data").textContent = data.message;
document.querySelector("#link").textContent = data.self;
const scheme = location.protocol === "https:" ? "wss://" : "ws://";
const ws = new WebSocket(scheme + location.host + "/ws");
ws.onopen = () => ws.send("ping");
ws.onmessage = (event) => {
  document.querySelector("#ws").textContent = event.data;
  history.pushState({}, "", "/done");
};
"""

SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'


class FakeWebApp:
    def __init__(self) -> None:
        self.paths: list[str] = []
        self.port = 0
        self._runner: web.AppRunner | None = None
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/", self.index)
        app.router.add_get("/login", self.login)
        app.router.add_get("/static/app.css", self.static(CSS, "text/css"))
        app.router.add_get("/static/app.js", self.static(JS, "text/javascript"))
        app.router.add_get("/static/bg.svg", self.static(SVG, "image/svg+xml"))
        app.router.add_get("/api/data", self.data)
        app.router.add_get("/ws", self.ws)
        self.app = app

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @web.middleware
    async def _record(self, request: web.Request, handler: web.Handler) -> web.StreamResponse:
        self.paths.append(request.path_qs)
        return await handler(request)

    async def start(self) -> FakeWebApp:
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        assert site._server is not None
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def index(self, request: web.Request) -> web.Response:
        if request.cookies.get("app_session") != "1":
            raise web.HTTPFound("/login")
        return web.Response(text=INDEX, content_type="text/html")

    async def login(self, request: web.Request) -> web.Response:
        response = web.HTTPFound("/")
        response.set_cookie("app_session", "1", path="/", httponly=True)
        raise response

    def static(self, body: str, content_type: str) -> web.Handler:
        async def serve(request: web.Request) -> web.Response:
            return web.Response(text=body, content_type=content_type)

        return serve

    async def data(self, request: web.Request) -> web.Response:
        return web.json_response({"message": "hello from the app", "self": f"{self.url}/api/data"})

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await ws.send_str("pong:" + msg.data)
        return ws
