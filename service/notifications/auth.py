"""Credentials: API keys for tenant backends, subscriber tokens for browsers.

Lookups go through the short per-process caches of ``tenants.directory``; a cache hit costs no thread hop
and no query. The host check enforces ``403 tenant_mismatch`` when a request arrives on another tenant's
domain.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.http import HttpRequest
from django.utils import timezone
from ninja.security import HttpBearer

from service import cors, hosts
from service.db import run_db
from service.errors import ApiError, tenant_mismatch, unauthenticated
from service.notifications import tokens
from service.notifications.tokens import Subscriber
from service.observability.context import bind_tenant
from tenants import directory, keys
from tenants.directory import KeyInfo, TenantInfo, TtlCache

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True)
class KeyPrincipal:
    tenant: TenantInfo
    key: KeyInfo


async def _lookup(cache: TtlCache[K, V], load: Callable[[K], V | None], key: K) -> V | None:
    """A cache hit costs no thread hop; a miss runs the loader (which fills the cache) in the ORM's pool."""
    found, value = cache.get(key)
    return value if found else await run_db(load, key)


async def tenant_by_id(tenant_id: int) -> TenantInfo | None:
    return await _lookup(directory.tenants_by_id, directory.tenant_by_id, tenant_id)


async def tenant_by_slug(slug: str) -> TenantInfo | None:
    return await _lookup(directory.tenants_by_slug, directory.tenant_by_slug, slug)


async def check_host(host: str, tenant: TenantInfo) -> None:
    """``403 tenant_mismatch`` when ``host`` (the raw ``Host`` header) is a domain of another tenant; any
    other host is fine. ``400 invalid_host`` when it is not a host (``service.hosts``)."""
    owner = await _lookup(directory.tenant_id_by_host, directory.tenant_id_for_host, hosts.require(host))
    if owner is not None and owner != tenant.id:
        raise tenant_mismatch()


def invalid_api_key() -> ApiError:
    return ApiError(
        401,
        "invalid_api_key",
        "unknown, revoked or expired API key",
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


async def authenticate_api_key(raw: str | None, host: str) -> KeyPrincipal:
    if not raw:
        raise unauthenticated("an API key is required: Authorization: Bearer bk_...")
    parsed = keys.parse(raw)
    if parsed is None:
        raise unauthenticated("malformed API key")
    info = await _lookup(directory.keys_by_public_id, directory.api_key, parsed.public_id)
    if (
        info is None
        or not keys.secret_matches(parsed.secret, info.secret_hash)
        or not info.usable(timezone.now())
    ):
        raise invalid_api_key()
    tenant = await tenant_by_id(info.tenant_id)
    if tenant is None:
        raise invalid_api_key()
    bind_tenant(tenant.slug)  # logs and Sentry name the tenant from here on (403s included)
    if not tenant.is_active:
        raise ApiError(403, "tenant_inactive", "this tenant is deactivated")
    await check_host(host, tenant)
    if directory.key_use_due(info):  # a thread hop once a minute, not per request
        await run_db(directory.mark_key_used, info)
    return KeyPrincipal(tenant, info)


async def authenticate_token(raw: str | None, host: str) -> Subscriber:
    if not raw:
        raise unauthenticated("a subscriber token is required")
    decoded = tokens.decode(raw)  # parsed once; ``tid`` picks the secret that verifies it
    subscriber = tokens.verify(decoded, await tenant_by_slug(decoded.tenant_slug))
    bind_tenant(subscriber.tenant.slug)
    await check_host(host, subscriber.tenant)
    return subscriber


def bearer(header: str | None) -> str | None:
    """The credential of an ``Authorization: Bearer`` header; ``None`` when absent or another scheme."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    value = value.strip(" \t")  # HTTP's white space only: str.strip() also took U+0085 and U+00A0 away
    if scheme.lower() != "bearer" or not value:
        return None
    return value


async def api_key_principal(authorization: str | None, host: str) -> KeyPrincipal:
    """The tenant backend behind an ``Authorization`` header value (``Bearer bk_...``) on ``host``: every
    route that takes an API key (ninja's ``ApiKeyAuth`` and the lean publish route) calls this."""
    raw = bearer(authorization)
    if authorization and raw is None:
        raise unauthenticated("use Authorization: Bearer <API key>")
    return await authenticate_api_key(raw, host)


def _raw_host(request: HttpRequest) -> str:
    """The ``Host`` header as sent (Django's ``get_host`` refuses some valid forms, such as ``host:``)."""
    return str(request.META.get("HTTP_HOST", ""))


class ApiKeyAuth(HttpBearer):
    """Ninja auth for tenant backends (``Authorization: Bearer bk_...``)."""

    is_async = True

    async def __call__(self, request: HttpRequest) -> Any:
        return await api_key_principal(request.headers.get("Authorization"), _raw_host(request))

    def authenticate(self, request: HttpRequest, token: str) -> Any:  # pragma: no cover - __call__ is used
        raise NotImplementedError


class SubscriberAuth(HttpBearer):
    """Ninja auth for browsers: a subscriber token in the header, the ``token`` query or the cookie.

    Then the per-tenant origin check (``service.cors.origin_allowed_for``): a request from an origin the
    tenant does not list is ``403 origin_not_allowed``, which keeps cookie users safe from cross-site posts.
    """

    is_async = True

    async def __call__(self, request: HttpRequest) -> Any:
        explicit = bearer(request.headers.get("Authorization")) or request.GET.get("token")
        raw = explicit or request.COOKIES.get("beacon_token")
        host = _raw_host(request)
        subscriber = await authenticate_token(raw, host)
        origin = request.headers.get("Origin")
        own = cors.own_origin(request.scheme or "http", host)
        if not cors.origin_allowed_for(subscriber.tenant, origin, own, cookie=not explicit):
            raise cors.origin_not_allowed()
        if origin:
            cors.allow(request)
        return subscriber

    def authenticate(self, request: HttpRequest, token: str) -> Any:  # pragma: no cover - __call__ is used
        raise NotImplementedError
