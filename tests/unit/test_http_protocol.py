"""Marquee's HTTP protocol fed bytes directly: request lines with raw UTF-8 are served as their
percent-encoded form, however the bytes are split and however many requests share a read;
header values and bodies pass through untouched."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_from_bytes

import orjson
import uvicorn
from hypothesis import given, settings
from hypothesis import strategies as st
from uvicorn.server import ServerState

from marquee.platform.server import HttpProtocol, percent_encode_high_bytes, pieces

ASCII = bytes(range(128))


class FakeTransport:
    """Just enough of asyncio.Transport for the protocol: it records what is written."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False
        self.ended = False  # write_eof: nothing more will be written
        self.paused = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.ended = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5555), "sockname": ("127.0.0.1", 8000)}.get(name, default)


@dataclass
class Seen:
    requests: list[dict[str, Any]] = field(default_factory=list)


def recording_app(seen: Seen) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        seen.requests.append(
            {
                "path": scope["path"],
                "raw_path": scope["raw_path"],
                "query_string": scope["query_string"],
                "headers": scope["headers"],
                "body": body,
            }
        )
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def serve_reads(reads: list[bytes]) -> tuple[Seen, FakeTransport]:
    """Feed ``reads`` to a fresh connection, one read at a time, letting the app run between."""
    seen = Seen()

    async def run() -> FakeTransport:
        config = uvicorn.Config(recording_app(seen), lifespan="off", log_config=None)
        config.load()
        protocol = HttpProtocol(
            config=config,
            server_state=ServerState(),
            app_state={},
            _loop=asyncio.get_running_loop(),
        )
        transport = FakeTransport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        for data in reads:
            protocol.data_received(data)
            for _ in range(20):
                await asyncio.sleep(0)
        for _ in range(50):
            await asyncio.sleep(0)
        protocol.connection_lost(None)
        return transport

    transport = asyncio.run(run())
    return seen, transport


@dataclass(frozen=True)
class Request:
    path: str
    query: str
    header: str
    body: bytes

    def wire(self) -> bytes:
        head = f"POST {self.path}?{self.query} HTTP/1.1\r\nHost: x\r\nX-Note: {self.header}\r\n"
        return head.encode() + b"Content-Length: %d\r\n\r\n" % len(self.body) + self.body


# Text for request targets: letters of any script, digits and a few URL-safe marks.
target_text = st.text(
    alphabet=st.characters(
        categories=("L", "N"), include_characters="-._~", exclude_characters="%"
    ),
    min_size=0,
    max_size=12,
)
header_text = st.text(alphabet=st.characters(categories=("L", "N", "Zs")), max_size=12).map(
    str.strip
)
requests = st.builds(
    Request,
    path=target_text.map(lambda t: "/p/" + t),
    query=target_text.map(lambda t: "q=" + t),
    header=header_text,
    body=st.text(max_size=30).map(lambda t: t.encode()),
)


@settings(max_examples=100, deadline=None)
@given(batch=st.lists(requests, min_size=1, max_size=4), cuts=st.lists(st.integers(0, 400)))
def test_any_split_of_pipelined_requests_is_served_as_their_percent_encoded_form(
    batch: list[Request], cuts: list[int]
) -> None:
    wire = b"".join(request.wire() for request in batch)
    points = sorted({cut for cut in cuts if 0 < cut < len(wire)})
    reads = [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]

    seen, transport = serve_reads(reads)

    assert transport.written.count(b"HTTP/1.1 200 OK") == len(batch)
    assert len(seen.requests) == len(batch)
    for request, got in zip(batch, seen.requests, strict=True):
        assert got["path"] == request.path
        assert got["raw_path"] == quote_from_bytes(request.path.encode(), safe=ASCII).encode()
        assert got["query_string"] == quote_from_bytes(request.query.encode(), safe=ASCII).encode()
        assert (b"x-note", request.header.encode()) in got["headers"]
        assert got["body"] == request.body


def test_the_seeds_browse_request_as_typed_reads_like_its_percent_encoded_form() -> None:
    typed, _ = serve_reads(
        ["GET /api/v1/shows?city=上海&category=演唱会 HTTP/1.1\r\n\r\n".encode()]
    )
    encoded, _ = serve_reads(
        [
            b"GET /api/v1/shows?city=%E4%B8%8A%E6%B5%B7&category=%E6%BC%94%E5%94%B1%E4%BC%9A"
            b" HTTP/1.1\r\n\r\n"
        ]
    )
    assert typed.requests[0]["query_string"] == encoded.requests[0]["query_string"]


def test_a_request_the_parser_refuses_is_answered_with_problem_details() -> None:
    seen, transport = serve_reads([b"GET /a b c\r\n\r\n"])
    assert seen.requests == []
    head, _, body = bytes(transport.written).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"content-type: application/problem+json" in head
    problem = orjson.loads(body)
    assert problem["code"] == "bad_request"
    assert f"x-request-id: {problem['request_id']}".encode() in head
    assert transport.ended


def test_percent_encoding_touches_only_bytes_above_ascii() -> None:
    assert percent_encode_high_bytes("a 上%".encode()) == b"a %E4%B8%8A%"


def test_pieces_end_with_a_line_feed_or_hold_none_and_keep_non_ascii_runs_apart() -> None:
    data = "GET /上 HTTP/1.1\r\nA: b\r\nC: 中d\r\n\r\nxyz".encode()
    cut = list(pieces(data))
    assert b"".join(piece for piece, _ in cut) == data
    for piece, non_ascii in cut:
        assert non_ascii == (not piece.isascii())
        assert piece.endswith(b"\n") or b"\n" not in piece
