"""Prometheus metrics, served at ``GET /metrics``: what an operator of several replicas needs to see.

Requests by route and status with their latency; signed URLs issued and bytes authorised by direction;
uploads open; token checks by provider and outcome, and authorisation decisions; store and metadata calls
with their latency and outcome; cache hits. Labels are route templates, operation names and outcome class
names, never ids, so the number of series stays bounded whatever callers send.

With ``--workers N`` every worker process serves ``/metrics``; the CLI then points
``PROMETHEUS_MULTIPROC_DIR`` at a folder in the data dir, so each answer sums all workers (prometheus-client's
multiprocess mode), not just the one that happened to take the scrape.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from score.core.models import ObjectSpecification, UploadProgress

disable_created_metrics()  # a ``_created`` series per counter doubles the output and tells nothing here
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
SpecT = TypeVar("SpecT", ObjectSpecification, UploadProgress)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REQUESTS = Counter("score_http_requests", "HTTP requests answered", ["method", "route", "status"])
REQUEST_SECONDS = Histogram(
    "score_http_request_duration_seconds", "Time to answer a request", ["method", "route"], buckets=LATENCY_BUCKETS
)
IN_FLIGHT = Gauge("score_http_requests_in_flight", "Requests being answered", multiprocess_mode="livesum")
SIGNED_URLS = Counter("score_signed_urls", "Signed URLs handed out", ["direction"])
AUTHORISED_BYTES = Counter("score_authorised_bytes", "Bytes the signed URLs handed out cover", ["direction"])
TOKEN_CHECKS = Counter("score_auth_token_checks", "Bearer tokens checked", ["provider", "outcome"])
DECISIONS = Counter("score_auth_decisions", "Authorisation decisions on objects", ["action", "decision"])
BACKEND_CALLS = Counter(
    "score_backend_calls", "Calls to the object store and the metadata source", ["backend", "operation", "outcome"]
)
BACKEND_SECONDS = Histogram(
    "score_backend_call_duration_seconds",
    "Time of a call to the object store or the metadata source",
    ["backend", "operation"],
    buckets=LATENCY_BUCKETS,
)
CACHE_LOOKUPS = Counter("score_cache_lookups", "Lookups in the server's caches", ["cache", "result"])


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROCESS_ENV))


def counted(direction: str, spec: SpecT) -> SpecT:
    """``spec``, its signed URLs and the bytes they cover counted (``direction``: upload or download)."""
    signed = [part for part in spec.parts if part.url]
    if signed:
        SIGNED_URLS.labels(direction).inc(len(signed))
        # An open-ended part (an ``external`` URL for the rest of the object) says -1: it counts as 0 bytes.
        AUTHORISED_BYTES.labels(direction).inc(sum(max(part.partSize, 0) for part in signed))
    return spec


class MetricsMiddleware:
    """Pure ASGI: counts and times every request by its route template (``unmatched`` when none matched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app fails before answering

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_status)
        finally:
            IN_FLIGHT.dec()
            route = _template(scope)
            method = scope.get("method", "")
            REQUESTS.labels(method, route, str(status)).inc()
            REQUEST_SECONDS.labels(method, route).observe(time.perf_counter() - started)


_TEMPLATES: dict[int, str] = {}  # id(route) -> the path template it serves under, prefix included


def _template(scope: Scope) -> str:
    """The matched route's path template as clients see it, or ``unmatched``.

    The route FastAPI puts in the scope is its router's own, without the prefix the router was included
    under (``/song``): the prefix is what precedes the part of the request path that the route's pattern
    matches, found once per route (templates never start with a parameter that could swallow it)."""
    route = scope.get("route")
    pattern = getattr(route, "path_regex", None)
    if route is None or pattern is None:
        return "unmatched"
    known = _TEMPLATES.get(id(route))
    if known is None:
        path: str = scope.get("path", "")
        cuts = [i for i, char in enumerate(path) if char == "/"]
        prefix = next((path[:i] for i in cuts if pattern.match(path[i:])), "")
        known = _TEMPLATES[id(route)] = prefix + route.path
    return known


class UploadsOpen(Collector):
    """``score_uploads_open``: uploads in progress in the store (shared by every replica), counted at scrape
    from the upload state documents, at most every ``refresh`` seconds (a listing of the store)."""

    def __init__(self, count: Callable[[], int], refresh: float = 30.0) -> None:
        self._count = count
        self._refresh = refresh
        self._lock = threading.Lock()
        self._value: tuple[float, int] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            if self._value is None or time.monotonic() - self._value[0] > self._refresh:
                try:
                    self._value = (time.monotonic(), self._count())
                except Exception:  # a store that cannot list now: no sample rather than a failed scrape
                    return
            value = self._value[1]
        yield GaugeMetricFamily("score_uploads_open", "Uploads in progress in the store", value=value)


def render(extra: Collector) -> Response:
    """The text exposition of every metric: this process's (or all workers'), then ``extra``'s."""
    if multiprocess():
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    own = CollectorRegistry()
    own.register(extra)
    return Response(body + generate_latest(own), media_type=CONTENT_TYPE_LATEST)


def metrics_endpoint(extra: Collector) -> Callable[[Request], Response]:
    def metrics(_: Request) -> Response:
        return render(extra)

    return metrics
