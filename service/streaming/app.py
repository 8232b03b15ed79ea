"""The ASGI application: lifespan, ``/v1/stream``, ``/healthz`` and ``/readyz`` here; the rest to Django.

Every HTTP request passes here first, so two checks for every route live here: the ``Host`` header (RFC 9112
section 3.2, rule in ``service.hosts``: ``400 invalid_host``) and, for the routes no ninja operation
declares, the method (``ROUTE_METHODS``: ``405 method_not_allowed`` with ``Allow``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Sequence
from typing import Any

from django.conf import settings

from service import hosts
from service.apihandler import announces_body, cors_headers, read_body, replaying
from service.errors import ApiError
from service.observability import metrics
from service.observability.context import request_context
from service.streaming.endpoint import Receive, Scope, Send, stream
from service.streaming.runtime import Runtime

log = logging.getLogger(__name__)
_ID_SEGMENT = re.compile(r"/[0-9]+(?=/|\Z)")
_KNOWN_ROUTES = frozenset(
    {
        "/v1/stream",
        "/v1/notifications",
        "/v1/notifications/batch",
        "/v1/tokens",
        "/v1/inbox",
        "/v1/inbox/unread-count",
        "/v1/inbox/read-all",
        "/v1/inbox/{id}/read",
        "/v1/openapi.json",
        "/v1/beacon.js",
        "/v1/docs",
        "/healthz",
        "/readyz",
        "/",
        "/demo/publish",
        "/demo/token",
    }
)


_GET = frozenset({"GET", "HEAD"})
_PREFLIGHT = "OPTIONS"
#: Methods of the routes that no ninja operation declares (ninja's own routes answer 405 themselves):
#: anything else is ``405 method_not_allowed`` with ``Allow`` before the route runs. ``OPTIONS`` here means
#: a CORS preflight (``Access-Control-Request-Method`` sent) on a route browsers call (service/cors.py); a
#: plain ``OPTIONS`` is refused like any other method, and ``Allow`` names the methods of actual requests.
ROUTE_METHODS: dict[str, frozenset[str]] = {
    "/healthz": _GET,
    "/readyz": _GET,
    "/v1/docs": _GET,
    "/v1/openapi.json": _GET,
    "/v1/beacon.js": _GET | {_PREFLIGHT},
    "/v1/stream": _GET | {_PREFLIGHT},
}
DEMO_ROUTE_METHODS: dict[str, frozenset[str]] = {
    "/": _GET,
    "/demo/token": _GET,
    "/demo/publish": frozenset({"POST"}),
}
_ALLOW_ORDER = ("GET", "HEAD", "POST")
#: ``method`` label values of ``beacon_http_requests_total``; any other method (a client may send any token)
#: is counted as ``other``.
METHOD_LABELS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def allowed_methods(path: str, demo: bool) -> frozenset[str] | None:
    """The methods ``path`` takes when the front app decides it, else ``None`` (the route decides)."""
    found = ROUTE_METHODS.get(path)
    if found is None and demo:
        found = DEMO_ROUTE_METHODS.get(path)
    if found is None and path.startswith("/static/"):  # WhiteNoise's files
        found = _GET
    return found


def method_problem(path: str, method: str, headers: list[tuple[bytes, bytes]], demo: bool) -> ApiError | None:
    """``405 method_not_allowed`` with ``Allow`` when ``path`` is in the table and does not take ``method``."""
    allowed = allowed_methods(path, demo)
    if allowed is None or (method in allowed and method != _PREFLIGHT):
        return None
    preflight = method == _PREFLIGHT and any(name == b"access-control-request-method" for name, _ in headers)
    if preflight and _PREFLIGHT in allowed:
        return None
    allow = ", ".join(m for m in _ALLOW_ORDER if m in allowed)
    return ApiError(
        405, "method_not_allowed", f"method not allowed; this route allows {allow}", headers={"Allow": allow}
    )


def django_scope(scope: Scope) -> Scope:
    """``scope`` as Django should see it. Methods are case-sensitive (RFC 9110 section 9.1), but Django
    upper-cases ``request.method``, so ``get /v1/inbox`` was served as GET: a method that is not upper-case
    is renamed to one no view takes, and the route answers its ``405`` with ``Allow``."""
    method = scope["method"]
    return scope if method.isupper() else {**scope, "method": "NOT-" + method}


def route_label(path: str) -> str:
    """A bounded label for ``beacon_http_requests_total``: known routes, ``/admin`` or ``other``."""
    normalized = _ID_SEGMENT.sub("/{id}", path)
    if normalized in _KNOWN_ROUTES:
        return normalized
    return "/admin" if path.startswith("/admin") else "other"


async def _json(send: Send, status: int, body: dict[str, Any]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"cache-control", b"no-store")],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


async def _refuse(send: Send, error: ApiError, extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """``error`` in the error shape, with its headers (``Allow``...) and ``extra`` ones (CORS)."""
    body = error.to_bytes()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    headers += [(name.lower().encode(), value.encode("latin-1")) for name, value in error.headers.items()]
    headers += list(extra)
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BeaconApp:
    def __init__(self, django_app: Any, api: Any | None = None) -> None:
        self.django = django_app
        self.api = api or django_app  # Django for /v1, with the API's own (short) middleware list
        self.runtime: Runtime | None = None
        self.demo = bool(getattr(settings, "DEMO", False))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            await self.django(scope, receive, send)
            return
        status = 500

        async def counting_send(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        path = scope["path"]
        method = scope["method"]
        with request_context(scope):  # request id and tenant for logs (access log included) and Sentry
            try:
                refusal = hosts.request_problem(scope["headers"], scope.get("http_version", "1.1"))
                if refusal is not None:  # no CORS headers: Beacon's own origin needs a valid host
                    await _refuse(counting_send, refusal)
                elif (refusal := method_problem(path, method, scope["headers"], self.demo)) is not None:
                    # a page on an allowed origin can read why (service.cors), as for every other refusal
                    await _refuse(counting_send, refusal, await cors_headers(scope))
                elif path.startswith("/v1/") and not (path == "/v1/stream" and method in _GET):
                    # ApiHandler reads the body itself
                    await self.api(django_scope(scope), receive, counting_send)
                else:
                    await self._serve(scope, receive, counting_send, send)
            finally:
                label = method if method in METHOD_LABELS else "other"  # any token reaches here: bounded
                metrics.HTTP_REQUESTS.labels(route_label(path), label, str(status)).inc()

    async def _serve(self, scope: Scope, receive: Receive, send: Send, body_send: Send) -> None:
        """The routes ``ApiHandler`` does not front: the stream, health, and Django's pages. A body, which
        none of them takes, is still read within the route's limit (``read_body``): a stream with 2 MB of
        body was served, the body dropped as it came."""
        if announces_body(scope):
            body = await read_body(scope, receive, send)
            if body is None:
                return
            receive = replaying(body, receive)
        path, method = scope["path"], scope["method"]
        if path == "/v1/stream" and method in _GET:
            await stream(scope, receive, send, await self._runtime(), body_send=body_send)
        elif path == "/healthz":
            await _json(send, 200, {"status": "ok"})
        elif path == "/readyz":
            await self._ready(send)
        else:
            await self.django(django_scope(scope), receive, send)

    async def _runtime(self) -> Runtime:
        if self.runtime is None:  # servers without lifespan support: start on first use
            self.runtime = Runtime()
            await self.runtime.start()
        return self.runtime

    async def _ready(self, send: Send) -> None:
        runtime = await self._runtime()
        database = "ok"
        try:
            assert runtime.store is not None
            async with asyncio.timeout(2):
                await runtime.store.ping()
        except Exception:
            database = "down"
        # Read after the ping, once: a SIGTERM during the ping must not give "failing: draining" beside
        # "draining": "no".
        draining = runtime.draining
        checks: dict[str, object] = {
            "database": database,
            "listener": "ok" if runtime.listener_connected else "down",
            "slots": "ok" if runtime.slots_live else "down",  # streams are refused 503 until it is live
            "draining": "yes" if draining else "no",
            # this worker's counts, for operators and for tests that check nothing leaks
            "streams": runtime.open_streams,
            "subscriptions": len(runtime.hub),
            "hub_keys": runtime.hub.key_count(),
        }
        failing = [
            name
            for name, ok in (
                ("database", database == "ok"),
                ("listener", checks["listener"] == "ok"),
                ("slots", checks["slots"] == "ok"),
                ("draining", not draining),
            )
            if not ok
        ]
        if failing:
            await _json(
                send,
                503,
                {
                    "error": {
                        "code": "not_ready",
                        "message": f"failing: {', '.join(failing)}",
                        "field": failing[0],
                    },
                    "checks": checks,
                },
            )
        else:
            await _json(send, 200, {"status": "ready", "checks": checks})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._runtime()
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.runtime is not None:
                    await self.runtime.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return
