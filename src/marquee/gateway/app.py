"""The gateway: routes public paths to services, with request IDs, rate limits and admission.

A plain ASGI app rather than a framework route table: it is on every request's path, so it
does the least it can. Its own few pages (health, docs) are served by a small FastAPI app.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send

from marquee.gateway.admission import Admission, Rejected
from marquee.gateway.clientip import client_ip
from marquee.gateway.routing import route
from marquee.platform.context import accept_request_id, request_id_var
from marquee.platform.kernel import Kernel
from marquee.platform.problems import install_problem_handlers, problem_response
from marquee.platform.transport import Transport, UpstreamTimeout, UpstreamUnavailable

access_log = logging.getLogger("marquee.gateway.access")
log = logging.getLogger("marquee.gateway")

MAX_BODY_BYTES = 1024 * 1024
_DROP_REQUEST_HEADERS = frozenset(
    {
        b"host",
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"upgrade",
        b"x-request-id",
        b"x-forwarded-for",
        b"content-length",
        b"te",
        b"trailer",
    }
)
_DROP_RESPONSE_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "x-request-id",
        "server",
        "date",
    }
)

Lifespan = Callable[[], AbstractAsyncContextManager[None]]


class _TooLarge(Exception):
    pass


class Gateway:
    """The public entry point. ``upstreams`` maps each service name to the way to reach it."""

    def __init__(
        self,
        kernel: Kernel,
        upstreams: Mapping[str, Transport],
        *,
        lifespan: Lifespan | None = None,
    ) -> None:
        self.kernel = kernel
        self.settings = kernel.settings
        self.upstreams = dict(upstreams)
        self.lifespan = lifespan
        s = self.settings
        self.admission = {
            name: Admission(
                s.upstream_concurrency, s.upstream_queue, s.upstream_queue_timeout_seconds
            )
            for name in self.upstreams
        }
        self.trusted = self.settings.trusted_networks
        self.own = _own_pages(self)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            await self.own(scope, receive, send)
            return
        started = time.perf_counter()
        incoming = None
        forwarded = None
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                incoming = value.decode("latin-1")
            elif key == b"x-forwarded-for":
                forwarded = value.decode("latin-1")
        request_id = accept_request_id(incoming)
        token = request_id_var.set(request_id)
        status = 500
        extra_headers: list[tuple[bytes, bytes]] = [(b"x-request-id", request_id.encode())]

        async def send_tracked(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *(h for h in message.get("headers", []) if h[0] != b"x-request-id"),
                    *extra_headers,
                ]
            await send(message)

        try:
            path: str = scope["path"]
            service = route(path)
            if service is None or service not in self.upstreams:
                await self.own(scope, receive, send_tracked)
                return
            peer = scope["client"][0] if scope.get("client") else "0.0.0.0"  # noqa: S104
            ip = client_ip(peer, forwarded, self.trusted)
            decision = await self.kernel.cache.rate_limit(
                f"rl:{ip}", rate=self.settings.rate_limit_per_second, burst=self.settings.burst
            )
            extra_headers += [
                (b"ratelimit-limit", str(decision.limit).encode()),
                (b"ratelimit-remaining", str(decision.remaining).encode()),
                (b"ratelimit-reset", str(math.ceil(decision.reset_after)).encode()),
            ]
            if not decision.allowed:
                retry = str(max(1, math.ceil(decision.retry_after)))
                await problem_response(
                    429,
                    "rate_limited",
                    f"Too many requests from {ip}; retry in {retry} s.",
                    headers={"Retry-After": retry},
                    retry_after=float(retry),
                )(scope, receive, send_tracked)
                return
            await self._proxy(scope, receive, send_tracked, service, ip)
        finally:
            latency = (time.perf_counter() - started) * 1000
            access_log.info(
                "%s %s status=%d latency=%dms", scope["method"], scope["path"], status, latency
            )
            request_id_var.reset(token)

    async def _proxy(
        self, scope: Scope, receive: Receive, send: Send, service: str, ip: str
    ) -> None:
        try:
            body = await _read_body(receive, MAX_BODY_BYTES)
        except _TooLarge:
            await problem_response(
                413, "payload_too_large", f"The request body is larger than {MAX_BODY_BYTES} bytes."
            )(scope, receive, send)
            return
        admission = self.admission[service]
        try:
            await admission.acquire()
        except Rejected as exc:
            await problem_response(
                503,
                "overloaded",
                f"The {service} service is at capacity ({exc.reason}); retry shortly.",
                headers={"Retry-After": "1"},
            )(scope, receive, send)
            return
        try:
            headers = [
                (k.decode("latin-1"), v.decode("latin-1"))
                for k, v in scope["headers"]
                if k not in _DROP_REQUEST_HEADERS
            ]
            headers.append(("X-Forwarded-For", ip))
            answer = await self.upstreams[service].request(
                scope["method"],
                scope["path"],
                query=scope.get("query_string", b"").decode("latin-1"),
                headers=headers,
                body=body,
            )
        except UpstreamTimeout:
            await problem_response(
                504, "upstream_timeout", f"The {service} service did not answer in time."
            )(scope, receive, send)
            return
        except UpstreamUnavailable as exc:
            log.warning("Upstream %s unavailable: %s", service, exc)
            await problem_response(
                502, "upstream_unavailable", f"The {service} service is unavailable; retry shortly."
            )(scope, receive, send)
            return
        finally:
            admission.release()
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [
                    (k.lower().encode("latin-1"), v.encode("latin-1"))
                    for k, v in answer.headers
                    if k.lower() not in _DROP_RESPONSE_HEADERS
                ]
                + [(b"content-length", str(len(answer.body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": answer.body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        started = False
        try:
            async with self._running():
                started = True
                await send({"type": "lifespan.startup.complete"})
                await receive()  # lifespan.shutdown
        except Exception as exc:
            if not started:
                # One line for the operator; the CLI's preflight usually says it first.
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            log.exception("Error while shutting down")
        await send({"type": "lifespan.shutdown.complete"})

    @asynccontextmanager
    async def _running(self) -> AsyncIterator[None]:
        await self.kernel.start()
        try:
            if self.lifespan is None:
                yield
            else:
                async with self.lifespan():
                    yield
        finally:
            for transport in self.upstreams.values():
                await transport.close()
            await self.kernel.close()


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _own_pages(gateway: Gateway) -> FastAPI:
    app = FastAPI(title="Marquee", docs_url=None, redoc_url=None, openapi_url=None)
    install_problem_handlers(app)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": "gateway"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        checks: dict[str, str] = {}
        for name, transport in gateway.upstreams.items():
            try:
                answer = await transport.request("GET", "/readyz", timeout=2.0)
                checks[name] = "ok" if answer.status == 200 else f"status {answer.status}"
            except Exception as exc:
                checks[name] = f"error: {type(exc).__name__}"
        try:
            await gateway.kernel.cache.ping()
            checks["cache"] = "ok"
        except Exception as exc:
            checks["cache"] = f"error: {type(exc).__name__}"
        if all(value == "ok" for value in checks.values()):
            return JSONResponse({"status": "ready", "service": "gateway", "checks": checks})
        return problem_response(503, "not_ready", "A dependency is unavailable.", checks=checks)

    @app.api_route(
        "/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False
    )
    async def not_found(path: str) -> Response:
        return problem_response(404, "not_found", f"No such endpoint: /{path}")

    return app
