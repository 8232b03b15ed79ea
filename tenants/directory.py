"""Read-only snapshots of tenants, domains and API keys with short per-process caches.

Requests and streams look these up on every call; a cache of a few seconds keeps that off the database
while revocations, rotations and deactivations still take effect everywhere within seconds
(``API_KEY_CACHE_SECONDS`` / ``TENANT_CACHE_SECONDS``). Loaders are blocking ORM code: call them through
``service.db.run_db`` from async code.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from django.conf import settings
from django.utils import timezone

from tenants.models import ApiKey, Domain, Tenant

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True)
class TenantInfo:
    id: int
    slug: str
    schema: str
    is_active: bool
    signing_secret: str
    allowed_origins: tuple[str, ...]
    max_connections: int
    max_connections_per_recipient: int
    publish_rate_per_second: int
    max_payload_bytes: int
    default_ttl: int | None = None  # seconds; None: the contract's default (30 days)
    max_retention: int | None = None  # seconds; None: no bound beyond the contract's largest ttl

    @classmethod
    def of(cls, tenant: Tenant) -> TenantInfo:
        return cls(
            id=tenant.pk,
            slug=tenant.slug,
            schema=tenant.schema_name,
            is_active=tenant.is_active,
            signing_secret=tenant.signing_secret,
            allowed_origins=tuple(str(origin) for origin in (tenant.allowed_origins or [])),
            max_connections=tenant.max_connections,
            max_connections_per_recipient=tenant.max_connections_per_recipient,
            publish_rate_per_second=tenant.publish_rate_per_second,
            max_payload_bytes=tenant.max_payload_bytes,
            default_ttl=tenant.default_ttl_seconds,
            max_retention=tenant.max_retention_seconds,
        )


@dataclass(frozen=True)
class KeyInfo:
    id: int
    public_id: str
    secret_hash: str
    tenant_id: int
    revoked: bool
    expires_at: datetime | None

    def usable(self, now: datetime) -> bool:
        return not self.revoked and (self.expires_at is None or self.expires_at > now)


class TtlCache(Generic[K, V]):
    """A tiny thread-safe cache whose entries (hits and misses alike) live ``ttl()`` seconds."""

    def __init__(self, ttl: Callable[[], float], max_entries: int = 10_000) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._items: dict[K, tuple[float, V | None]] = {}
        self._lock = threading.Lock()
        self.generation = 0  # moves at every clear: a load that began before a clear must not be stored

    def get(self, key: K) -> tuple[bool, V | None]:
        """``(found, value)``; ``value`` may be ``None`` for a cached miss."""
        item = self._items.get(key)
        if item is None or item[0] < time.monotonic():
            return False, None
        return True, item[1]

    def put(self, key: K, value: V | None, generation: int | None = None) -> None:
        """Store ``value``; with ``generation`` (read before the value was loaded), only if the cache was not
        cleared since: a rotation's clear must not be undone by a load of the old row still in flight."""
        with self._lock:
            if generation is not None and generation != self.generation:
                return
            if len(self._items) >= self._max:
                self._items.clear()
            self._items[key] = (time.monotonic() + self._ttl(), value)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.generation += 1


tenants_by_slug: TtlCache[str, TenantInfo] = TtlCache(lambda: settings.TENANT_CACHE_SECONDS)
tenants_by_id: TtlCache[int, TenantInfo] = TtlCache(lambda: settings.TENANT_CACHE_SECONDS)
tenant_id_by_host: TtlCache[str, int] = TtlCache(lambda: settings.TENANT_CACHE_SECONDS)
keys_by_public_id: TtlCache[str, KeyInfo] = TtlCache(lambda: settings.API_KEY_CACHE_SECONDS)


def forget_tenants() -> None:
    """Drop this process's cached tenants (after a rotation or deactivation announced by the broker)."""
    tenants_by_slug.clear()
    tenants_by_id.clear()


def _cached(cache: TtlCache[K, V], key: K, load: Callable[[K], V | None]) -> V | None:
    found, value = cache.get(key)
    if found:
        return value
    generation = cache.generation
    value = load(key)
    cache.put(key, value, generation)  # not stored if the cache was cleared while this loaded
    return value


def tenant_by_slug(slug: str) -> TenantInfo | None:
    def load(slug: str) -> TenantInfo | None:
        tenant = Tenant.objects.filter(slug=slug).first()
        return TenantInfo.of(tenant) if tenant else None

    return _cached(tenants_by_slug, slug, load)


def tenant_by_id(tenant_id: int) -> TenantInfo | None:
    def load(tenant_id: int) -> TenantInfo | None:
        tenant = Tenant.objects.filter(pk=tenant_id).first()
        return TenantInfo.of(tenant) if tenant else None

    return _cached(tenants_by_id, tenant_id, load)


def tenant_id_for_host(host: str) -> int | None:
    """The tenant owning ``host`` (a configured domain, normalised by ``service.hosts``), or ``None``."""

    def load(host: str) -> int | None:
        return Domain.objects.filter(domain__iexact=host).values_list("tenant_id", flat=True).first()

    return _cached(tenant_id_by_host, host, load)


def api_key(public_id: str) -> KeyInfo | None:
    def load(public_id: str) -> KeyInfo | None:
        key = ApiKey.objects.filter(public_id=public_id).first()
        if key is None:
            return None
        return KeyInfo(
            id=key.pk,
            public_id=key.public_id,
            secret_hash=key.secret_hash,
            tenant_id=key.tenant_id,
            revoked=key.revoked_at is not None,
            expires_at=key.expires_at,
        )

    return _cached(keys_by_public_id, public_id, load)


class OriginUnion:
    """The union of every active tenant's allowed origins, cached for ``TENANT_CACHE_SECONDS``.

    A CORS preflight carries no credential, so it is answered from this set (``service.cors``). One query per
    process and period, whatever the traffic; when a reload fails the last good set keeps serving.
    """

    def __init__(self) -> None:
        self._expires = 0.0
        self._origins: frozenset[str] = frozenset()

    def fresh(self) -> frozenset[str] | None:
        """The cached set while it is fresh, else ``None`` (call ``load`` then)."""
        return self._origins if time.monotonic() < self._expires else None

    def stale(self) -> frozenset[str]:
        return self._origins

    def load(self) -> frozenset[str]:
        """Read the set from the database (blocking ORM code) and cache it."""
        origins: set[str] = set()
        for listed in Tenant.objects.filter(is_active=True).values_list("allowed_origins", flat=True):
            origins.update(str(origin) for origin in listed or ())
        self._origins = frozenset(origins)
        self._expires = time.monotonic() + settings.TENANT_CACHE_SECONDS
        return self._origins

    def clear(self) -> None:
        self._expires = 0.0


origin_union = OriginUnion()


_last_used_marks: dict[int, float] = {}


KEY_USE_INTERVAL = 60.0


def key_use_due(key: KeyInfo) -> bool:
    """Whether ``last_used_at`` should be written now: at most once a minute per key and process."""
    return time.monotonic() - _last_used_marks.get(key.id, -KEY_USE_INTERVAL) >= KEY_USE_INTERVAL


def mark_key_used(key: KeyInfo) -> None:
    """Record ``last_used_at`` when due (callers check ``key_use_due`` first to skip the thread hop)."""
    if not key_use_due(key):
        return
    _last_used_marks[key.id] = time.monotonic()
    ApiKey.objects.filter(pk=key.id).update(last_used_at=timezone.now())
