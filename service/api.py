"""The JSON API: one NinjaAPI, Beacon's error shape for every failure, strict body parsing.

Body checks happen in this order, each with its own status: credentials (401/403), content type (415),
size (413), JSON syntax (400), schema (422), tenant limits (413/429).
"""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from typing import Any

import pydantic
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI, Swagger
from ninja.errors import HttpError, ValidationError
from ninja.parser import Parser
from ninja.renderers import JSONRenderer
from ninja.responses import NinjaJSONEncoder
from pydantic import BaseModel

from service import jsonbody
from service.db import is_outage
from service.errors import ApiError, unavailable
from service.notifications.validation import body_limit
from service.observability.context import active_sentry

log = logging.getLogger(__name__)


def media_type(content_type: str) -> str:
    """The media type of a ``Content-Type`` value (before any ``;`` parameter), lower-cased, with only HTTP's
    white space (SP, HTAB) around it removed: Django's ``request.content_type`` strips any Unicode white
    space, so ``application/json\x85`` was taken for JSON."""
    return content_type.partition(";")[0].strip(" \t").lower()


def decode_json_body(content_type: str, path: str, body: bytes) -> Any:
    """The JSON value of a request ``body`` sent with ``content_type`` (the header's value) to ``path``.

    ``415`` for another media type, ``413`` past the route's size limit, ``400 invalid_json`` for bytes that
    are not JSON we accept (``service.jsonbody``). One rule for the ninja routes and the lean publish route.
    """
    if media_type(content_type) != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as Content-Type: application/json")
    limit = body_limit(path)
    if len(body) > limit:
        raise ApiError(413, "payload_too_large", f"the body is larger than {limit} bytes")
    try:
        return jsonbody.parse(body)
    except jsonbody.InvalidJson as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None


class StrictJsonParser(Parser):
    """JSON bodies only, within the route's size limit; every failure raises an ``ApiError``."""

    def parse_body(self, request: HttpRequest) -> Any:
        return decode_json_body(request.META.get("CONTENT_TYPE", ""), request.path, request.body)


class _NoDecimalEncoder(NinjaJSONEncoder):
    def default(self, o: Any) -> Any:
        if isinstance(o, Decimal):
            raise TypeError("a Decimal is written by jsonbody.dumps")
        return super().default(o)


class NumericJSONRenderer(JSONRenderer):
    """ninja's JSON renderer, except that a ``Decimal`` (a ``data`` number read from ``jsonb``,
    ``jsonbody.stored``) is written as the JSON number PostgreSQL printed, not as a string (Django's encoder)."""

    def render(self, request: HttpRequest, data: Any, *, response_status: int) -> Any:
        try:
            return json.dumps(data, cls=_NoDecimalEncoder)
        except TypeError:
            return jsonbody.dumps(data, default=_NoDecimalEncoder().default)


api = NinjaAPI(
    title="Beacon",
    version="1.0.0",
    description="Multi-tenant notifications: publish with an API key, read with a subscriber token.",
    urls_namespace="v1",
    parser=StrictJsonParser(),
    renderer=NumericJSONRenderer(),
    openapi_url="/openapi.json",
    docs_url="/docs",  # Swagger UI from django-ninja's own static files (ninja is an installed app)
    # validatorUrl: Swagger UI would otherwise fetch a badge from validator.swagger.io (nothing leaves).
    docs=Swagger(settings={"validatorUrl": None}),
)


def field_path(loc: tuple[Any, ...] | list[Any]) -> str | None:
    """``("body", "payload", "notifications", 7, "data")`` becomes ``notifications[7].data``."""
    parts = list(loc)
    if parts[:2] == ["body", "payload"]:
        parts = parts[2:]
    elif parts and parts[0] in {"query", "path", "header", "cookie", "body"}:
        parts = parts[1:]
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or None


def from_validation(errors: list[dict[str, Any]]) -> ApiError:
    """The first problem as one error: unknown fields win, so a typo is named as such."""
    for error in errors:
        if error.get("type") == "extra_forbidden":
            field = field_path(error["loc"])
            return ApiError(422, "unknown_field", f"{field}: unknown field", field=field)
    error = errors[0]
    loc = list(error.get("loc", ()))
    if loc == ["body", "payload"] and error.get("type") == "missing":
        return ApiError(400, "invalid_json", "the request body is empty")
    field = field_path(loc)
    message = str(error.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ")
    return ApiError(422, "invalid_field", f"{field}: {message}" if field else message, field=field)


def validated_payload(model: type[BaseModel], content_type: str, path: str, body: bytes) -> Any:
    """The ``payload`` of ``body``, parsed and validated as ninja does a view's one body argument: the same
    errors.

    ``model`` has one field, ``payload`` (ninja's name for the view argument): ninja skips parsing an empty
    body and validates ``{}`` (so ``payload`` is missing: ``400 invalid_json``, whatever the content type),
    else validates ``{"payload": value}``; error locations are prefixed with ``body`` as ninja's are.
    """
    data = {"payload": decode_json_body(content_type, path, body)} if body else {}
    try:
        return model.model_validate(data).payload  # type: ignore[attr-defined]
    except pydantic.ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        raise from_validation(errors) from None


def _tell_sentry(exc: Exception) -> None:
    if (sdk := active_sentry()) is not None:  # SENTRY_DSN set
        sdk.capture_exception(exc)


def report_unexpected(method: str, path: str, exc: Exception) -> bool:
    """Log ``exc``, which no rule expected, and tell Sentry; returns whether it is a database outage. An
    outage is not the client's fault and not a bug (a warning: retry later, but operators hear of it);
    anything else is logged with its traceback."""
    outage = is_outage(exc)
    if outage:
        log.warning("database unavailable in %s %s: %s", method, path, exc)
    else:
        log.exception("unhandled error in %s %s", method, path, exc_info=exc)
    _tell_sentry(exc)
    return outage


def unexpected_error(method: str, path: str, exc: Exception) -> ApiError:
    """What an exception no rule expected answers: ``503 unavailable`` for a database outage, else ``500
    internal_error`` (``report_unexpected`` logs both and tells Sentry)."""
    if report_unexpected(method, path, exc):
        return unavailable()
    return ApiError(500, "internal_error", "internal error")


@api.exception_handler(ApiError)
def _api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
    return exc.to_response()


@api.exception_handler(ValidationError)
def _validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    return from_validation(exc.errors).to_response()


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if isinstance(exc.__cause__, ApiError):  # raised by the parser, wrapped by ninja
        return exc.__cause__.to_response()
    code = {401: "unauthenticated", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}.get(
        exc.status_code, "bad_request"
    )
    return ApiError(exc.status_code, code, str(exc)).to_response()


@api.exception_handler(SuspiciousOperation)
def _suspicious(request: HttpRequest, exc: SuspiciousOperation) -> HttpResponse:
    """What Django refuses while reading a request (too many query fields, ...): a client error, ``400``
    as Django's own handler answers it, never a ``500`` (``service.http.query_problem`` refuses the known
    ones before a route runs)."""
    log.warning("request refused by Django in %s %s: %s", request.method, request.path, type(exc).__name__)
    return ApiError(400, "bad_request", "the request could not be read").to_response()


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    return unexpected_error(request.method or "", request.path, exc).to_response()


from service.notifications.api import router as notifications_router  # noqa: E402

api.add_router("", notifications_router)
