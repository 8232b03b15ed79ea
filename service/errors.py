"""One error shape everywhere: ``{"error": {"code": ..., "message": ..., "field": ...}}``.

The codes are stable and listed in ``docs/errors.md``; tests assert on them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from django.http import HttpRequest, HttpResponse
from django.views import csrf, defaults

#: ``field`` names a client wrote (an unknown body field, a query parameter) are shown up to this many
#: characters, then ``…``: a 200 KB name made a 400 KB error (docs/errors.md).
MAX_SHOWN_FIELD = 128
#: A message is at most this many characters (``…`` included); what a client sent that it quotes is cut with it.
MAX_MESSAGE = 1024


class ApiError(Exception):
    """Raised anywhere below a view; the API turns it into the error shape with its status.

    A ``field`` longer than ``MAX_SHOWN_FIELD`` characters is cut, in ``field`` and in the message that
    quotes it; a message longer than ``MAX_MESSAGE`` is cut too."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if field is not None and len(field) > MAX_SHOWN_FIELD:
            shown = field[:MAX_SHOWN_FIELD] + "…"
            message, field = message.replace(field, shown), shown
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 1] + "…"
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = dict(headers or {})

    def body(self) -> dict[str, object]:
        error: dict[str, object] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return {"error": error}

    def to_bytes(self) -> bytes:
        return json.dumps(self.body()).encode()

    def to_response(self) -> HttpResponse:
        response = HttpResponse(self.to_bytes(), status=self.status, content_type="application/json")
        for name, value in self.headers.items():
            response[name] = value
        return response


def unauthenticated(message: str = "missing or malformed credentials") -> ApiError:
    return ApiError(401, "unauthenticated", message, headers={"WWW-Authenticate": "Bearer"})


def tenant_mismatch() -> ApiError:
    return ApiError(403, "tenant_mismatch", "this credential belongs to another tenant than this host")


def not_found(message: str = "not found") -> ApiError:
    return ApiError(404, "not_found", message)


def invalid_field(field: str, message: str, status: int = 422) -> ApiError:
    return ApiError(status, "invalid_field", f"{field}: {message}", field=field)


def unavailable(message: str = "the database is unavailable; try again shortly") -> ApiError:
    """``503 unavailable`` with ``Retry-After``: a dependency is down, the request may be retried."""
    return ApiError(503, "unavailable", message, headers={"Retry-After": "2"})


def json_404(request: object, exception: Exception | None = None) -> HttpResponse:
    """Django's ``handler404``: unknown routes answer in the error shape too."""
    return not_found("no such route").to_response()


def json_500(request: object) -> HttpResponse:
    """Django's ``handler500``."""
    return ApiError(500, "internal_error", "internal error").to_response()


def _admin(request: HttpRequest) -> bool:
    """The staff's HTML admin keeps Django's own pages: a person reads them in a browser."""
    return request.path.startswith("/admin/")


def json_400(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's ``handler400``: a request Django refused on its own (a multipart body without a boundary, a
    form over ``DATA_UPLOAD_MAX_NUMBER_FIELDS``...) on the demo routes was an HTML page."""
    if _admin(request):
        return defaults.bad_request(request, exception or Exception())
    return ApiError(400, "bad_request", "the request could not be read").to_response()


def json_403(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's ``handler403``."""
    if _admin(request):
        return defaults.permission_denied(request, exception or Exception())
    return ApiError(403, "forbidden", "this request is not allowed").to_response()


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """``CSRF_FAILURE_VIEW``: ``POST /demo/publish`` without the page's CSRF token was an HTML ``403``."""
    if _admin(request):
        return csrf.csrf_failure(request, reason)
    return ApiError(403, "forbidden", f"CSRF verification failed: {reason}".rstrip(": ")).to_response()
