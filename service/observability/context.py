"""Per-request context for logs and Sentry: the request id and the tenant, set once and read everywhere.

``request_context`` runs at the ASGI edge (``BeaconApp``) so the lean stream route, Django and the server's
access log (written from the request's own task) all see the same request id; ``bind_tenant`` is called by
authentication once a credential has named its tenant.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, MutableMapping
from types import ModuleType
from typing import Any

from service.http import new_request_id, request_headers, request_id_var, tenant_var

_HEADER = b"x-request-id"


def active_sentry() -> ModuleType | None:
    """``sentry_sdk`` once ``SENTRY_DSN`` initialised it (``service.observability.sentry``), else ``None``.

    Looked up, not imported: without a DSN nothing imports the SDK, and each process (every gunicorn worker,
    every ``manage.py`` command) starts 0.15-0.3 s of CPU sooner without it and the urllib3 it brings."""
    sdk = sys.modules.get("sentry_sdk")
    return sdk if sdk is not None and sdk.is_initialized() else None


@contextlib.contextmanager
def request_context(scope: MutableMapping[str, Any]) -> Iterator[str]:
    """Give the request an id (a sane incoming ``X-Request-ID`` or a new one) and a blank tenant.

    A new id is written into the scope's headers so Django's ``RequestIdMiddleware`` keeps the same one.
    With Sentry on, the request also gets its own isolation scope (tags and breadcrumbs stay per request).
    """
    headers = list(scope.get("headers") or ())
    incoming = next((value.decode("latin-1") for name, value in headers if name == _HEADER), None)
    rid = new_request_id(incoming)
    if rid != incoming:
        scope["headers"] = [(name, value) for name, value in headers if name != _HEADER] + [
            (_HEADER, rid.encode("latin-1"))
        ]
    rid_token = request_id_var.set(rid)
    tenant_token = tenant_var.set("-")
    try:
        if (sdk := active_sentry()) is not None:
            with sdk.isolation_scope() as sentry_scope:
                sentry_scope.add_event_processor(_with_request(scope))
                yield rid
        else:
            yield rid
    finally:
        tenant_var.reset(tenant_token)
        request_id_var.reset(rid_token)


def _with_request(scope: MutableMapping[str, Any]) -> Callable[[Any, Any], Any]:
    """A Sentry event processor giving events of routes served before Django (the lean stream and publish
    routes) the ``request`` part Django's integration gives its own: method, URL, query string, headers.
    ``before_send`` (``service.observability.sentry``) scrubs it like every other part of the event."""

    def add_request(event: Any, hint: Any) -> Any:
        if "request" not in event:
            headers = request_headers(scope)
            host = headers.get("host", "")
            event["request"] = {
                "method": scope.get("method"),
                "url": f"{scope.get('scheme', 'http')}://{host}{scope.get('path', '')}",
                "query_string": bytes(scope.get("query_string", b"")).decode("latin-1"),
                "headers": headers,
            }
        return event

    return add_request


def bind_tenant(slug: str) -> None:
    """Record the authenticated tenant for this request's log lines and Sentry events."""
    tenant_var.set(slug)
    if (sdk := active_sentry()) is not None:
        sdk.get_isolation_scope().set_tag("tenant", slug)
