"""Hello-world endpoints on Marquee's own server stack: the ceiling a benchmark compares with.

The same uvicorn configuration Marquee serves with (one worker, uvloop and httptools when
installed), answering every GET or POST with a small JSON body: as a bare ASGI callable, as
a Starlette route and as a FastAPI route.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from starlette.types import Receive, Scope, Send

from marquee.bench import stack as stacks
from marquee.bench.load import Call, fire, latency_ms
from marquee.bench.load import run as run_loop
from marquee.supervisor import Supervisor

Kind = Literal["asgi", "starlette", "fastapi"]
KINDS: tuple[Kind, ...] = ("asgi", "starlette", "fastapi")

_BODY = b'{"message":"hello"}'


async def bare_asgi(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:  # read (and drop) the request body
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(_BODY)),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _BODY})


def starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def hello(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"message": "hello"})

    routes = [Route("/{path:path}", hello, methods=["GET", "POST"])]
    return Starlette(routes=routes)


def fastapi_app() -> Any:
    from fastapi import FastAPI

    app = FastAPI()

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def hello(path: str) -> dict[str, str]:
        return {"message": "hello"}

    return app


def app_of(kind: Kind) -> Any:
    if kind == "asgi":
        return bare_asgi
    if kind == "starlette":
        return starlette_app()
    return fastapi_app()


def measure(kind: Kind, calls: list[Call], *, concurrency: int, workdir: Path) -> dict[str, Any]:
    """Serve the ``kind`` hello world in its own process and send it ``calls`` (their URLs'
    paths, on its port): requests per second, latency and the server's CPU seconds."""
    port = stacks.free_port()
    server = stacks.program(
        f"hello-{kind}",
        port,
        ["bench", "hello-server", kind, "--port", str(port)],
        stacks.clean_environment(),
        workdir / f"hello-{kind}-{port}.out",
    )
    with Supervisor([server]) as running:
        running.wait_ready()
        pid = running.children[0].pid
        aimed = [replace(call, url=server.url + urlsplit(call.url).path) for call in calls]
        before = stacks.cpu_seconds(pid)
        run = run_loop(fire(aimed, concurrency=concurrency, keep_body=lambda _: False))
        cpu = stacks.cpu_seconds(pid) - before
    ok = sum(1 for answer in run.answers if answer.status == 200)
    return {
        "kind": kind,
        "requests": len(run.answers),
        "ok": ok,
        "seconds": run.seconds,
        "requests_per_second": len(run.answers) / run.seconds if run.seconds else 0.0,
        "latency_ms": latency_ms(run.answers),
        "server_cpu_seconds": round(cpu, 3),
        "client_cpu_seconds": run.client_cpu_seconds,
    }
