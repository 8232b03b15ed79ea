"""Django's ASGI handler for ``/v1``, without the admin's middleware, behind a body-size guard.

Under ASGI each of Django's classic middlewares (sessions, auth, messages, CSRF, ...) runs its hooks through
``sync_to_async`` on one shared thread: a dozen thread hops per request that the JSON API does not need (it
authenticates with API keys and tokens, and ninja's views are CSRF-exempt). The profile of 32 concurrent
publishes showed those hops as the largest cost, so ``/v1`` gets a handler built with ``API_MIDDLEWARE``.

Django reads the whole body before the view runs (to a temporary file past 2.5 MB), whatever its size.
``ApiHandler`` answers ``413 payload_too_large`` as soon as ``Content-Length`` or the bytes received so
far (chunked bodies) pass the route's limit, holding at most that many bytes: before authentication,
as nginx's ``client_max_body_size`` would; and ``408 request_timeout`` when the body stops arriving for
``HTTP_BODY_TIMEOUT_SECONDS`` (nginx's ``client_body_timeout``: a slowloris of the body held the connection
forever, the head timeout of ``service.serving`` having ended with the head).

Once the body is read, a publish without ``Idempotency-Key`` is answered by the lean publish route
(``service.notifications.publish_route``: the same rules, without Django's per-request machinery); everything
else goes on to Django.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings
from django.core.handlers.asgi import ASGIHandler

from service import cors
from service.errors import ApiError
from service.http import query_problem
from service.notifications import publish_route
from service.notifications.api import invalid_idempotency_key
from service.notifications.validation import body_limit
from service.numbers import ascii_int

API_MIDDLEWARE = [
    "service.http.RequestIdMiddleware",
    "service.cors.OriginUnionMiddleware",  # decides whether the origin gets CORS headers (async, cached)
    "service.cors.CorsMiddleware",  # django-cors-headers: preflights and the headers on every answer
    "service.http.ErrorShapeMiddleware",  # inside CORS: reshaped errors still get the CORS headers
]

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def _body_timeout() -> ApiError:
    return ApiError(
        408,
        "request_timeout",
        f"the request body stopped arriving (nothing for {settings.HTTP_BODY_TIMEOUT_SECONDS:g} s)",
    )


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"the body is larger than {limit} bytes")


async def cors_headers(scope: Any) -> list[tuple[bytes, bytes]]:
    """CORS headers for a refusal made before Django runs, by the same rule as every other answer
    (``service.cors``): a page on an allowed origin can read why its request was refused."""
    if not re.match(settings.CORS_URLS_REGEX, scope["path"]):
        return []
    sent = dict(scope.get("headers", ()))
    origin = sent.get(b"origin", b"").decode("latin-1")
    own = cors.own_origin(scope.get("scheme", "http"), sent.get(b"host", b"").decode("latin-1"))
    if not await cors.origin_known(origin, own):
        return []
    return cors.actual_headers(origin)


async def _refuse(send: Send, error: ApiError, scope: Any) -> None:
    body = error.to_bytes()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),  # the rest of the body is not read: this connection cannot be reused
    ]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    headers += await cors_headers(scope)
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def announces_body(scope: Any) -> bool:
    """Whether the request says a body follows: ``Transfer-Encoding`` (chunked), or a ``Content-Length``
    other than 0 (RFC 9112 section 6.3). Both parsers refuse a request with both."""
    for name, value in scope.get("headers", ()):
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip(b" \t") != b"0"):
            return True
    return False


async def read_body(scope: Any, receive: Receive, send: Send) -> bytes | None:
    """The whole request body, or ``None`` once the request has been answered (or its client has gone).

    ``413 payload_too_large`` as soon as ``Content-Length`` or the bytes received so far pass the route's
    ``body_limit``, holding at most that many bytes; ``408 request_timeout`` when the body stops arriving
    for ``HTTP_BODY_TIMEOUT_SECONDS``; ``400 bad_request`` for a ``Content-Length`` that is not 1-19 ASCII
    digits. Every route's body goes through here (docs/decisions.md, "Body size").
    """
    limit = body_limit(scope["path"])
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            length = ascii_int(value.decode("latin-1").strip(" \t"))
            if length is None:
                await _refuse(send, ApiError(400, "bad_request", "Content-Length is not a number"), scope)
                return None
            if length > limit:
                await _refuse(send, _too_large(limit), scope)
                return None
    chunks: list[bytes] = []
    size = 0
    while True:
        try:  # each read of the body, as nginx's client_body_timeout: a body that stops arriving is cut
            async with asyncio.timeout(settings.HTTP_BODY_TIMEOUT_SECONDS):
                message = await receive()
        except TimeoutError:
            await _refuse(send, _body_timeout(), scope)
            return None
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            await _refuse(send, _too_large(limit), scope)
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` (already read by ``read_body``) once, then defers to ``receive``."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


class ApiHandler(ASGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        site_middleware = settings.MIDDLEWARE
        settings.MIDDLEWARE = API_MIDDLEWARE
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = site_middleware

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        problem = query_problem(scope.get("query_string", b""))
        if problem is not None:
            await _refuse(send, problem, scope)
            return
        if (
            scope["path"] == "/v1/stream" and scope["method"] != "OPTIONS"
        ):  # GET, HEAD never get here (app.py)
            allow = ApiError(
                405, "method_not_allowed", "the stream allows GET, HEAD", headers={"Allow": "GET, HEAD"}
            )
            await _refuse(send, allow, scope)
            return
        keys = 0
        for name, _ in scope.get("headers", ()):
            if name == b"idempotency-key":
                keys += 1
                if keys > 1:  # Django would join them into one key, "a,b"
                    await _refuse(send, invalid_idempotency_key("send it once"), scope)
                    return
        body = await read_body(scope, receive, send)
        if body is None:
            return
        if publish_route.serves(scope):  # the lean publish route: same rules, no Django per request
            await publish_route.publish_route(scope, body, send)
            return
        if scope["method"] == "HEAD":
            # HEAD is GET without the body (RFC 9110 section 9.3.2) on every route that takes GET: ninja's
            # operations answered it 405. Django sees a GET; the server's own copy of the scope still says
            # HEAD, so uvicorn sends the headers and drops the body.
            scope = {**scope, "method": "GET"}
        await super().__call__(scope, replaying(body, receive), send)
