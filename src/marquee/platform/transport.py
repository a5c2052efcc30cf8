"""How one service reaches another: in-process ASGI calls, or pooled HTTP across instances.

Call sites never know which: a ``Transport`` takes a request and returns the whole response.
All-in-one mode hands each client an ``AsgiTransport`` to the other app in the same process;
distributed mode an ``HttpTransport`` over an aiohttp session (measured here at about 9x the
throughput of an httpx client for a proxy hop) spread round-robin over the service's instances.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote

import aiohttp
import orjson
from starlette.types import ASGIApp, Message
from yarl import URL

from marquee.platform.context import REQUEST_ID_HEADER, current_request_id
from marquee.platform.telemetry import client_span

Headers = list[tuple[str, str]]


class UpstreamUnavailable(Exception):
    """No instance of the service answered (connection refused, reset or DNS failure)."""


class UpstreamTimeout(Exception):
    """The service did not answer within the client's timeout."""


@dataclass(slots=True)
class Response:
    status: int
    headers: Headers = field(default_factory=list)
    body: bytes = b""

    def json(self) -> Any:
        return orjson.loads(self.body) if self.body else None

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return None


class Transport(Protocol):
    """Send one request to a service and return its whole response.

    Raises UpstreamUnavailable when no instance can be reached and UpstreamTimeout when the
    answer takes longer than ``timeout`` seconds. Any HTTP status is a normal response.
    """

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: str = "",
        headers: Headers | None = None,
        body: bytes = b"",
        timeout: float | None = None,
    ) -> Response: ...

    async def close(self) -> None: ...


def _with_request_id(headers: Headers | None) -> Headers:
    result = list(headers or [])
    request_id = current_request_id()
    if request_id and not any(k.lower() == "x-request-id" for k, _ in result):
        result.append((REQUEST_ID_HEADER, request_id))
    return result


class _TracedTransport:
    """The ``request`` both transports share: a client span (when tracing is on) around the
    transport's own ``_request``."""

    peer: str

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: str = "",
        headers: Headers | None = None,
        body: bytes = b"",
        timeout: float | None = None,
    ) -> Response:
        with client_span(method, self.peer, path) as span:
            if span is not None:
                headers = span.inject(headers)
            answer = await self._request(method, path, query, headers, body, timeout)
            if span is not None:
                span.answered(answer.status)
            return answer

    async def _request(
        self,
        method: str,
        path: str,
        query: str,
        headers: Headers | None,
        body: bytes,
        timeout: float | None,
    ) -> Response:
        raise NotImplementedError


class AsgiTransport(_TracedTransport):
    """Calls an ASGI app in this process: no sockets, no serialisation beyond the body."""

    def __init__(self, app: ASGIApp, *, timeout: float = 10.0, client: str = "127.0.0.1") -> None:
        self.app = app
        self.timeout = timeout
        self.client = client
        # Who is called, for tracing: the service's name when the app is a service's.
        self.peer: str = getattr(getattr(app, "state", None), "service", None) or "asgi"

    async def _request(
        self,
        method: str,
        path: str,
        query: str,
        headers: Headers | None,
        body: bytes,
        timeout: float | None,
    ) -> Response:
        raw_headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in _with_request_id(headers)
        ]
        if body and not any(k == b"content-length" for k, _ in raw_headers):
            raw_headers.append((b"content-length", str(len(body)).encode()))
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method.upper(),
            "scheme": "http",
            # ``path`` is the URL path as sent over HTTP (percent-encoded); a server decodes it.
            "path": unquote(path),
            "raw_path": path.encode("utf-8"),
            "root_path": "",
            "query_string": query.encode("latin-1"),
            "headers": raw_headers,
            "client": (self.client, 0),
            "server": ("marquee.internal", 80),
        }
        sent = False
        response = Response(status=500)
        chunks: list[bytes] = []
        done = asyncio.Event()

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                response.status = message["status"]
                response.headers = [
                    (k.decode("latin-1"), v.decode("latin-1"))
                    for k, v in message.get("headers", [])
                ]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    done.set()

        try:
            async with asyncio.timeout(timeout or self.timeout):
                await self.app(scope, receive, send)
        except TimeoutError:
            raise UpstreamTimeout(path) from None
        except Exception:
            # Starlette re-raises after its 500 handler has answered (so servers can log it);
            # the answer is what the caller gets, as it would over HTTP.
            if not done.is_set():
                raise
        finally:
            done.set()
        response.body = b"".join(chunks)
        return response

    async def close(self) -> None:
        return None


