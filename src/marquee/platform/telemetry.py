"""OpenTelemetry tracing, off unless ``MARQUEE_OTEL_ENDPOINT`` names an OTLP/HTTP collector.

When on, every HTTP hop has a server span (each service and the gateway) and a client span
(``AsgiTransport``/``HttpTransport``), every database statement a span, and every broker publish
and delivery a producer or consumer span; they are exported in batches over OTLP/HTTP, one
``service.name`` per service. W3C ``traceparent`` travels next to ``X-Request-ID``: as an HTTP
header, and in the event envelope (``Event.traceparent``), so a notification sent after the
broker hop belongs to the trace of the order that caused it.

When off, nothing imports OpenTelemetry and each hook costs one context-variable read: no
tracer is bound to the running flow. The SDK and the exporter are the optional extra
``marquee[otel]``; an endpoint set without them stops start-up with one clear error.

A tracer is bound to a flow by a traced app: for each request (``TracingMiddleware``) and for
the tasks its lifespan starts (``bind``), such as outbox relays and broker consumers. Client
and database spans are made only inside an existing span, so background sweeps do not flood
the collector with root spans of their own.
"""

from __future__ import annotations

import atexit
import importlib
import threading
from contextlib import AbstractContextManager, nullcontext
from contextvars import ContextVar, Token
from dataclasses import replace
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    # The API alone, for types: FastAPI depends on it, and nothing imports it at run time
    # unless tracing is on.
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer
    from sqlalchemy.ext.asyncio import AsyncEngine

    from marquee.platform.broker import Event
    from marquee.platform.settings import Settings

Headers = list[tuple[str, str]]

_tracer_var: ContextVar[Tracer | None] = ContextVar("marquee_tracer", default=None)
_tracers: dict[tuple[str, str], Tracer] = {}
_processors: dict[str, Any] = {}  # one batching span processor (and exporter) per endpoint
_lock = threading.Lock()
_exit_hook_registered = False
_MAX_STATEMENT = 2000  # characters of SQL kept on a database span


def endpoint_of(settings: Settings) -> str | None:
    """``MARQUEE_OTEL_ENDPOINT``: the collector's OTLP/HTTP base URL, or None (tracing off)."""
    return settings.otel_endpoint or None


def traces_url(endpoint: str) -> str:
    """Where spans are POSTed: ``<endpoint>/v1/traces``, unless the endpoint already says so."""
    base = endpoint.rstrip("/")
    return base if base.endswith("/v1/traces") else f"{base}/v1/traces"


def tracer_for(settings: Settings, service: str) -> Tracer | None:
    """The tracer of ``service`` when tracing is on, else None. Built once per endpoint and
    service for the process; raises StartupError when the OpenTelemetry SDK is missing."""
    endpoint = endpoint_of(settings)
    if endpoint is None:
        return None
    with _lock:
        tracer = _tracers.get((endpoint, service))
        if tracer is None:
            tracer = _tracers[(endpoint, service)] = _new_tracer(endpoint, service)
    return tracer


def _new_tracer(endpoint: str, service: str) -> Tracer:
    global _exit_hook_registered
    try:
        # By name: the SDK and exporter are optional, for mypy as much as at run time.
        sdk = importlib.import_module("opentelemetry.sdk.trace")
        export = importlib.import_module("opentelemetry.sdk.trace.export")
        resources = importlib.import_module("opentelemetry.sdk.resources")
        otlp = importlib.import_module("opentelemetry.exporter.otlp.proto.http.trace_exporter")
    except ImportError as exc:
        from marquee.platform.kernel import StartupError

        raise StartupError(
            f"MARQUEE_OTEL_ENDPOINT is set but OpenTelemetry is not installed ({exc}):"
            " pip install 'marquee[otel]', or unset MARQUEE_OTEL_ENDPOINT"
        ) from None
    processor = _processors.get(endpoint)
    if processor is None:
        exporter = otlp.OTLPSpanExporter(endpoint=traces_url(endpoint))
        processor = _processors[endpoint] = export.BatchSpanProcessor(exporter)
        if not _exit_hook_registered:
            # Providers share processors, so shut those down once ourselves at exit.
            atexit.register(shutdown)
            _exit_hook_registered = True
    provider = sdk.TracerProvider(
        resource=resources.Resource.create(
            {"service.name": service, "service.namespace": "marquee"}
        ),
        shutdown_on_exit=False,
    )
    provider.add_span_processor(processor)
    tracer: Tracer = provider.get_tracer("marquee")
    return tracer


