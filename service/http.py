"""Request ids: every request gets one (or keeps a sane incoming ``X-Request-ID``) for logs and Sentry."""

from __future__ import annotations

import contextvars
import os
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote_to_bytes

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase

from service.errors import ApiError, unavailable

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
tenant_var: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="-")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # Unicode category Cc: C0, DEL and C1
#: Query parameters that are lists (``?topic=a&topic=b``); every other one may appear once.
LIST_PARAMETERS = frozenset({"topic"})


def query_problem(query_string: bytes) -> ApiError | None:
    """``422 invalid_field`` naming the first query parameter whose name or value, percent-decoded, is not
    UTF-8 or holds a control character; else ``None``.

    No route takes either: PostgreSQL text cannot hold NUL, and Django (like ``parse_qsl``) decodes invalid
    UTF-8 (``%ff``, the overlong ``%C0%AF``, the encoded surrogate ``%ED%A0%80``) to U+FFFD, so
    ``?recipient=%ff`` read the inbox of a recipient named ``"\ufffd"`` instead of being refused (RFC 3986
    section 2.5: the octets of a URI component are UTF-8). Pairs are split as ``parse_qsl`` does (``&``,
    ``+`` is a space), so the name in ``field`` is the one the route would have seen.

    A parameter named twice is ``422 invalid_field`` too, unless it is a list (``LIST_PARAMETERS``): Django's
    ``QueryDict`` and the stream's reader took the last of ``?recipient=a&recipient=b`` (or ``?limit=``,
    ``?token=``, ``?last_event_id=``) silently, so a client's mistake read another page or recipient.

    More than ``DATA_UPLOAD_MAX_NUMBER_FIELDS`` (1000) parameters is ``400 bad_request``: Django raises
    ``TooManyFieldsSent`` when a route reads such a query, which was a ``500`` and a traceback. Counted as
    Django counts them (``&`` separators plus one).
    """
    limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
    if limit is not None and query_string and query_string.count(b"&") + 1 > limit:
        return ApiError(400, "bad_request", f"a request has at most {limit} query parameters")
    seen: set[str] = set()
    for pair in query_string.split(b"&"):
        if not pair:
            continue
        raw_name, _, raw_value = pair.partition(b"=")
        name_bytes = unquote_to_bytes(raw_name.replace(b"+", b" "))
        value_bytes = unquote_to_bytes(raw_value.replace(b"+", b" "))
        name = name_bytes.decode("utf-8", errors="replace")
        field = _CONTROL.sub("?", name)
        try:
            name_bytes.decode("utf-8")
            value = value_bytes.decode("utf-8")
        except UnicodeDecodeError:
            return ApiError(
                422, "invalid_field", f"{field}: the percent-decoded bytes are not UTF-8", field=field
            )
        if _CONTROL.search(name) or _CONTROL.search(value):
            return ApiError(422, "invalid_field", f"{field}: control characters are not allowed", field=field)
        if name in seen and name not in LIST_PARAMETERS:
            return ApiError(
                422, "invalid_field", f"{field}: give this parameter once (only topic repeats)", field=field
            )
        seen.add(name)
    return None


def request_headers(scope: Any) -> dict[str, str]:
    """An ASGI request's headers as Django's ``request.headers`` reads them: lower-case names, latin-1
    values, repeated headers joined with ``,``, names with ``_`` dropped (Django's anti-spoofing rule)."""
    found: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", ()):
        name = raw_name.decode("latin-1").lower()
        if "_" in name:
            continue
        value = raw_value.decode("latin-1")
        found[name] = f"{found[name]},{value}" if name in found else value
    return found


def new_request_id(incoming: str | None) -> str:
    if incoming and _SAFE_ID.fullmatch(incoming):
        return incoming
    return os.urandom(16).hex()  # 32 hex digits, as uuid4().hex, at a sixth of its cost (one per request)


class AsyncMiddleware:
    """Base of Beacon's Django middlewares: async only, so Django adds no thread hop around them."""

    async_capable = True
    sync_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]]) -> None:
        self.get_response = get_response
        if iscoroutinefunction(self.get_response):
            markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> Any:
        raise NotImplementedError


class OutageMiddleware(AsyncMiddleware):
    """``503 unavailable`` with ``Retry-After`` when a view of Django's pages (the demo) fails on a database
    outage, as the API's routes answer (``service.api.unexpected_error``): it was a ``500`` and a traceback.
    The staff's admin keeps Django's own error page."""

    async def __call__(self, request: HttpRequest) -> Any:
        return await self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponseBase | None:
        # Synchronous: Django runs the exception middlewares synchronously (an async one is wrapped).
        from service.api import report_unexpected  # the API module, loaded on first use
        from service.db import is_outage

        if request.path.startswith("/admin/") or not is_outage(exception):
            return None
        report_unexpected(request.method or "", request.path, exception)
        return unavailable().to_response()


class RequestIdMiddleware(AsyncMiddleware):
    """Sets the request id context for the request and echoes it in ``X-Request-ID``."""

    async def __call__(self, request: HttpRequest) -> Any:
        rid = new_request_id(request.headers.get("X-Request-ID"))
        token = request_id_var.set(rid)
        try:
            response = await self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["X-Request-ID"] = rid
        return response


ERROR_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    500: "internal_error",
    503: "unavailable",
}
_KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")


def as_error_shape(response: HttpResponseBase) -> HttpResponseBase:
    """An error that Django or ninja answered on its own (``405`` with HTML, ``400`` for a bad request line,
    ...) in the API's JSON error shape; the status and the ``Allow``/``Retry-After`` headers are kept."""
    status = response.status_code
    if status < 400 or response.get("Content-Type", "").startswith("application/json"):
        return response
    code = ERROR_CODES.get(status, "bad_request" if status < 500 else "internal_error")
    message = {405: "method not allowed on this route"}.get(status, response.reason_phrase.lower())
    if status == 405 and response.has_header("Allow"):
        response["Allow"] = with_head(response["Allow"])
        message = f"method not allowed; this route allows {response['Allow']}"
    shaped = ApiError(status, code, message).to_response()
    for name in _KEPT_HEADERS:
        if response.has_header(name):
            shaped[name] = response[name]
    return shaped


def with_head(allow: str) -> str:
    """An ``Allow`` value with ``HEAD`` after ``GET`` when it lists ``GET``: every route that takes GET takes
    HEAD (``service.apihandler``), which ninja's ``Allow`` leaves out."""
    methods = [m.strip() for m in allow.split(",") if m.strip()]
    if "GET" in methods and "HEAD" not in methods:
        methods.insert(methods.index("GET") + 1, "HEAD")
    return ", ".join(methods)


class ErrorShapeMiddleware(AsyncMiddleware):
    """Every error response of ``/v1`` in the error shape (see ``as_error_shape``)."""

    async def __call__(self, request: HttpRequest) -> Any:
        return as_error_shape(await self.get_response(request))
