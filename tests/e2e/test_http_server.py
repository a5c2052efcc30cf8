"""The server layer over a real socket: what it refuses is problem details with a request ID,
and a client that dribbles its headers or body is answered 408 and disconnected."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import uvicorn

from marquee.platform.server import MAX_HEADER_BYTES, MAX_TARGET_BYTES, HttpProtocol

# Short on purpose: the tests wait for these to pass. Assertions never depend on how long.
TIMEOUT = 0.5
WAIT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class App:
    """Echoes what it was asked; remembers whether it heard the client leave."""

    def __init__(self) -> None:
        self.disconnects = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnects += 1
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        answer = orjson.dumps({"query": scope["query_string"].decode(), "body": body.decode()})
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"%d" % len(answer))],
            }
        )
        await send({"type": "http.response.body", "body": answer})


@pytest.fixture
async def server() -> AsyncIterator[tuple[int, App]]:
    app = App()
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http=HttpProtocol.configured(header_timeout=TIMEOUT, body_timeout=TIMEOUT),
        lifespan="off",
        log_config=None,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(WAIT):
        while not server.started:  # noqa: ASYNC110 - uvicorn has no event for it
            await asyncio.sleep(0.02)
    yield port, app
    server.should_exit = True
    await task


async def exchange(port: int, data: bytes) -> tuple[bytes, Any]:
    """Send ``data``, read until the server closes; the head and the JSON body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    async with asyncio.timeout(WAIT):
        raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return head, orjson.loads(body) if body else None


def assert_problem(head: bytes, body: Any, status: int, code: str) -> None:
    assert head.split(b"\r\n")[0].startswith(b"HTTP/1.1 %d " % status)
    assert b"content-type: application/problem+json" in head
    assert body["status"] == status
    assert body["code"] == code
    assert f"x-request-id: {body['request_id']}".encode() in head


async def test_raw_utf8_in_the_query_is_served_like_its_percent_encoded_form(
    server: tuple[int, App],
) -> None:
    port, _ = server
    request = "GET /shows?city=上海 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    head, body = await exchange(port, request.encode())
    assert head.startswith(b"HTTP/1.1 200 ")
    assert body["query"] == "city=%E4%B8%8A%E6%B5%B7"


async def test_a_malformed_request_line_is_a_problem_with_a_request_id(
    server: tuple[int, App],
) -> None:
    port, _ = server
    head, body = await exchange(port, b"GET /a b\x01 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert_problem(head, body, 400, "bad_request")


async def test_a_negative_content_length_is_a_problem(server: tuple[int, App]) -> None:
    port, _ = server
    head, body = await exchange(port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n")
    assert_problem(head, body, 400, "bad_request")


async def test_a_request_target_over_the_limit_is_414(server: tuple[int, App]) -> None:
    port, _ = server
    path = b"/" + b"a" * (MAX_TARGET_BYTES + 1)
    head, body = await exchange(port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert_problem(head, body, 414, "uri_too_long")


async def test_headers_over_the_limit_are_431(server: tuple[int, App]) -> None:
    port, _ = server
    lines = b"".join(
        b"X-Filler-%d: %s\r\n" % (i, b"v" * 1000) for i in range(MAX_HEADER_BYTES // 1000)
    )
    head, body = await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n" + lines + b"\r\n")
    assert_problem(head, body, 431, "headers_too_large")


async def test_a_client_that_never_finishes_its_headers_gets_408(server: tuple[int, App]) -> None:
    port, _ = server
    head, body = await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    assert_problem(head, body, 408, "request_timeout")
    assert "headers" in body["detail"]


async def test_a_client_that_never_finishes_its_body_gets_408_and_the_app_hears_it_left(
    server: tuple[int, App],
) -> None:
    port, app = server
    head, body = await exchange(
        port,
        b"POST / HTTP/1.1\r\nHost: x\r\nX-Request-ID: slow-body-1\r\n"
        b'Content-Length: 100\r\n\r\n{"partial',
    )
    assert_problem(head, body, 408, "request_timeout")
    assert body["request_id"] == "slow-body-1"
    assert app.disconnects == 1


async def test_a_connection_that_sends_a_whole_request_is_not_timed_out(
    server: tuple[int, App],
) -> None:
    port, _ = server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(2):
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        async with asyncio.timeout(WAIT):
            status = await reader.readline()
            assert status.startswith(b"HTTP/1.1 200 ")
            while await reader.readline() != b"\r\n":
                pass
            await reader.readexactly(len(b'{"query":"","body":"{}"}'))
        # Longer than either read timeout: idle between requests is the keep-alive's business.
        await asyncio.sleep(TIMEOUT * 3)
    writer.close()


async def test_a_header_line_that_never_ends_is_cut_off_at_the_limit(
    server: tuple[int, App],
) -> None:
    port, _ = server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Endless: ")
    chunk = b"v" * 4096
    async with asyncio.timeout(WAIT):
        # Keep sending until the server has had enough, says so and ends its side.
        answer = asyncio.create_task(reader.read())
        while not answer.done():
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(0.001)
        raw = await answer
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert_problem(head, orjson.loads(body), 431, "headers_too_large")
