"""``POST /v1/notifications`` and ``POST /v1/notifications/batch`` without Django's request machinery.

Publishing is the API's hot path (issue 13): through Django each publish cost ~4.7 ms of CPU, nearly all of
it per-request machinery (``ASGIHandler``'s thread-sensitive context, request building, signals, the
middleware list, ninja's routing and response building), not the one SQL statement. ``ApiHandler`` (which
has already applied the query check and the body-size limits) hands these requests here once the body is
read. Every rule is the one the ninja route applies, by calling the same functions in the same order:

- credentials: ``auth.api_key_principal`` (401/403, host check, cached: no thread hop on a hit);
- body: ``service.api.validated_payload`` with the ninja view's own models (415, 413, 400, 422 and the same
  field paths, ``notifications[7].data``);
- storing: ``publish.encoded_items`` (tenant payload limit, 413) and ``publish.store`` (429 from the
  database's rate window; the direct pool on the worker's loop, or a thread where that does not apply);
- answers: the ``201`` body of ``publish.Outcome.to_bytes``, errors as ``ApiError.to_bytes``, anything
  unexpected through ``service.api.unexpected_error`` (503 with ``Retry-After`` for an outage, else 500; both
  logged and sent to Sentry), ``X-Request-ID`` as ``service.http.RequestIdMiddleware`` sets it, and the
  ``django.request`` log line Django writes for every 4xx/5xx answer.

A request with an ``Idempotency-Key`` goes on to Django (``serves`` is false): its claim-store-answer
transaction is Django's. The ninja route definitions stay for the OpenAPI document and that fallback.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel

from service.api import unexpected_error, validated_payload
from service.errors import ApiError
from service.http import new_request_id, request_headers, request_id_var
from service.notifications import publish
from service.notifications.auth import api_key_principal
from service.notifications.schemas import BatchBody, PublishBody, PublishIn

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

#: path -> (route name for ``publish``, the body model ninja validates that route's body with)
ROUTES: dict[str, tuple[str, type[BaseModel]]] = {
    "/v1/notifications": ("single", PublishBody),
    "/v1/notifications/batch": ("batch", BatchBody),
}
_IDEMPOTENCY_KEY = b"idempotency-key"
_JSON = (b"content-type", b"application/json")
request_log = logging.getLogger("django.request")


def serves(scope: MutableMapping[str, Any]) -> bool:
    """Whether this route answers ``scope``: a ``POST`` to one of ``ROUTES`` without ``Idempotency-Key``."""
    if scope["method"] != "POST" or scope["path"] not in ROUTES:
        return False
    return all(name != _IDEMPOTENCY_KEY for name, _ in scope.get("headers", ()))


async def publish_route(scope: MutableMapping[str, Any], body: bytes, send: Send) -> None:
    """Answer a publish whose ``body`` (within the route's size limit) has been read."""
    headers = request_headers(scope)
    rid = new_request_id(headers.get("x-request-id"))
    token = request_id_var.set(rid)
    try:
        status, content, extra = await _answer(scope, headers, body)
    finally:
        request_id_var.reset(token)
    if status >= 400:  # Django's handler logs every refusal to ``django.request``: operators keep those lines
        request_log.log(
            logging.ERROR if status >= 500 else logging.WARNING,
            "%s: %s",  # django.utils.log.log_response's line
            HTTPStatus(status).phrase,
            scope["path"],
            extra={"status_code": status, "request": _LoggedRequest(scope["method"], scope["path"])},
        )
    response_headers = [_JSON, *extra, (b"x-request-id", rid.encode("latin-1"))]
    await send({"type": "http.response.start", "status": status, "headers": response_headers})
    await send({"type": "http.response.body", "body": content})


async def _answer(
    scope: MutableMapping[str, Any], headers: dict[str, str], body: bytes
) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    path = scope["path"]
    route, model = ROUTES[path]
    try:
        principal = await api_key_principal(headers.get("authorization"), headers.get("host", ""))
        payload = validated_payload(model, headers.get("content-type", ""), path, body)
        items: list[PublishIn] = [payload] if route == "single" else payload.notifications
        tenant = principal.tenant
        outcome = await publish.store(tenant, publish.encoded_items(route, items, tenant))
        return outcome.status, outcome.to_bytes(), []
    except ApiError as error:
        return _error(error)
    except Exception as exc:
        return _error(unexpected_error(scope["method"], path, exc))


class _LoggedRequest:
    """The ``request`` of a ``django.request`` log line (Django logs its ``ASGIRequest`` there)."""

    def __init__(self, method: str, path: str) -> None:
        self.method = method
        self.path = path

    def __repr__(self) -> str:
        return f"<PublishRequest: {self.method} {self.path!r}>"


def _error(error: ApiError) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    extra = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in error.headers.items()]
    return error.status, error.to_bytes(), extra
