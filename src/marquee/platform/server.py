"""Marquee's HTTP/1.1 server protocol: uvicorn's httptools protocol, made to keep its promises.

uvicorn answers what its parser refuses with a ``text/plain`` 400 the application never sees,
and waits for a request's headers and body for as long as a client cares to dribble them.
This subclass changes three things and nothing else:

- **Raw UTF-8 in the request line.** ``curl 'http://host/api/v1/shows?city=上海'`` sends the
  bytes as typed, and so do many scripts and proxies, but the parser accepts only ASCII in a
  request target. Every byte >= 0x80 of a request line is percent-encoded before the parser
  sees it, so such a request is served exactly as its percent-encoded form. Only request
  lines are touched: header values and bodies pass through byte for byte.
- **Errors as problem details.** A request the server refuses (a malformed request line or
  header, a negative ``Content-Length``, a request target or header section too large) gets
  ``application/problem+json`` with a ``request_id``, which also marks the log line.
- **Read timeouts.** A request's headers must arrive within ``header_timeout`` seconds of its
  first byte, and its body within ``body_timeout`` seconds of its headers; otherwise the
  answer is 408 and the connection closes (slowloris). A connection that never sends a byte
  is closed after the keep-alive timeout.

Where request lines are: the parser reports when a message begins and ends, but not where in
the bytes it fed. So data is fed in pieces such that each piece either ends with a line feed
or contains none, and a run of non-ASCII bytes is always fed on its own. After a piece that
ends with a line feed, a request line that had begun has ended (a message begins on a
non-newline byte, so its request line's line feed is in that piece); after a piece without
one, it has not. Before a non-ASCII run the state is therefore exact, whatever the client's
pipelining or however its bytes were split into reads. A request that arrives in one read
with no byte >= 0x80 costs one or two parser calls and no timer.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any, ClassVar

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from marquee.platform.context import accept_request_id, request_id_var
from marquee.platform.problems import PROBLEM_CONTENT_TYPE, problem_body

log = logging.getLogger("marquee.server")

HEADER_TIMEOUT_SECONDS = 10.0
BODY_TIMEOUT_SECONDS = 30.0
# What one request line and one header section may weigh: far above any browser's or client's
# (a request target of 8 KiB is the common recommendation), far below what hurts a server.
MAX_TARGET_BYTES = 16 * 1024
MAX_HEADER_BYTES = 64 * 1024
# After a refusal, how long to go on reading (and dropping) what the client still sends, so
# that closing does not reset the connection before the client has read the answer.
LINGER_SECONDS = 2.0

# Where the parser is in the current message, as far as request lines are concerned.
_AWAITING = 0  # between messages: the next non-newline byte begins a request line
_IN_LINE = 1  # a message has begun and its request line has not ended
_PAST_LINE = 2  # headers or body

# Phases of a message, for the read timeouts.
_IDLE = 0
_HEAD = 1
_BODY = 2


class _Refused(Exception):
    """Raised from a parser callback to stop parsing with a chosen answer."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


def percent_encode_high_bytes(data: bytes) -> bytes:
    """``data`` with every byte >= 0x80 written as ``%XX`` (upper-case hex), others kept."""
    return b"".join(b"%%%02X" % byte if byte >= 0x80 else bytes((byte,)) for byte in data)


_HIGH_RUN = re.compile(rb"[\x80-\xff]+")


def _ascii_pieces(data: bytes) -> Iterator[bytes]:
    """ASCII ``data`` as at most two pieces: up to its last line feed, and the rest."""
    cut = data.rfind(b"\n") + 1
    if 0 < cut < len(data):
        yield data[:cut]
        yield data[cut:]
    elif data:
        yield data


def pieces(data: bytes) -> Iterator[tuple[bytes, bool]]:
    """``data`` cut as the module docstring explains: ``(piece, is_non_ascii_run)`` pairs, each
    piece ending with a line feed or holding none, each non-ASCII run on its own."""
    start = 0
    for run in _HIGH_RUN.finditer(data):
        for piece in _ascii_pieces(data[start : run.start()]):
            yield piece, False
        yield run.group(), True
        start = run.end()
    for piece in _ascii_pieces(data[start:]):
        yield piece, False