IDLE_CONNECTION_SECONDS = 15.0

_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host"}
)


class HttpTransport(_TracedTransport):
    """Pooled keep-alive HTTP to one or more instances of a service, round-robin with failover."""

    def __init__(
        self,
        base_urls: Sequence[str],
        *,
        timeout: float = 10.0,
        connections: int = 256,
        peer: str | None = None,
    ) -> None:
        if not base_urls:
            raise ValueError("HttpTransport needs at least one base URL")
        self.base_urls = [url.rstrip("/") for url in base_urls]
        self.timeout = timeout
        self.connections = connections
        self._next = itertools.cycle(range(len(self.base_urls)))
        self._session: aiohttp.ClientSession | None = None
        # Who is called, for tracing: the service's name, else the first instance's address.
        self.peer = peer or URL(self.base_urls[0]).raw_authority or self.base_urls[0]

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use so it binds to the running event loop.
        if self._session is None or self._session.closed:
            # Idle connections are dropped well before the server would close them (Marquee's
            # processes keep them 75 s), so a request never meets a connection being closed.
            connector = aiohttp.TCPConnector(
                limit=self.connections,
                limit_per_host=self.connections,
                ttl_dns_cache=300,
                keepalive_timeout=IDLE_CONNECTION_SECONDS,
            )
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",)
            )
        return self._session

    async def _request(
        self,
        method: str,
        path: str,
        query: str,
        headers: Headers | None,
        body: bytes,
        timeout: float | None,
    ) -> Response:
        session = self._client()
        send_headers = {k: v for k, v in _with_request_id(headers) if k.lower() not in _HOP_BY_HOP}
        client_timeout = aiohttp.ClientTimeout(total=timeout or self.timeout)
        last_error: Exception | None = None
        for _ in range(len(self.base_urls)):
            base = self.base_urls[next(self._next)]
            url = f"{base}{path}?{query}" if query else f"{base}{path}"
            try:
                async with session.request(
                    method,
                    URL(url, encoded=True),
                    headers=send_headers,
                    data=body or None,
                    timeout=client_timeout,
                    allow_redirects=False,
                ) as answer:
                    payload = await answer.read()
                    return Response(
                        status=answer.status,
                        headers=[
                            (k, v)
                            for k, v in answer.headers.items()
                            if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length"
                        ],
                        body=payload,
                    )
            except TimeoutError:
                raise UpstreamTimeout(url) from None
            except (aiohttp.ClientConnectionError, OSError) as exc:
                # Only connection failures are retried elsewhere: the request never arrived.
                if isinstance(exc, aiohttp.ServerDisconnectedError) and method not in (
                    "GET",
                    "HEAD",
                ):
                    raise UpstreamUnavailable(f"{url}: {exc}") from exc
                last_error = exc
        raise UpstreamUnavailable(f"{', '.join(self.base_urls)}: {last_error}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class ServiceError(Exception):
    """A service answered with an error status; ``body`` is its problem details, if any."""

    def __init__(self, service: str, status: int, body: Any) -> None:
        code = body.get("code") if isinstance(body, dict) else None
        super().__init__(f"{service} answered {status} {code or ''}".strip())
        self.service = service
        self.status = status
        self.body = body
        self.code: str | None = code


class ServiceClient:
    """Base of the typed clients in each service's ``client.py``: JSON in, JSON out."""

    service = "service"

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        query: str = "",
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Any:
        send: Headers = list((headers or {}).items())
        body = b""
        if json is not None:
            body = orjson.dumps(json)
            send.append(("content-type", "application/json"))
        answer = await self.transport.request(
            method, path, query=query, headers=send, body=body, timeout=timeout
        )
        data = answer.json() if answer.body else None
        if answer.status >= 400:
            raise ServiceError(self.service, answer.status, data)
        return data
