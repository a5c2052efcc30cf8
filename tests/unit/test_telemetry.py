"""Tracing hooks: off by default, a clear error without the SDK, and W3C trace context carried
through HTTP hops, database statements and the event envelope (spans kept in memory)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import text

from marquee.platform import telemetry
from marquee.platform.app import RequestContextMiddleware, create_service_app
from marquee.platform.broker import Event
from marquee.platform.db import create_engine
from marquee.platform.kernel import Kernel, StartupError
from marquee.platform.settings import Settings
from marquee.platform.transport import AsgiTransport


@dataclass
class Spans:
    tracer: Any
    exporter: Any

    def finished(self) -> list[Any]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> Any:
        found = [span for span in self.finished() if span.name == name]
        assert len(found) == 1, [span.name for span in self.finished()]
        return found[0]


@pytest.fixture
def spans() -> Iterator[Spans]:
    """A real SDK tracer exporting to memory, bound to the test's flow."""
    sdk = pytest.importorskip("opentelemetry.sdk.trace")
    export = pytest.importorskip("opentelemetry.sdk.trace.export")
    memory = pytest.importorskip("opentelemetry.sdk.trace.export.in_memory_span_exporter")
    exporter = memory.InMemorySpanExporter()
    provider = sdk.TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(export.SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    token = telemetry.bind(tracer)
    yield Spans(tracer, exporter)
    telemetry.unbind(token)
    provider.shutdown()


def traceparent_of(span: Any) -> str:
    context = span.context
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def test_tracing_is_off_without_an_endpoint(settings: Settings) -> None:
    assert telemetry.tracer_for(settings, "booking") is None
    assert telemetry.current_traceparent() is None
    with telemetry.client_span("GET", "catalog", "/x") as span:
        assert span is None
    event = Event(type="orders.created", data={})
    assert event.traceparent is None
    assert b"traceparent" not in event.to_json()


def test_an_endpoint_without_the_sdk_stops_start_up_with_one_clear_error(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules makes the import fail as if the package were not installed.
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    traced = Settings(
        data_dir=settings.data_dir, jwt_secret="s" * 40, otel_endpoint="http://127.0.0.1:9/"
    )
    with pytest.raises(
        StartupError, match=r"MARQUEE_OTEL_ENDPOINT .*pip install 'marquee\[otel\]'"
    ):
        create_service_app("catalog", Kernel.from_settings(traced))


def test_the_collector_url_gets_the_traces_path_once() -> None:
    assert telemetry.traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert telemetry.traces_url("http://collector:4318/") == "http://collector:4318/v1/traces"
    assert telemetry.traces_url("http://c:4318/v1/traces") == "http://c:4318/v1/traces"


def test_an_event_carries_the_traceparent_of_the_request_that_made_it(spans: Spans) -> None:
    with spans.tracer.start_as_current_span("request") as request:
        event = Event(type="orders.created", data={"order_id": "o-1"})

    assert event.traceparent == traceparent_of(request)
    assert Event.from_json(event.to_json()) == event


def test_an_envelope_from_before_trace_context_still_reads() -> None:
    raw = (
        b'{"id":"e1","type":"orders.paid","occurred_at":"2026-01-14T15:30:00+00:00",'
        b'"request_id":"abc-123","data":{}}'
    )
    event = Event.from_json(raw)
    assert (event.request_id, event.traceparent) == ("abc-123", None)


def test_publishing_and_handling_an_event_continue_its_trace(spans: Spans) -> None:
    with spans.tracer.start_as_current_span("request"):
        event = Event(type="orders.created", data={})
    # The relay publishes later, from a task outside any request.
    with telemetry.publish_span(event, "memory") as sent:
        pass
    with telemetry.consume_span(Event.from_json(sent.to_json()), "memory", "notification", 1):
        pass

    request, publish, process = (
        spans.named("request"),
        spans.named("publish orders.created"),
        spans.named("process orders.created"),
    )
    assert publish.parent.span_id == request.context.span_id
    assert sent.traceparent == traceparent_of(publish)
    assert process.parent.span_id == publish.context.span_id
    assert {publish.context.trace_id, process.context.trace_id} == {request.context.trace_id}
    assert process.attributes["messaging.consumer.group.name"] == "notification"


def test_a_failing_handler_marks_its_span_as_an_error(spans: Spans) -> None:
    event = Event(type="orders.paid", data={}, traceparent=None)
    with (
        pytest.raises(RuntimeError),
        telemetry.consume_span(event, "memory", "notification", 3),
    ):
        raise RuntimeError("mailer down")

    span = spans.named("process orders.paid")
    assert span.parent is None
    assert span.status.status_code.name == "ERROR"
    assert span.attributes["messaging.message.delivery_attempt"] == 3


async def test_a_call_between_services_is_one_trace_with_the_request_id(spans: Spans) -> None:
    callee = FastAPI()

    @callee.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        return {"item_id": item_id}

    callee.add_middleware(RequestContextMiddleware, service="catalog")
    callee.add_middleware(telemetry.TracingMiddleware, tracer=spans.tracer)
    callee.state.service = "catalog"
    transport = AsgiTransport(callee)

    with spans.tracer.start_as_current_span("caller"):
        answer = await transport.request("GET", "/items/7", headers=[("X-Request-ID", "abc-123")])
    assert answer.status == 200

    caller, client, server = (
        spans.named("caller"),
        spans.named("GET catalog"),
        spans.named("GET /items/{item_id}"),
    )
    assert client.parent.span_id == caller.context.span_id
    assert server.parent.span_id == client.context.span_id
    assert server.context.trace_id == caller.context.trace_id
    assert server.attributes["marquee.request_id"] == "abc-123"
    assert server.attributes["http.route"] == "/items/{item_id}"
    assert server.attributes["http.response.status_code"] == 200
    assert client.attributes["http.response.status_code"] == 200
    assert transport.peer == "catalog"


async def test_a_call_outside_any_span_makes_no_client_span(spans: Spans) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = dict(scope["headers"])
        body = headers.get(b"traceparent", b"none")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    answer = await AsgiTransport(app).request("GET", "/")
    assert answer.body == b"none"
    assert spans.finished() == []


async def test_database_statements_in_a_traced_request_get_spans_of_their_own(
    spans: Spans, settings: Settings
) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        f"sqlite+aiosqlite:///{settings.data_dir / 'traced.db'}", schema="traced"
    )
    telemetry.instrument_engine(engine)
    telemetry.instrument_engine(engine)  # idempotent: still one span per statement
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))  # outside any span: not traced
            with spans.tracer.start_as_current_span("request"):
                await conn.execute(text("SELECT 2"))
                with pytest.raises(Exception, match="no such table"):
                    await conn.execute(text("SELECT * FROM missing"))
    finally:
        await engine.dispose()

    request = spans.named("request")
    statements = [span for span in spans.finished() if span.name == "SELECT sqlite"]
    assert [span.attributes["db.query.text"] for span in statements] == [
        "SELECT 2",
        "SELECT * FROM missing",
    ]
    assert all(span.parent.span_id == request.context.span_id for span in statements)
    assert statements[1].status.status_code.name == "ERROR"
