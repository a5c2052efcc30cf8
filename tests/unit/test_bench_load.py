"""The load generator's lean HTTP/1.1 client, against a tiny server answering every way
HTTP/1.1 allows: Content-Length, chunks, and a closed connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from marquee.bench.load import Call, fire, percentile

RESPONSES = [
    b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"n":"len"}',
    b"HTTP/1.1 409 Conflict\r\nTransfer-Encoding: chunked\r\n\r\n"
    b'5\r\n{"n":\r\n8\r\n"chunks"\r\n1\r\n}\r\n0\r\n\r\n',
    b'HTTP/1.1 201 Created\r\nConnection: close\r\nContent-Length: 12\r\n\r\n{"n":"last"}',
]


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[bytes]]]:
    seen: list[bytes] = []
    turn = 0

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal turn
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                seen.append(head + await reader.readexactly(length))
                response = RESPONSES[turn % len(RESPONSES)]
                turn += 1
                writer.write(response)
                await writer.drain()
                if b"Connection: close" in response:
                    break
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    listening = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        listening.close()
        await listening.wait_closed()


async def test_every_call_gets_its_answer_however_the_server_frames_it(
    server: tuple[str, list[bytes]],
) -> None:
    base, seen = server
    calls = [
        Call("POST", f"{base}/api/v1/orders", f"10.0.0.{n}", b'{"q":1}', "token-x", tag=n)
        for n in range(30)
    ]

    run = await fire(calls, concurrency=1)

    assert [answer.tag for answer in run.answers] == list(range(30))
    assert [answer.status for answer in run.answers] == [200, 409, 201] * 10
    assert {answer.body for answer in run.answers} == {
        b'{"n":"len"}',
        b'{"n":"chunks"}',
        b'{"n":"last"}',
    }
    assert all(answer.error == "" for answer in run.answers)
    first = seen[0]
    assert first.startswith(b"POST /api/v1/orders HTTP/1.1\r\n")
    assert b"X-Forwarded-For: 10.0.0.0\r\n" in first
    assert b"Authorization: Bearer token-x\r\n" in first
    assert first.endswith(b'\r\n\r\n{"q":1}')


async def test_a_refused_connection_is_an_unanswered_call_not_a_crash() -> None:
    run = await fire([Call("GET", "http://127.0.0.1:1/healthz", "10.0.0.1")], concurrency=1)

    assert [answer.status for answer in run.answers] == [0]
    assert run.answers[0].error


def test_percentiles_are_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]

    assert (percentile(values, 0.5), percentile(values, 0.99), percentile(values, 1.0)) == (
        50.0,
        99.0,
        100.0,
    )
    assert percentile([], 0.5) == 0.0
