"""The service's own Prometheus metrics, labelled by route template (issue 18, finding 1).

BentoML 1.4's traffic-metrics middleware labels every request with its raw path, so every distinct path (401s
and 404s included) became a new series held in each worker's memory for ever: 20,000 requests to
``/campaigns/<uuid>`` grew a worker from 612 to 1,238 MB and ``/metrics`` to 92 MB. The service therefore turns
BentoML's HTTP metrics off through its configuration (``metrics={"enabled": False}`` in
``@bentoml.service``, which also removes BentoML's ``/metrics`` route) and records its own, with
``prometheus_client``:

- ``surrogate_http_requests_total{route, method, status}`` (counter);
- ``surrogate_http_request_duration_seconds{route, method}`` (histogram, seconds);
- ``surrogate_http_requests_in_progress{route, method}`` (gauge, summed over the workers).

``route`` is the route template (:func:`route_template`): a fixed route labels itself, ``/campaigns/{name}`` stands
for every campaign, and every path the service does not serve is ``other``. ``method`` is one of
:data:`METHODS` or ``other``; ``status`` is the answer's code. So the number of series is bounded by the
service's routes, whatever the clients send, and ``/metrics`` never shows a campaign name.

Several workers: BentoML starts each worker with ``PROMETHEUS_MULTIPROC_DIR`` set (and empties that folder when
the server starts); ``prometheus_client`` then keeps the values in files there, and :func:`metrics_text` adds up
every worker's (``MultiProcessCollector``), so any worker answers for all. In a process without that variable
(in-process tests) the values live in this module's own registry.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
KNOWN_ROUTES: frozenset[str] = frozenset(
    {
        "/",
        "/docs.json",
        "/predict",
        "/model_info",
        "/suggest",
        "/observe",
        "/campaigns",
        "/search",
        "/ingest",
        "/admin/reload",
        "/healthz",
        "/livez",
        "/readyz",
        "/metrics",
    }
)
"""The service's fixed routes, which label themselves."""
CAMPAIGN_ROUTE = "/campaigns/{name}"
STATIC_ROUTE = "/static_content/{file}"
"""The Swagger UI assets BentoML ships (one label for all of them)."""
OTHER_ROUTE = "other"
"""The one label every path outside the service's routes shares."""
METHODS: frozenset[str] = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods that label themselves; any other method token a client sends is ``other``."""

_REGISTRY = CollectorRegistry()
"""This process's registry (used as such only without ``PROMETHEUS_MULTIPROC_DIR``)."""
REQUESTS = Counter(
    "surrogate_http_requests",
    "HTTP requests answered, by route template, method and status code",
    ["route", "method", "status"],
    registry=_REGISTRY,
)
DURATION = Histogram(
    "surrogate_http_request_duration_seconds",
    "Time from the request's headers to the end of its answer, seconds, by route template and method",
    ["route", "method"],
    registry=_REGISTRY,
)
IN_PROGRESS = Gauge(
    "surrogate_http_requests_in_progress",
    "HTTP requests being answered now, by route template and method (all workers)",
    ["route", "method"],
    registry=_REGISTRY,
    multiprocess_mode="livesum",
)


def route_template(path: str) -> str:
    """The route template a raw request path belongs to: itself, ``/campaigns/{name}``, the assets, or ``other``."""
    if path in KNOWN_ROUTES:
        return path
    if path.startswith("/campaigns/") and "/" not in path[len("/campaigns/") :]:
        return CAMPAIGN_ROUTE
    if path.startswith("/static_content/"):
        return STATIC_ROUTE
    return OTHER_ROUTE


def method_label(method: str) -> str:
    """``method`` when it is a standard one (:data:`METHODS`), else ``other``."""
    return method if method in METHODS else OTHER_ROUTE


def metrics_registry() -> CollectorRegistry:
    """The registry to expose: every worker's values (multiprocess folder) or this process's own."""
    folder = os.environ.get(MULTIPROC_ENV)
    if not folder:
        return _REGISTRY
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=folder)
    return registry


def metrics_text() -> bytes:
    """The Prometheus exposition text of the service's metrics."""
    return generate_latest(metrics_registry())


async def metrics_endpoint(_: Request) -> Response:
    """``GET /metrics`` (the token rule is :class:`serving.middleware.GuardMiddleware`'s)."""
    import anyio

    body = await anyio.to_thread.run_sync(metrics_text)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


class MetricsMiddleware:
    """ASGI middleware that counts and times every HTTP request under its route template.

    It sits outside the token and body checks, so 401, 413 and 415 answers are counted too. A request whose app
    raises before answering counts as a 500; one whose client went away before any answer counts as ``499``
    (nginx's name for it).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = route_template(scope.get("path", ""))
        method = method_label(scope.get("method", ""))
        status = "499"

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = str(message["status"])
            await send(message)

        started = time.perf_counter()
        in_progress = IN_PROGRESS.labels(route, method)
        in_progress.inc()
        try:
            await self.app(scope, receive, recording_send)
        except Exception:
            if status == "499":
                status = "500"
            raise
        finally:
            in_progress.dec()
            DURATION.labels(route, method).observe(time.perf_counter() - started)
            REQUESTS.labels(route, method, status).inc()
