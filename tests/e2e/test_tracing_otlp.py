"""OpenTelemetry: with MARQUEE_OTEL_ENDPOINT set, one order's spans reach a real OTLP/HTTP
receiver as one trace: gateway → booking → identity and catalog → their databases → the
broker → notification."""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from asgi_lifespan import LifespanManager

from marquee.compose import all_in_one
from marquee.platform import telemetry
from marquee.platform.settings import Settings
from marquee.platform.transport import AsgiTransport
from tests.e2e.conftest import Api
from tests.e2e.test_tracing import REQUEST_ID, place_one_order

trace_service = pytest.importorskip(
    "opentelemetry.proto.collector.trace.v1.trace_service_pb2",
    reason="needs the otel extra: pip install 'marquee[otel]'",
)
trace_pb2 = pytest.importorskip("opentelemetry.proto.trace.v1.trace_pb2")
pytest.importorskip("opentelemetry.sdk.trace", reason="needs the otel extra")


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]


class Receiver:
    """An OTLP/HTTP trace receiver on a free port: decodes every POST to /v1/traces."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path == "/v1/traces":
                    receiver.accept(body)
                    self.send_response(200)
                else:
                    self.send_response(404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def accept(self, body: bytes) -> None:
        request = trace_service.ExportTraceServiceRequest()
        request.ParseFromString(body)
        spans = []
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(
                        ReceivedSpan(
                            service=resource["service.name"],
                            name=span.name,
                            kind=trace_pb2.Span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            attributes=_attributes(span.attributes),
                        )
                    )
        with self.lock:
            self.spans.extend(spans)

    def received(self) -> list[ReceivedSpan]:
        with self.lock:
            return list(self.spans)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _attributes(pairs: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for pair in pairs:
        field = pair.value.WhichOneof("value")
        values[pair.key] = getattr(pair.value, field) if field else None
    return values


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    telemetry.shutdown()  # export what is left and stop the exporters before the port closes
    receiver.close()


@pytest.fixture
async def traced_api(e2e_settings: Settings, receiver: Receiver) -> AsyncIterator[Api]:
    settings = e2e_settings.model_copy(update={"otel_endpoint": receiver.endpoint})
    gateway = all_in_one(settings)
    async with LifespanManager(gateway, startup_timeout=30, shutdown_timeout=30):
        yield Api(AsgiTransport(gateway))


async def spans_of_the_order(receiver: Receiver, timeout: float = 20.0) -> list[ReceivedSpan]:
    """The spans of the order's trace, once the notification's delivery span has arrived."""
    deadline = time.monotonic() + timeout
    while True:
        await asyncio.to_thread(telemetry.flush)
        spans = receiver.received()
        entry = [
            s
            for s in spans
            if s.service == "gateway"
            and s.kind == "SERVER"
            and s.attributes.get("marquee.request_id") == REQUEST_ID
        ]
        if entry:
            trace = [s for s in spans if s.trace_id == entry[0].trace_id]
            if any(s.service == "notification" and s.kind == "CONSUMER" for s in trace):
                return trace
        if time.monotonic() > deadline:
            raise AssertionError(f"the order's trace is incomplete: {spans}")
        await asyncio.sleep(0.1)


def one(spans: list[ReceivedSpan], **want: str) -> ReceivedSpan:
    found = [s for s in spans if all(getattr(s, k) == v for k, v in want.items())]
    assert len(found) == 1, (want, [(s.service, s.kind, s.name) for s in spans])
    return found[0]


async def test_one_order_is_one_trace_from_the_gateway_to_the_notification(
    traced_api: Api, receiver: Receiver
) -> None:
    await place_one_order(traced_api)
    trace = await spans_of_the_order(receiver)

    entry = one(trace, service="gateway", kind="SERVER")
    assert entry.parent_id == ""
    assert entry.attributes["http.response.status_code"] == 201
    hop = one(trace, service="gateway", kind="CLIENT", name="POST booking")
    booking = one(trace, service="booking", kind="SERVER", name="POST /api/v1/orders")
    assert hop.parent_id == entry.span_id
    assert booking.parent_id == hop.span_id
    assert booking.attributes["marquee.request_id"] == REQUEST_ID

    # Booking's calls to Identity and Catalog are hops of their own, children of its span.
    servers = {s.service for s in trace if s.kind == "SERVER"}
    assert servers == {"gateway", "booking", "identity", "catalog"}
    by_id = {s.span_id: s for s in trace}
    for callee in (s for s in trace if s.kind == "SERVER" and s.service in ("identity", "catalog")):
        client = by_id[callee.parent_id]
        assert (client.service, client.kind) == ("booking", "CLIENT")
        assert client.parent_id == booking.span_id

    # Database statements, under the service span that ran them.
    statements = [s for s in trace if s.attributes.get("db.system.name") == "sqlite"]
    assert {s.service for s in statements} >= {"booking", "catalog"}
    assert all(s.kind == "CLIENT" and s.attributes["db.query.text"] for s in statements)

    # The broker hop: published by Booking's outbox relay, handled by Notification.
    publish = one(trace, kind="PRODUCER", name="publish orders.created")
    process = one(trace, kind="CONSUMER", name="process orders.created")
    assert publish.service == "booking"
    assert process.service == "notification"
    assert process.parent_id == publish.span_id
    assert process.attributes["marquee.request_id"] == REQUEST_ID
