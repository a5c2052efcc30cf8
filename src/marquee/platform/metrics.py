"""Prometheus metrics: request counts and latencies for every service, plus gauges a service
computes at scrape time (orders by state, seats, outbox backlog...)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Module-level by necessity: prometheus-client registers each name once per process, and in
# all-in-one mode every service shares the process (the ``service`` label tells them apart).
REQUESTS = Counter(
    "marquee_http_requests_total",
    "HTTP requests answered, by service, method, route template and status.",
    ["service", "method", "route", "status"],
)
LATENCY = Histogram(
    "marquee_http_request_duration_seconds",
    "Time to answer an HTTP request, by service, method and route template.",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

Refresh = Callable[[], Awaitable[None]]


class MetricsMiddleware:
    """Counts and times every request by its route template (never the raw path, whose IDs
    would make unbounded label sets)."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            if template not in ("/metrics", "/healthz", "/readyz"):
                method = scope["method"]
                REQUESTS.labels(self.service, method, template, str(status)).inc()
                LATENCY.labels(self.service, method, template).observe(
                    time.perf_counter() - started
                )


async def metrics_endpoint(request: Request) -> Response:
    """The Prometheus text format, after each registered source refreshes its gauges."""
    refreshers: list[Refresh] = getattr(request.app.state, "metric_refreshers", [])
    for refresh in refreshers:
        await refresh()
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def add_gauge_source(app: object, refresh: Refresh) -> None:
    """Have ``refresh`` update its gauges just before every scrape of ``app``'s /metrics."""
    state = app.state  # type: ignore[attr-defined]
    if not hasattr(state, "metric_refreshers"):
        state.metric_refreshers = []
    state.metric_refreshers.append(refresh)
