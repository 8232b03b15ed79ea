"""CORS for the routes a browser calls: ``/v1/stream``, ``/v1/inbox*`` and ``/v1/beacon.js``.

Two questions, answered apart (Fetch standard, "CORS protocol"; contract, "Browsers"):

- **Which answers carry CORS headers?** A preflight carries no credential, so the tenant is unknown: an origin
  gets the headers when it is Beacon's own or in the union of every active tenant's allowed origins (cached per
  process, ``tenants.directory.origin_union``). The same rule covers every answer, refusals included, so a page
  can read a ``401``/``403``/``429``/``503`` body; an origin nobody allows gets no CORS header at all.
- **Which requests are served?** The real per-tenant check runs on the actual request, once the token has named
  the tenant (``origin_allowed_for``): an origin outside the tenant's list is ``403 origin_not_allowed``.

The Django routes use django-cors-headers (``CorsMiddleware`` below, fed by ``OriginUnionMiddleware`` through
its ``check_request_enabled`` signal); the lean stream route builds the same headers with ``actual_headers``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from typing import Any

from corsheaders.middleware import CorsMiddleware as _CorsMiddleware
from corsheaders.signals import check_request_enabled
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.urls import Resolver404, resolve

from service.db import run_db
from service.errors import ApiError
from service.http import AsyncMiddleware
from tenants.directory import TenantInfo, origin_union

log = logging.getLogger(__name__)

_DEFAULT_PORTS = {"http": "80", "https": "443"}
_ALLOWED_ATTR = "beacon_cors_allowed"


@functools.lru_cache(maxsize=1024)
def own_origin(scheme: str, host: str) -> str:
    """Beacon's own origin as a browser serializes it: lower-case host, no default port (WHATWG HTML 7.1.1)."""
    scheme = scheme.lower()
    host = host.strip().lower()
    name, sep, port = host.rpartition(":")
    if sep and "]" not in port and port == _DEFAULT_PORTS.get(scheme):
        host = name
    return f"{scheme}://{host}"


async def allowed_origins() -> frozenset[str]:
    """Every active tenant's allowed origins; a cache hit costs no thread hop and no query.

    A miss starts one load per event loop that every concurrent caller awaits (a reconnect storm of a
    thousand streams costs one query, not a thousand); a caller that goes away does not cancel it.
    """
    cached = origin_union.fresh()
    if cached is not None:
        return cached
    loop = asyncio.get_running_loop()
    task = _loading.get(loop)
    if task is None:
        task = loop.create_task(_load())
        _loading[loop] = task
        task.add_done_callback(lambda _: _loading.pop(loop, None))
    return await asyncio.shield(task)


_loading: dict[asyncio.AbstractEventLoop, asyncio.Task[frozenset[str]]] = {}


async def _load() -> frozenset[str]:
    try:
        return await run_db(origin_union.load)
    except Exception:
        log.warning("could not load the allowed origins; using the last known set", exc_info=True)
        return origin_union.stale()


async def origin_known(origin: str | None, own: str) -> bool:
    """Whether answers to ``origin`` carry CORS headers: Beacon's own origin or any active tenant's."""
    if not origin or origin == "null":
        return False
    return origin == own or origin in await allowed_origins()


def origin_allowed_for(tenant: TenantInfo, origin: str | None, own: str, *, cookie: bool) -> bool:
    """The per-tenant check of an actual request: no ``Origin`` (a server, curl), Beacon's own or one of the
    tenant's. An opaque ``null`` origin (a file or sandboxed page) passes only for a tenant that lists no
    origin and a credential that is not the cookie: a cookie is sent by the browser on its own, so a
    cookie request must come from a listed origin (cross-site request forgery)."""
    if origin is None:
        return True
    if origin == own or origin in tenant.allowed_origins:
        return True
    return origin == "null" and not cookie and not tenant.allowed_origins


def origin_not_allowed() -> ApiError:
    return ApiError(403, "origin_not_allowed", "this origin is not allowed for the tenant")


def actual_headers(origin: str) -> list[tuple[bytes, bytes]]:
    """The CORS headers of a non-preflight answer to an allowed ``origin`` (ASGI header pairs)."""
    return list(_actual_headers(origin))


@functools.lru_cache(maxsize=4096)
def _actual_headers(origin: str) -> tuple[tuple[bytes, bytes], ...]:
    return (
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-allow-credentials", b"true"),
        (b"access-control-expose-headers", ", ".join(settings.CORS_EXPOSE_HEADERS).encode()),
        (b"vary", b"Origin"),
    )


def allow(request: HttpRequest) -> None:
    """Mark a Django request as passing the per-tenant check: its answer carries CORS headers even while
    the cached union has not seen the tenant's newest origin yet."""
    setattr(request, _ALLOWED_ATTR, True)


class OriginUnionMiddleware(AsyncMiddleware):
    """Decides, before django-cors-headers runs, whether the request's origin gets CORS headers.

    The decision needs the cached union, which may need a query: that is async work, and the library's
    ``check_request_enabled`` signal is called synchronously, so the answer is stored on the request and the
    signal handler only reads it.
    """

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        origin = request.headers.get("Origin")
        if origin and re.match(settings.CORS_URLS_REGEX, request.path_info):
            own = own_origin(request.scheme or "http", request.META.get("HTTP_HOST", ""))
            setattr(request, _ALLOWED_ATTR, await origin_known(origin, own))
        return await self.get_response(request)


class CorsMiddleware(_CorsMiddleware):
    """django-cors-headers, answering a preflight ``204 No Content`` as the contract asks (the library: 200),
    and only on a path that is a route: the library answers any path ``CORS_URLS_REGEX`` matches
    (``/v1/inbox/nope``), where every other method is ``404 not_found``; so is the preflight."""

    def check_preflight(self, request: HttpRequest) -> HttpResponseBase | None:
        response = super().check_preflight(request)
        if response is None:
            return None
        if not _is_route(request.path_info):
            return None  # the URL resolver answers 404 (in the error shape, with CORS headers)
        answer = HttpResponse(status=204)
        del answer["Content-Type"]
        return answer


def _is_route(path: str) -> bool:
    """Whether ``path`` is a route: Django's URL conf, or a route the front app serves (``/v1/stream``)."""
    from service.streaming.app import ROUTE_METHODS  # the front app imports this module

    if path in ROUTE_METHODS:
        return True
    try:
        resolve(path)
    except Resolver404:
        return False
    return True


def _enabled(sender: Any, request: HttpRequest, **kwargs: Any) -> bool:
    return bool(getattr(request, _ALLOWED_ATTR, False))


check_request_enabled.connect(_enabled, dispatch_uid="beacon-cors-origin-union")
