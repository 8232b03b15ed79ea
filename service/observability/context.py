"""Per-request context for logs and Sentry: the request id and the tenant, set once and read everywhere.

``request_context`` runs at the ASGI edge (``BeaconApp``) so the lean stream route, Django and the server's
access log (written from the request's own task) all see the same request id; ``bind_tenant`` is called by
authentication once a credential has named its tenant.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, MutableMapping
from typing import Any

import sentry_sdk

from service.http import new_request_id, request_id_var, tenant_var

_HEADER = b"x-request-id"


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
        if sentry_sdk.is_initialized():
            with sentry_sdk.isolation_scope():
                yield rid
        else:
            yield rid
    finally:
        tenant_var.reset(tenant_token)
        request_id_var.reset(rid_token)


def bind_tenant(slug: str) -> None:
    """Record the authenticated tenant for this request's log lines and Sentry events."""
    tenant_var.set(slug)
    if sentry_sdk.is_initialized():
        sentry_sdk.get_isolation_scope().set_tag("tenant", slug)
