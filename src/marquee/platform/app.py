"""The app factory every service uses: lifespan, health, problem details, request IDs, limits."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes

from fastapi import APIRouter, FastAPI, Request
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from marquee.platform import db, telemetry
from marquee.platform.context import (
    REQUEST_ID_HEADER,
    accept_request_id,
    request_id_var,
    service_var,
)
from marquee.platform.contract import document_problems
from marquee.platform.kernel import Kernel, StartupError
from marquee.platform.metrics import MetricsMiddleware, metrics_endpoint
from marquee.platform.migrations import NotMigratedError, require_current, upgrade
from marquee.platform.problems import install_problem_handlers, problem_response

log = logging.getLogger("marquee.app")

MAX_BODY_BYTES = 1024 * 1024
READY_CHECK_SECONDS = 2.0
_ASCII = "".join(chr(i) for i in range(128))
ServiceLifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


class RequestContextMiddleware:
    """Adopt a well-formed ``X-Request-ID`` or make one, expose it to logs, and echo it."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_query: bytes = scope.get("query_string", b"")
        if not raw_query.isascii():
            # Raw UTF-8 (``?city=上海`` as typed) would be decoded as Latin-1 by Starlette:
            # percent-encode those bytes so it reads exactly like what a browser sends.
            scope = dict(scope)
            scope["query_string"] = quote_from_bytes(raw_query, safe=_ASCII).encode("ascii")
        incoming = None
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = accept_request_id(incoming)
        # Kept in the scope too: Starlette's outermost 500 handler runs after the reset below.
        scope["request_id"] = request_id
        token = request_id_var.set(request_id)
        service_token = service_var.set(self.service)
        header = (REQUEST_ID_HEADER.lower().encode(), request_id.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0] != b"x-request-id"]
                headers.append(header)
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            service_var.reset(service_token)
            request_id_var.reset(token)


class BodyLimitMiddleware:
    """Refuse request bodies over ``limit`` bytes with 413 before any handler reads them."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope["headers"]:
            if key == b"content-length":
                try:
                    too_big = int(value) > self.limit
                except ValueError:
                    too_big = True
                if too_big:
                    await self._refuse(scope, receive, send)
                    return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            413, "payload_too_large", f"The request body is larger than {self.limit} bytes."
        )
        await response(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


def add_platform_middleware(app: FastAPI, service: str) -> None:
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(MetricsMiddleware, service=service)
    app.add_middleware(RequestContextMiddleware, service=service)


async def engine_of(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


def create_service_app(
    name: str,
    kernel: Kernel,
    *,
    routers: Sequence[APIRouter] = (),
    migrations: Path | None = None,
    lifespan: ServiceLifespan | None = None,
    title: str | None = None,
) -> FastAPI:
    """A service's FastAPI app. Its lifespan starts the kernel, opens and migrates the service's
    own database (when it has migrations), runs the service's own lifespan, and undoes it all."""
    settings = kernel.settings
    tracer = telemetry.tracer_for(settings, name)

    @asynccontextmanager
    async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Tasks the service starts inherit these, so their log lines are the service's, and
        # so are their spans (outbox relays, broker consumers) when tracing is on.
        service_token = service_var.set(name)
        tracer_token = telemetry.bind(tracer)
        try:
            async with _serving(app):
                yield
        finally:
            telemetry.unbind(tracer_token)
            service_var.reset(service_token)

    @asynccontextmanager
    async def _serving(app: FastAPI) -> AsyncIterator[None]:
        await kernel.start()
        engine: AsyncEngine | None = None
        try:
            if migrations is not None:
                url = settings.database_url_for(name)
                engine = db.create_engine(
                    url,
                    schema=name,
                    pool_size=settings.db_pool_size,
                    pool_timeout=settings.db_pool_timeout_seconds,
                    pooler=settings.db_pooler,
                )
                if tracer is not None:
                    telemetry.instrument_engine(engine)
                try:
                    if kernel.migrate:
                        await upgrade(engine, migrations, schema=name)
                    else:
                        await require_current(engine, migrations, schema=name)
                except (OSError, ConnectionError) as exc:
                    raise StartupError(
                        f"{name} database unreachable at {redact(url)}: {exc}"
                    ) from None
                except NotMigratedError as exc:
                    raise StartupError(str(exc)) from None
                app.state.engine = engine
            if lifespan is None:
                yield
            else:
                async with lifespan(app):
                    yield
        finally:
            if engine is not None:
                await engine.dispose()
            await kernel.close()

    app = FastAPI(
        title=title or f"Marquee {name}",
        lifespan=_lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.kernel = kernel
    app.state.service = name
    install_problem_handlers(app)
    document_problems(app)
    add_platform_middleware(app, name)
    if tracer is not None:
        # Outermost: the span covers the whole request, the other middleware included.
        app.add_middleware(telemetry.TracingMiddleware, tracer=tracer)
    app.include_router(health_router(name))
    for router in routers:
        app.include_router(router)
    return app


def health_router(name: str) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    router.add_api_route("/metrics", metrics_endpoint, methods=["GET"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": name}

    @router.get("/readyz")
    async def readyz(request: Request) -> Response:
        checks = await dependency_checks(request.app)
        ready = all(check == "ok" for check in checks.values())
        if ready:
            return JSONResponse({"status": "ready", "service": name, "checks": checks})
        return problem_response(
            503, "not_ready", "A dependency is unavailable.", service=name, checks=checks
        )

    return router


async def dependency_checks(app: FastAPI) -> dict[str, str]:
    """Each dependency's health: ``ok`` or the error it gave."""
    kernel: Kernel = app.state.kernel
    probes: dict[str, Callable[[], Any]] = {
        "cache": kernel.cache.ping,
        "broker": kernel.broker.ping,
    }
    engine: AsyncEngine | None = getattr(app.state, "engine", None)
    if engine is not None:
        probes["database"] = lambda: db.ping(engine)
    results: dict[str, str] = {}
    for dependency, probe in probes.items():
        try:
            # A hung dependency must not hang the readiness answer with it.
            async with asyncio.timeout(READY_CHECK_SECONDS):
                await probe()
            results[dependency] = "ok"
        except Exception as exc:
            results[dependency] = f"error: {type(exc).__name__}: {exc}"[:300]
    return results


def redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else f"{scheme}://{user}@{host}"
    return url