def problem_bytes(
    status: int, code: str, detail: str, request_id: str, *, keep_alive: bool = False
) -> bytes:
    """A complete HTTP/1.1 problem-details response, ``Connection: close`` unless kept alive."""
    token = request_id_var.set(request_id)
    try:
        body = orjson.dumps(problem_body(status, code, detail))
    finally:
        request_id_var.reset(token)
    head = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        f"content-type: {PROBLEM_CONTENT_TYPE}",
        f"content-length: {len(body)}",
        f"x-request-id: {request_id}",
    ]
    if not keep_alive:
        head.append("connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the three changes the module docstring describes.

    Use ``HttpProtocol.configured(...)`` to get a subclass with other timeouts or limits.
    """

    header_timeout: ClassVar[float] = HEADER_TIMEOUT_SECONDS
    body_timeout: ClassVar[float] = BODY_TIMEOUT_SECONDS
    max_target_bytes: ClassVar[int] = MAX_TARGET_BYTES
    max_header_bytes: ClassVar[int] = MAX_HEADER_BYTES

    @classmethod
    def configured(
        cls,
        *,
        header_timeout: float = HEADER_TIMEOUT_SECONDS,
        body_timeout: float = BODY_TIMEOUT_SECONDS,
    ) -> type[HttpProtocol]:
        return type(
            cls.__name__,
            (cls,),
            {"header_timeout": header_timeout, "body_timeout": body_timeout},
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._line = _AWAITING
        self._phase = _IDLE
        self._timer: asyncio.TimerHandle | None = None
        self._timer_phase = _IDLE
        self._header_bytes = 0
        self._refused: _Refused | None = None
        self._lingering = False

    # -- feeding the parser --------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # uvicorn waits for a first request forever; give it the keep-alive timeout.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return
        self._unset_keepalive_if_required()
        was = self._phase
        try:
            if data.isascii():
                # The common case, inline: at most two parser calls, no per-byte work.
                cut = data.rfind(b"\n") + 1
                if 0 < cut < len(data):
                    self._feed(data[:cut])
                    self._feed(data[cut:])
                else:
                    self._feed(data)
            else:
                for piece, non_ascii in pieces(data):
                    if non_ascii and self._line != _PAST_LINE:
                        piece = percent_encode_high_bytes(piece)
                    self._feed(piece)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            refused = self._refused or _Refused(
                400, "bad_request", f"The server could not parse the request ({exc})."
            )
            self._refuse(refused)
            return
        if was == _HEAD and self._phase == _HEAD:
            # A head still coming: the parser only reports a header once it is whole, so a
            # line without end is counted here, as it arrives.
            self._header_bytes += len(data)
            if self._header_bytes > self.max_header_bytes + self.max_target_bytes:
                self._refuse(
                    _Refused(
                        431,
                        "headers_too_large",
                        f"The request's headers are larger than {self.max_header_bytes} bytes.",
                    )
                )
                return
        self._watch_phase()

    def _feed(self, piece: bytes) -> None:
        self.parser.feed_data(piece)
        if self._line == _IN_LINE and piece.endswith(b"\n"):
            self._line = _PAST_LINE

    # -- parser callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._line = _IN_LINE
        self._phase = _HEAD
        self._header_bytes = 0

    # on_url and on_header do uvicorn's work themselves (no super() call): they run for every
    # request, the second once per header line.

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.max_target_bytes:
            self._stop(
                414,
                "uri_too_long",
                f"The request target is longer than {self.max_target_bytes} bytes.",
            )

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > self.max_header_bytes:
            self._stop(
                431,
                "headers_too_large",
                f"The request's headers are larger than {self.max_header_bytes} bytes.",
            )

    def on_headers_complete(self) -> None:
        self._line = _PAST_LINE
        self._phase = _BODY
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._line = _AWAITING
        self._phase = _IDLE

    def _stop(self, status: int, code: str, detail: str) -> None:
        self._refused = _Refused(status, code, detail)
        raise self._refused

    # -- refusing ------------------------------------------------------------------------

    def _request_id(self) -> str:
        incoming = None
        for name, value in self.headers or ():
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
        return accept_request_id(incoming)

    def _refuse(self, refused: _Refused) -> None:
        """Answer ``refused`` and close; the request never reaches the application."""
        self._cancel_timer()
        request_id = self._request_id()
        token = request_id_var.set(request_id)
        try:
            log.warning(
                "Refused at the server: %d %s (%s) from %s",
                refused.status,
                refused.code,
                refused.detail,
                self.client[0] if self.client else "-",
            )
        finally:
            request_id_var.reset(token)
        if self.pipeline:
            # An earlier request's answer is still to be written: this one cannot be answered
            # in its place, and the connection cannot go on.
            self.transport.close()
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if not cycle.more_body:
                # The refused request follows one still being answered: let that answer
                # finish, then close (writing now would land in the middle of it).
                cycle.keep_alive = False
                self.flow.pause_reading()
                return
            # The refused request is the one being served, its body incomplete.
            if cycle.response_started:
                self.transport.close()
                return
            # The application waits for the body: it hears that the client left, and
            # whatever it sends is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
            self.cycle = None  # type: ignore[assignment]
        self.transport.write(
            problem_bytes(refused.status, refused.code, refused.detail, request_id)
        )
        self._linger()

    def _linger(self) -> None:
        """End the connection after a refusal without losing the refusal: no more writing,
        what still arrives is dropped, and the connection closes a little later (a close with
        unread data in the socket would be a reset, and the answer could be lost with it)."""
        self._lingering = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def send_400_response(self, msg: str) -> None:
        # uvicorn's own path for what it refuses; answered like the rest.
        self._refuse(_Refused(400, "bad_request", msg))

    # -- read timeouts -------------------------------------------------------------------

    def _watch_phase(self) -> None:
        """After a read: time the phase the current message is in, if it is incomplete."""
        if (
            self._phase == _IDLE
            and self.timeout_keep_alive_task is None
            and (self.cycle is None or self.cycle.response_complete)
        ):
            # Nothing but blank lines came: idle, as between requests.
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )
        if self._phase == self._timer_phase:
            return
        self._cancel_timer()
        if self._phase != _IDLE and not self.transport.is_closing():
            timeout = self.header_timeout if self._phase == _HEAD else self.body_timeout
            self._timer = self.loop.call_later(timeout, self._timed_out)
            self._timer_phase = self._phase

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_phase = _IDLE

    def _timed_out(self) -> None:
        self._timer = None
        phase, self._timer_phase = self._timer_phase, _IDLE
        if self.transport.is_closing() or phase != self._phase:
            return
        if self.flow.read_paused:
            # Reading is paused on our side (a pipelined request waiting, or a body the
            # application has not taken yet): the client is not the slow one.
            self._watch_phase()
            return
        waited = "headers" if phase == _HEAD else "body"
        limit = self.header_timeout if phase == _HEAD else self.body_timeout
        refused = _Refused(
            408, "request_timeout", f"The request's {waited} did not arrive within {limit:g} s."
        )
        self._refuse(refused)
