"""The ASGI application: lifespan, ``/v1/stream``, ``/healthz`` and ``/readyz`` here; the rest to Django."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

from service.observability import metrics
from service.observability.context import request_context
from service.streaming.endpoint import Receive, Scope, Send, stream
from service.streaming.runtime import Runtime

log = logging.getLogger(__name__)
_ID_SEGMENT = re.compile(r"/\d+(?=/|$)")
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


class BeaconApp:
    def __init__(self, django_app: Any, api: Any | None = None) -> None:
        self.django = django_app
        self.api = api or django_app  # Django for /v1, with the API's own (short) middleware list
        self.runtime: Runtime | None = None

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
        with request_context(scope):  # request id and tenant for logs (access log included) and Sentry
            try:
                if path == "/v1/stream" and scope["method"] == "GET":
                    await stream(scope, receive, counting_send, await self._runtime())
                elif path == "/healthz":
                    await _json(counting_send, 200, {"status": "ok"})
                elif path == "/readyz":
                    await self._ready(counting_send)
                elif path.startswith("/v1/"):
                    await self.api(scope, receive, counting_send)
                else:
                    await self.django(scope, receive, counting_send)
            finally:
                metrics.HTTP_REQUESTS.labels(route_label(path), scope.get("method", ""), str(status)).inc()

    async def _runtime(self) -> Runtime:
        if self.runtime is None:  # servers without lifespan support: start on first use
            self.runtime = Runtime()
            await self.runtime.start()
        return self.runtime

    async def _ready(self, send: Send) -> None:
        runtime = await self._runtime()
        checks: dict[str, object] = {
            "database": "ok",
            "listener": "ok" if runtime.listener_connected else "down",
            "draining": "yes" if runtime.draining else "no",
            # this worker's counts, for operators and for tests that check nothing leaks
            "streams": runtime.open_streams,
            "subscriptions": len(runtime.hub),
            "hub_keys": runtime.hub.key_count(),
        }
        try:
            assert runtime.store is not None
            async with asyncio.timeout(2):
                await runtime.store.ping()
        except Exception:
            checks["database"] = "down"
        failing = [
            name
            for name, ok in (
                ("database", checks["database"] == "ok"),
                ("listener", checks["listener"] == "ok"),
                ("draining", not runtime.draining),
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
