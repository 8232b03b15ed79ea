"""Sentry error reporting: initialised only when ``SENTRY_DSN`` is set, with every credential scrubbed.

Requests to Beacon carry secrets in three places (``Authorization``, the ``token`` query parameter of an
``EventSource`` and the ``beacon_token`` cookie) and any exception message or log line may quote one.
``scrub`` walks the whole event (request, exception values, breadcrumbs, extra, log entry, ...) and
removes sensitive keys and anything shaped like an API key, a JWT or a bearer credential. Frame locals
are not collected at all: the credential-handling code holds raw keys in local variables.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import sentry_sdk
from sentry_sdk.integrations.django import DjangoIntegration
from sentry_sdk.integrations.logging import LoggingIntegration, ignore_logger
from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber
from sentry_sdk.transport import Transport
from sentry_sdk.utils import AnnotatedValue

from service.http import request_id_var, tenant_var
from service.observability.redact import FILTERED, SECRET_PARAM_NAMES, redact

if TYPE_CHECKING:
    from sentry_sdk._types import Event

# Compared after lower-casing and turning ``-`` into ``_``.
SENSITIVE_KEYS = frozenset({
    "authorization", "proxy_authorization", "cookie", "cookies", "set_cookie", "x_api_key", "api_key",
    "apikey", "password", "secret", "secret_key", "signing_secret", "sessionid", "csrftoken", "raw",
    *SECRET_PARAM_NAMES,
})  # fmt: skip
_MAX_DEPTH = 32


def _sensitive(key: object) -> bool:
    return isinstance(key, str) and key.lower().replace("-", "_") in SENSITIVE_KEYS


def scrub(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` with sensitive keys filtered and secret-shaped strings redacted, recursively."""
    if depth > _MAX_DEPTH:
        return FILTERED
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {key: FILTERED if _sensitive(key) else scrub(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        if len(value) == 2 and _sensitive(value[0]):  # a (name, value) pair: headers or query as a list
            return [value[0], FILTERED]
        return [scrub(item, depth + 1) for item in value]
    if isinstance(value, AnnotatedValue):
        return AnnotatedValue(scrub(value.value, depth + 1), value.metadata)
    return value


def before_send(event: Event, hint: dict[str, Any]) -> Event:
    """Scrub the event and tag it with the request's tenant and request id (from the request context).

    ``_meta`` is Sentry's own bookkeeping of what was removed (keyed like the event): left as it is.
    """
    cleaned: dict[str, Any] = {key: value if key == "_meta" else scrub(value) for key, value in event.items()}
    tags = cleaned.get("tags")
    if not isinstance(tags, dict):
        tags = cleaned["tags"] = {}
    tenant = tenant_var.get()
    if tenant != "-":
        tags["tenant"] = tenant
    request_id = request_id_var.get()
    if request_id != "-":
        tags.setdefault("request_id", request_id)
    return cast("Event", cleaned)


def before_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any] | None) -> dict[str, Any]:
    """Scrub a breadcrumb (log messages, HTTP URLs, data) before it joins the scope."""
    cleaned: dict[str, Any] = scrub(crumb)
    return cleaned


def init_sentry(dsn: str, *, environment: str, release: str, transport: Transport | None = None) -> None:
    """Start the Sentry SDK (Django and logging integrations, no PII, scrubbing hooks)."""
    # Every stream connection and health probe would be a breadcrumb: not worth their weight.
    ignore_logger("uvicorn.access")
    ignore_logger("gunicorn.access")
    options: dict[str, Any] = {}
    if transport is not None:
        options["transport"] = transport
    with warnings.catch_warnings():
        # Newer SDKs prefer ``data_collection``; it would switch off the event scrubber, so stay explicit.
        warnings.filterwarnings("ignore", message="The send_default_pii option is deprecated")
        _init(dsn, environment, release, options)


def _init(dsn: str, environment: str, release: str, options: dict[str, Any]) -> None:
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=release,
        integrations=[
            DjangoIntegration(),
            LoggingIntegration(level=logging.INFO, event_level=logging.ERROR),
        ],
        send_default_pii=False,
        include_local_variables=False,
        max_request_body_size="never",  # notification bodies are the tenants' users' data
        event_scrubber=EventScrubber(denylist=[*DEFAULT_DENYLIST, *SENSITIVE_KEYS], recursive=True),
        before_send=before_send,
        before_breadcrumb=before_breadcrumb,
        **options,
    )