def flush(timeout: float = 10.0) -> bool:
    """Export every finished span now; True when all went out in time. Blocks: from async
    code, run it in a thread (``asyncio.to_thread(flush)``)."""
    with _lock:
        processors = list(_processors.values())
    return all(bool(p.force_flush(int(timeout * 1000))) for p in processors)


def shutdown() -> None:
    """Export what is pending and stop every exporter; tracers built later start afresh."""
    with _lock:
        processors = list(_processors.values())
        _processors.clear()
        _tracers.clear()
    for processor in processors:
        processor.shutdown()


def bind(tracer: Tracer | None) -> Token[Tracer | None]:
    """Make ``tracer`` the running flow's (and its future tasks'); undo with ``unbind``."""
    return _tracer_var.set(tracer)


def unbind(token: Token[Tracer | None]) -> None:
    _tracer_var.reset(token)


def active() -> bool:
    """Whether spans are being made in this flow."""
    return _tracer_var.get() is not None


# -- propagation ----------------------------------------------------------------------------


def _format(span: Span) -> str | None:
    context = span.get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, or None when nothing is traced here.
    New events take it (``Event.traceparent``), as they take the request ID."""
    if _tracer_var.get() is None:
        return None
    from opentelemetry import trace

    return _format(trace.get_current_span())


def _extract(traceparent: str | None, tracestate: str | None = None) -> Context | None:
    """The remote parent a ``traceparent`` names, or None when absent or malformed."""
    if not traceparent:
        return None
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier = {"traceparent": traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    context = TraceContextTextMapPropagator().extract(carrier)
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def _in_span() -> bool:
    from opentelemetry import trace

    return trace.get_current_span().get_span_context().is_valid


class _Current:
    """A started span, current (for child spans and propagation) from enter to exit."""

    def __init__(self, span: Span) -> None:
        self.span = span
        self._token: Token[Context] | None = None

    def __enter__(self) -> Self:
        from opentelemetry import context, trace

        self._token = context.attach(trace.set_span_in_context(self.span))
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        from opentelemetry import context

        try:
            if exc is not None:
                _fail(self.span, exc)
            self.span.end()
        finally:
            if self._token is not None:
                context.detach(self._token)


def _fail(span: Span, exc: BaseException) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:200]))


# -- HTTP -----------------------------------------------------------------------------------


class TracingMiddleware:
    """A server span per HTTP request, child of the caller's ``traceparent`` when it sends
    one, named after the route template once routing has found it. The span carries the
    request ID the response echoes (``marquee.request_id``)."""

    def __init__(self, app: ASGIApp, tracer: Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from opentelemetry import context, trace

        traceparent = tracestate = None
        for key, value in scope["headers"]:
            if key == b"traceparent":
                traceparent = value.decode("latin-1")
            elif key == b"tracestate":
                tracestate = value.decode("latin-1")
        parent = _extract(traceparent, tracestate)
        method: str = scope["method"]
        span = self.tracer.start_span(
            method,
            context=parent,
            kind=trace.SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "url.path": scope["path"],
                "url.scheme": scope.get("scheme", "http"),
            },
        )
        token = context.attach(trace.set_span_in_context(span, parent))
        bound = _tracer_var.set(self.tracer)
        status = 0

        async def send_traced(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                for key, value in message.get("headers", ()):
                    if key == b"x-request-id":
                        span.set_attribute("marquee.request_id", value.decode("latin-1"))
            await send(message)

        try:
            await self.app(scope, receive, send_traced)
        except Exception as exc:
            _fail(span, exc)
            raise
        finally:
            template = getattr(scope.get("route"), "path", None)
            if template:
                span.update_name(f"{method} {template}")
                span.set_attribute("http.route", template)
            if status:
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    from opentelemetry.trace import Status, StatusCode

                    span.set_status(Status(StatusCode.ERROR))
            span.end()
            _tracer_var.reset(bound)
            context.detach(token)


class ClientSpan(_Current):
    """An outgoing HTTP call's span; ``inject`` puts its ``traceparent`` on the request."""

    def inject(self, headers: Headers | None) -> Headers:
        traceparent = _format(self.span)
        kept = [(k, v) for k, v in headers or () if k.lower() not in ("traceparent", "tracestate")]
        if traceparent:
            kept.append(("traceparent", traceparent))
        return kept

    def answered(self, status: int) -> None:
        self.span.set_attribute("http.response.status_code", status)
        if status >= 500:
            from opentelemetry.trace import Status, StatusCode

            self.span.set_status(Status(StatusCode.ERROR))


