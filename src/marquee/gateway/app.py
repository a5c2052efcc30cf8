"""The gateway: routes public paths to services, with request IDs, rate limits, edge auth and
admission.

A plain ASGI app rather than a framework route table: it is on every request's path, so it
does the least it can, and everything that can be worked out once is worked out in
``Gateway.__init__``. Its own few pages (health, readiness, metrics, the merged OpenAPI
document and the docs) are a small table of handlers next to it, and the web storefront
(``marquee.web``: ``/``, ``/assets/*`` and the front end's own routes) is served from memory
after them. Neither is rate limited: they never reach a service and cost less than the
rate-limit check would.

A request to a routed path goes through, in order: the rate limit (per client IP), edge
authentication (``edgeauth``), the body limit, the upstream's admission queue, and the
upstream call. Whatever happens, the client gets a response with its request ID, and the
gateway writes exactly one access-log line and counts the request once (by upstream, not by
path). With tracing on, the request is a server span and the upstream call a client span.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from urllib.parse import quote

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send

from marquee.gateway.admission import Admission, Rejected
from marquee.gateway.clientip import client_ip
from marquee.gateway.docs import ApiDocs
from marquee.gateway.edgeauth import Access, required_access
from marquee.gateway.limits import rate_limit_headers, rate_limit_policy, retry_after
from marquee.gateway.openapi import MergedDocument
from marquee.gateway.refusals import Key, SharedRefusals, without_max_age
from marquee.gateway.routing import route
from marquee.platform import telemetry
from marquee.platform.auth import TokenError, bearer_token, unauthorized
from marquee.platform.context import accept_request_id, request_id_var
from marquee.platform.kernel import Kernel
from marquee.platform.metrics import (
    GATEWAY_IN_FLIGHT,
    GATEWAY_WAITING,
    RATE_LIMITED,
    SHARED_REFUSALS,
    SHED,
    UNCOUNTED_ROUTES,
    UPSTREAM_ERRORS,
    RequestMeter,
    Sample,
    Scraper,
    scrape_sources,
)
from marquee.platform.problems import problem_response
from marquee.platform.transport import (
    AsgiTransport,
    Transport,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from marquee.platform.verified import VerifiedTokens
from marquee.web import Storefront
from marquee.web.site import Asset, asset_response

access_log = logging.getLogger("marquee.gateway.access")
log = logging.getLogger("marquee.gateway")

MAX_BODY_BYTES = 1024 * 1024
# Not passed upstream: hop-by-hop fields, what the gateway sets itself (request ID, client
# address, length of the body it read whole), and what a proxy must not forward.
_DROP_REQUEST_HEADERS = frozenset(
    {
        b"host",
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"transfer-encoding",
        b"upgrade",
        b"expect",
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
        "ratelimit-limit",
        "ratelimit-remaining",
        "ratelimit-reset",
        "ratelimit-policy",
    }
)
_NO_BODY_STATUSES = frozenset({204, 304})
# Paths and queries made only of these go upstream as they are; anything else is escaped so
# that both transports (in-process and HTTP) receive a valid, percent-encoded URL.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9/._~!$&'()*+,;=:@-]*")
_PATH_SAFE = "/!$&'()*+,;=:@"
_PLAIN_QUERY = re.compile(rb"[A-Za-z0-9._~!$&'()*+,;=:@/?%-]*")
_QUERY_SAFE = "!$&'()*+,;=:@/?%"
# 499: the client closed the connection before the answer (nginx's convention), for the log.
_CLIENT_CLOSED = 499
_LIMITER_WARNING_INTERVAL = 10.0
_OWN_PAGE_METHODS = frozenset({"GET", "HEAD"})

Lifespan = Callable[[], AbstractAsyncContextManager[None]]
Page = Callable[[], Awaitable[Response]]


class _TooLarge(Exception):
    pass


class _ClientGone(Exception):
    pass


def upstream_path(path: str) -> str:
    """``path`` (decoded, as in the ASGI scope) as a percent-encoded URL path."""
    if _PLAIN_PATH.fullmatch(path):
        return path
    return quote(path, safe=_PATH_SAFE)


def upstream_query(query: bytes) -> str:
    """The raw query string as ASCII: kept as sent when it is, else with odd bytes escaped."""
    if _PLAIN_QUERY.fullmatch(query):
        return query.decode("ascii")
    return quote(query, safe=_QUERY_SAFE)


def _version() -> str:
    try:
        return package_version("marquee")
    except PackageNotFoundError:
        return "0"


class Gateway:
    """The public entry point. ``upstreams`` maps each service name to the way to reach it.

    Contract: every HTTP request gets exactly one response carrying ``X-Request-ID`` (the
    client's, when well formed), and one access-log line; an unexpected error becomes a 500
    problem, logged once. Upstream answers, errors included, pass through unchanged.
    """

    def __init__(
        self,
        kernel: Kernel,
        upstreams: Mapping[str, Transport],
        *,
        lifespan: Lifespan | None = None,
        storefront: Storefront | bool = True,
    ) -> None:
        self.kernel = kernel
        self.settings = s = kernel.settings
        self.upstreams = dict(upstreams)
        self.lifespan = lifespan
        self.admission = {
            name: Admission(
                s.upstream_concurrency, s.upstream_queue, s.upstream_queue_timeout_seconds
            )
            for name in self.upstreams
        }
        self.trusted = s.trusted_networks
        self.refusals = SharedRefusals()
        self.rate = s.rate_limit_per_second
        self.burst = s.burst
        self.policy_header = (b"ratelimit-policy", rate_limit_policy(self.rate, self.burst))
        self.openapi = MergedDocument(self.upstreams, route, version=_version())
        self.docs = ApiDocs("/openapi.json", "Marquee API")
        self.pages: dict[str, Page] = {
            "/healthz": self._healthz,
            "/readyz": self._readyz,
            "/metrics": self._metrics,
            "/openapi.json": self._openapi,
            "/docs": self._docs,
            "/redoc": self._redoc,
        }
        # True: the storefront shipped in marquee.web; False: no storefront (API only).
        if storefront is True:
            storefront = Storefront.from_package()
        self.storefront = storefront if isinstance(storefront, Storefront) else None
        self._limiter_warned_at = float("-inf")
        self.meter = RequestMeter("gateway")
        self.scraper = Scraper()
        tracer = telemetry.tracer_for(s, "gateway")
        self._serve_http: Callable[[Scope, Receive, Send], Awaitable[None]] = (
            self._http if tracer is None else telemetry.TracingMiddleware(self._http, tracer)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":
            if kind == "lifespan":
                await self._lifespan(receive, send)
            elif kind == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        await self._serve_http(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        incoming: bytes | None = None
        forwarded: bytes | None = None
        authorization: bytes | None = None
        length: bytes | None = None
        idempotent = False
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                incoming = value
            elif key == b"x-forwarded-for":
                # Several header lines are one comma-separated list, in order.
                forwarded = value if forwarded is None else forwarded + b"," + value
            elif key == b"authorization":
                authorization = value
            elif key == b"content-length":
                length = value
            elif key == b"idempotency-key":
                idempotent = True
        request_id = accept_request_id(incoming.decode("latin-1") if incoming else None)
        context = request_id_var.set(request_id)
        method: str = scope["method"]
        path: str = scope["path"]
        head = method == "HEAD"
        extra_headers = [(b"x-request-id", request_id.encode("latin-1"))]
        status = 0
        counted_as = "unmatched"  # the route label: the upstream, or the gateway's own page

        async def reply(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # Nothing upstream of here sets X-Request-ID (the proxy drops the service's).
                message["headers"] = [*message.get("headers", ()), *extra_headers]
            elif head and message.get("body"):
                # A HEAD answer has the GET answer's headers and no body.
                message = {**message, "body": b""}
            await send(message)

        try:
            service = route(path)
            if service is None or service not in self.upstreams:
                counted_as = path if path in self.pages else "unmatched"
                await self._own_page(scope, receive, reply, method, path)
                return
            counted_as = service
            peer = scope["client"][0] if scope.get("client") else "0.0.0.0"  # noqa: S104
            ip = client_ip(peer, forwarded.decode("latin-1") if forwarded else None, self.trusted)
            refusal = await self._rate_limit(ip, extra_headers)
            if refusal is None:
                refusal = self._edge_auth(method, path, authorization)
            if refusal is not None:
                await refusal(scope, receive, reply)
                return
            # Kept refusals answer only POSTs without an Idempotency-Key (gateway/refusals.py).
            shareable = method == "POST" and not idempotent
            await self._proxy(scope, receive, reply, service, ip, length, head, shareable)
        except _ClientGone:
            status = _CLIENT_CLOSED
        except Exception:
            if status:
                # The answer is already on its way; whatever failed cannot change it.
                log.debug("Error after the response started", exc_info=True)
            else:
                log.exception("Gateway error on %s %s", method, path)
                await self._send_internal_error(scope, receive, reply)
        finally:
            elapsed = time.perf_counter() - started
            access_log.info("%s %s status=%d latency=%dms", method, path, status, elapsed * 1000)
            if counted_as not in UNCOUNTED_ROUTES:
                self.meter.observe(method, counted_as, status, elapsed)
            request_id_var.reset(context)

    async def _send_internal_error(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await problem_response(500, "internal_error", "Something went wrong on our side.")(
                scope, receive, send
            )
        except Exception:
            log.debug("Could not send the 500 answer", exc_info=True)

    async def _rate_limit(
        self, ip: str, extra_headers: list[tuple[bytes, bytes]]
    ) -> Response | None:
        """None when ``ip`` may go on (its RateLimit headers added), else the 429 answer.

        When the cache cannot be reached the request is let through: an outage of the rate
        limiter must not become an outage of the platform. A warning says so, at most every
        few seconds.
        """
        try:
            decision = await self.kernel.cache.rate_limit(
                f"rl:{ip}", rate=self.rate, burst=self.burst
            )
        except Exception as exc:
            now = time.monotonic()
            if now - self._limiter_warned_at >= _LIMITER_WARNING_INTERVAL:
                self._limiter_warned_at = now
                log.warning("Rate limiter unavailable, letting requests through: %r", exc)
            return None
        extra_headers += rate_limit_headers(decision)
        extra_headers.append(self.policy_header)
        if decision.allowed:
            return None
        RATE_LIMITED.inc()
        wait = retry_after(decision)
        return problem_response(
            429,
            "rate_limited",
            f"Too many requests from {ip}; retry in {wait} s.",
            headers={"Retry-After": str(wait)},
            retry_after=wait,
        )

    @property
    def verified(self) -> VerifiedTokens:
        """The kernel's, shared with every service in this process."""
        return self.kernel.verified

    def _edge_auth(self, method: str, path: str, authorization: bytes | None) -> Response | None:
        """None when the caller may reach the upstream, else the 401 or 403 answer."""
        access = required_access(method, path)
        if access is Access.PUBLIC:
            return None
        token = bearer_token(authorization.decode("latin-1") if authorization else None)
        if token is None:
            return problem_response(
                401,
                "unauthorized",
                "Sign in first: send Authorization: Bearer <access token>.",
                headers={"WWW-Authenticate": 'Bearer realm="marquee"'},
            )
        try:
            principal = self.verified.principal(token)
        except TokenError as exc:
            problem = unauthorized(f"The access token is not valid ({exc}); refresh it or sign in.")
            return problem_response(
                problem.status, problem.code, problem.detail, headers=problem.headers
            )
        if access is Access.ADMIN and not principal.is_admin:
            return problem_response(403, "forbidden", "This needs the admin role.")
        return None

    async def _proxy(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        service: str,
        ip: str,
        length: bytes | None,
        head: bool,
        shareable: bool,
    ) -> None:
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared < 0:
                await problem_response(400, "bad_request", "Content-Length is not a number.")(
                    scope, receive, send
                )
                return
            if declared > MAX_BODY_BYTES:
                await _too_large()(scope, receive, send)
                return
        try:
            body = await _read_body(receive, MAX_BODY_BYTES)
        except _TooLarge:
            await _too_large()(scope, receive, send)
            return
        shared: Key | None = None
        if shareable:
            query = scope.get("query_string", b"")
            shared = self.refusals.key("POST", scope["path"], query, body)
            kept = self.refusals.find(shared) if shared is not None else None
            if kept is not None:
                SHARED_REFUSALS.labels(service).inc()
                status, kept_headers, payload = kept.render(request_id_var.get() or "-")
                await send(
                    {"type": "http.response.start", "status": status, "headers": kept_headers}
                )
                await send({"type": "http.response.body", "body": payload})
                return
        admission = self.admission[service]
        try:
            await admission.acquire()
        except Rejected as exc:
            SHED.labels(service, exc.reason).inc()
            await problem_response(
                503,
                "overloaded",
                f"The {service} service is at capacity ({exc.reason}); retry shortly.",
                headers={"Retry-After": "1"},
                retry_after=1,
            )(scope, receive, send)
            return
        try:
            headers = [
                (k.decode("latin-1"), v.decode("latin-1"))
                for k, v in scope["headers"]
                if k not in _DROP_REQUEST_HEADERS
            ]
            headers.append(("x-forwarded-for", ip))
            answer = await self.upstreams[service].request(
                # Services answer GET only; the gateway makes HEAD out of it by dropping the body.
                "GET" if head else scope["method"],
                upstream_path(scope["path"]),
                query=upstream_query(scope.get("query_string", b"")),
                headers=headers,
                body=body,
            )
        except UpstreamTimeout:
            UPSTREAM_ERRORS.labels(service, "timeout").inc()
            log.warning("Upstream %s timed out", service)
            await problem_response(
                504, "upstream_timeout", f"The {service} service did not answer in time."
            )(scope, receive, send)
            return
        except UpstreamUnavailable as exc:
            UPSTREAM_ERRORS.labels(service, "unavailable").inc()
            log.warning("Upstream %s unavailable: %s", service, exc)
            await problem_response(
                502, "upstream_unavailable", f"The {service} service is unavailable; retry shortly."
            )(scope, receive, send)
            return
        except Exception:
            UPSTREAM_ERRORS.labels(service, "bad_answer").inc()
            log.exception("Upstream %s failed", service)
            await problem_response(
                502, "bad_gateway", f"The {service} service gave no usable answer."
            )(scope, receive, send)
            return
        finally:
            admission.release()
        response_headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1"))
            for k, v in answer.headers
            if k.lower() not in _DROP_RESPONSE_HEADERS
        ]
        if 200 <= answer.status < 300 and scope["method"] not in ("GET", "HEAD"):
            self.refusals.forget()
        elif shared is not None:
            self.refusals.keep(shared, answer.status, response_headers, answer.body)
        response_headers = without_max_age(response_headers)
        if answer.status not in _NO_BODY_STATUSES:
            response_headers.append((b"content-length", b"%d" % len(answer.body)))
        await send(
            {"type": "http.response.start", "status": answer.status, "headers": response_headers}
        )
        await send({"type": "http.response.body", "body": answer.body})

    # -- the gateway's own pages -----------------------------------------------------------

    async def _own_page(
        self, scope: Scope, receive: Receive, send: Send, method: str, path: str
    ) -> None:
        page = self.pages.get(path)
        asset: Asset | None = None
        if page is None:
            asset = self.docs.find(path)
        if page is None and asset is None and self.storefront is not None:
            asset = self.storefront.find(path)
        if page is None and asset is None:
            page_not_found = None
            if self.storefront is not None and method in _OWN_PAGE_METHODS:
                page_not_found = self.storefront.not_found(path, scope["headers"])
            response = page_not_found or problem_response(
                404, "not_found", f"No such endpoint: {path}"
            )
        elif method not in _OWN_PAGE_METHODS:
            response = problem_response(
                405,
                "method_not_allowed",
                f"{path} answers GET and HEAD only.",
                headers={"Allow": "GET, HEAD"},
            )
        elif asset is not None:
            response = asset_response(asset, scope["headers"])
        else:
            assert page is not None
            response = await page()
        await response(scope, receive, send)

    async def _healthz(self) -> Response:
        return JSONResponse({"status": "ok", "service": "gateway"})

    async def _readyz(self) -> Response:
        async def upstream(transport: Transport) -> str:
            try:
                answer = await transport.request("GET", "/readyz", timeout=2.0)
            except Exception as exc:
                return f"error: {type(exc).__name__}"
            return "ok" if answer.status == 200 else f"status {answer.status}"

        async def cache() -> str:
            try:
                await asyncio.wait_for(self.kernel.cache.ping(), 2.0)
            except Exception as exc:
                return f"error: {type(exc).__name__}"
            return "ok"

        names = list(self.upstreams)
        results = await asyncio.gather(*(upstream(self.upstreams[n]) for n in names), cache())
        checks = dict(zip([*names, "cache"], results, strict=True))
        if all(value == "ok" for value in checks.values()):
            return JSONResponse({"status": "ready", "service": "gateway", "checks": checks})
        return problem_response(503, "not_ready", "A dependency is unavailable.", checks=checks)

    async def _metrics(self) -> Response:
        """The gateway's metrics; in all-in-one mode also every in-process service's sources
        (seats, orders, outbox, notifications) and the shared broker's, so one scrape sees all.
        """
        apps = [t.app for t in self.upstreams.values() if isinstance(t, AsgiTransport)]
        brokers = [self.kernel.broker]
        for app in apps:
            kernel = getattr(getattr(app, "state", None), "kernel", None)
            if kernel is not None:
                brokers.append(kernel.broker)
        sources = scrape_sources(apps, brokers)
        sources["gateway.admission"] = self._admission_samples
        body = await self.scraper.render(sources)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def _admission_samples(self) -> list[Sample]:
        samples: list[Sample] = []
        for name, admission in self.admission.items():
            samples.append(GATEWAY_IN_FLIGHT.sample(admission.active, name))
            samples.append(GATEWAY_WAITING.sample(admission.waiting, name))
        return samples

    async def _openapi(self) -> Response:
        return Response(await self.openapi.json(), media_type="application/json")

    async def _docs(self) -> Response:
        return self.docs.swagger

    async def _redoc(self) -> Response:
        return self.docs.redoc

    # -- lifespan --------------------------------------------------------------------------

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


def _too_large() -> Response:
    return problem_response(
        413, "payload_too_large", f"The request body is larger than {MAX_BODY_BYTES} bytes."
    )


async def _read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body; _TooLarge past ``limit`` bytes, _ClientGone on a disconnect."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
