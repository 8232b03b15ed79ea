"""Tenants, their domains and API keys (``public`` schema)."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone
from django_tenants.models import DomainMixin, TenantMixin

from service.notifications.validation import MAX_TTL, MIN_TTL
from tenants.origins import validate_allowed_origins

SLUG_RE = re.compile(r"^[a-z][a-z0-9-]{1,61}[a-z0-9]$")
RESERVED_SLUGS = frozenset({"public", "www", "admin", "api"})


def validate_slug(value: str) -> None:
    if not SLUG_RE.fullmatch(value):  # not match: "$" also matches before a final newline
        raise ValidationError("slug must match ^[a-z][a-z0-9-]{1,61}[a-z0-9]$")
    if value in RESERVED_SLUGS:
        raise ValidationError(f"slug {value!r} is reserved")


def schema_for_slug(slug: str) -> str:
    """PostgreSQL schema of a tenant: ``t_<slug>`` with ``-`` as ``_`` (injective: slugs have no ``_``).

    Long slugs are cut and suffixed with a hash so the name fits PostgreSQL's 63-byte identifiers.
    """
    name = "t_" + slug.replace("-", "_")
    if len(name) > 63:
        name = name[:52] + "_" + hashlib.sha256(slug.encode()).hexdigest()[:10]
    return name


def new_signing_secret() -> str:
    return secrets.token_urlsafe(32)


class Tenant(TenantMixin):
    slug = models.CharField(max_length=63, unique=True, validators=[validate_slug])
    name = models.CharField(max_length=200, blank=True)
    is_active = models.BooleanField(default=True)
    signing_secret = models.CharField(
        max_length=128, default=new_signing_secret, help_text="HS256 secret for subscriber tokens."
    )
    allowed_origins = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_allowed_origins],
        help_text='Serialized origins allowed by CORS, e.g. ["https://app.example.com"] (no path, no *).',
    )
    max_connections = models.PositiveIntegerField(default=10_000)
    max_connections_per_recipient = models.PositiveIntegerField(default=10)
    publish_rate_per_second = models.PositiveIntegerField(default=1000)
    max_payload_bytes = models.PositiveIntegerField(default=64 * 1024)
    # Retention (docs/operations.md): a notification without its own ``ttl`` lives ``default_ttl_seconds``
    # (empty: the contract's 30 days); none is kept longer than ``max_retention_seconds`` (empty: 90 days).
    default_ttl_seconds = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(MIN_TTL), MaxValueValidator(MAX_TTL)],
        help_text="ttl of notifications published without one, 60 s to 90 days (empty: 30 days).",
    )
    max_retention_seconds = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(MIN_TTL), MaxValueValidator(MAX_TTL)],
        help_text="No notification is kept longer: larger ttls are shortened to it, and purge_expired "
        "deletes older rows (empty: 90 days, the contract's largest ttl).",
    )
    created_at = models.DateTimeField(default=timezone.now)

    auto_create_schema = True
    # Never drop a schema by accident (admin deletions, cascades): only `delete_tenant --drop-schema --yes`.
    auto_drop_schema = False

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    def save(self, verbosity: int = 0, *args: Any, **kwargs: Any) -> None:
        if not getattr(self, "schema_name", ""):
            self.schema_name = schema_for_slug(self.slug)
        super().save(verbosity, *args, **kwargs)

    def rotate_signing_secret(self) -> None:
        """A new subscriber-signing secret; open streams are ended by ``tenants.lifecycle``."""
        self.signing_secret = new_signing_secret()
        self.save(update_fields=["signing_secret"])

    def clean(self) -> None:
        super().clean()
        ttl, retention = self.default_ttl_seconds, self.max_retention_seconds
        if ttl is not None and retention is not None and ttl > retention:
            raise ValidationError(
                {"default_ttl_seconds": "the default ttl cannot exceed the maximum retention"}
            )


class Domain(DomainMixin):
    pass


class ApiKey(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=200, blank=True)
    public_id = models.CharField(max_length=12, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"bk_{self.public_id}… ({self.name or 'unnamed'})"

    def is_usable(self, now: datetime) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > now

    @classmethod
    def issue(cls, tenant: Tenant, name: str = "") -> tuple[ApiKey, str]:
        """Create a key and return it with the full key string, which is never stored."""
        from tenants import keys

        full, public_id, secret_hash = keys.generate()
        api_key = cls.objects.create(tenant=tenant, name=name, public_id=public_id, secret_hash=secret_hash)
        return api_key, full


class PublishWindow(models.Model):
    """The current one-second publish window of a tenant (rate limit shared by every worker and pod)."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, primary_key=True, related_name="+")
    window_start = models.BigIntegerField(default=0)
    count = models.IntegerField(default=0)