_NO_CLIENT_SPAN: nullcontext[None] = nullcontext()


def client_span(
    method: str, peer: str, path: str, *, url: str | None = None
) -> AbstractContextManager[ClientSpan | None]:
    """The span of a call to service ``peer``, or a no-op yielding None when not tracing."""
    tracer = _tracer_var.get()
    if tracer is None or not _in_span():
        return _NO_CLIENT_SPAN
    from opentelemetry import trace

    attributes = {"http.request.method": method, "server.address": peer, "url.path": path}
    if url is not None:
        attributes["url.full"] = url
    return ClientSpan(
        tracer.start_span(f"{method} {peer}", kind=trace.SpanKind.CLIENT, attributes=attributes)
    )


# -- database -------------------------------------------------------------------------------


def instrument_engine(engine: AsyncEngine) -> None:
    """Give each statement ``engine`` runs inside a traced span a client span of its own
    (operation, SQL text without parameters). Idempotent."""
    from sqlalchemy import event

    sync = engine.sync_engine
    if event.contains(sync, "before_cursor_execute", _before_execute):
        return
    event.listen(sync, "before_cursor_execute", _before_execute)
    event.listen(sync, "after_cursor_execute", _after_execute)
    event.listen(sync, "handle_error", _on_error)


def _before_execute(
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    tracer = _tracer_var.get()
    if tracer is None or context is None or not _in_span():
        return
    from opentelemetry import trace

    operation = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "SQL"
    system = conn.dialect.name
    context._marquee_span = tracer.start_span(
        f"{operation} {system}",
        kind=trace.SpanKind.CLIENT,
        attributes={
            "db.system.name": system,
            "db.operation.name": operation,
            "db.query.text": statement[:_MAX_STATEMENT],
        },
    )


def _after_execute(
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    span: Span | None = getattr(context, "_marquee_span", None)
    if span is not None:
        context._marquee_span = None
        span.end()


def _on_error(exception_context: Any) -> None:
    context = exception_context.execution_context
    span: Span | None = getattr(context, "_marquee_span", None)
    if span is not None:
        context._marquee_span = None
        _fail(span, exception_context.original_exception)
        span.end()


# -- broker ---------------------------------------------------------------------------------


def publish_span(event: Event, system: str) -> AbstractContextManager[Event]:
    """Around a publish: yields the event to send, carrying the producer span's
    ``traceparent`` (child of the event's own, i.e. of the request that made it)."""
    tracer = _tracer_var.get()
    if tracer is None:
        return nullcontext(event)
    parent = _extract(event.traceparent)
    if parent is None and not _in_span():
        return nullcontext(event)
    from opentelemetry import trace

    span = tracer.start_span(
        f"publish {event.type}",
        context=parent,
        kind=trace.SpanKind.PRODUCER,
        attributes=_messaging(event, system, "send"),
    )
    return _Publishing(span, replace(event, traceparent=_format(span)))


class _Publishing:
    """The producer span as a context manager yielding the event that carries it."""

    def __init__(self, span: Span, event: Event) -> None:
        self._current = _Current(span)
        self.event = event

    def __enter__(self) -> Event:
        self._current.__enter__()
        return self.event

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._current.__exit__(kind, exc, tb)


def consume_span(
    event: Event, system: str, durable: str, attempt: int
) -> AbstractContextManager[object]:
    """Around a handler: a consumer span, child of the event's ``traceparent`` (a root span
    when it has none), current while the handler runs."""
    tracer = _tracer_var.get()
    if tracer is None:
        return nullcontext()
    from opentelemetry import trace
    from opentelemetry.context import Context

    attributes = _messaging(event, system, "process")
    attributes["messaging.consumer.group.name"] = durable
    attributes["messaging.message.delivery_attempt"] = attempt
    span = tracer.start_span(
        f"process {event.type}",
        context=_extract(event.traceparent) or Context(),
        kind=trace.SpanKind.CONSUMER,
        attributes=attributes,
    )
    return _Current(span)


def _messaging(event: Event, system: str, operation: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "messaging.system": system,
        "messaging.operation.type": operation,
        "messaging.destination.name": event.type,
        "messaging.message.id": event.id,
    }
    if event.request_id:
        attributes["marquee.request_id"] = event.request_id
    return attributes
