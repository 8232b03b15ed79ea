"""Tenant changes that must reach open streams: rotating the signing secret, deactivating, deleting.

Each change commits together with one broker announcement carrying ``close``: every worker drops its cached
tenant and ends that tenant's open streams at once (contract: rotation ends them within 5 seconds). Clients
reconnect; an old token then fails with ``401 invalid_token`` and ``beacon.js`` asks its backend for a new one.
No stream polls anything: the announcement travels the broker channel that already carries notifications.
"""

from __future__ import annotations

import time

from django.db import connection, transaction

from service.broker import default_broker
from service.broker.base import Announcement
from tenants.models import Tenant

SECRET_ROTATED = "secret_rotated"
TENANT_INACTIVE = "tenant_inactive"
TENANT_DELETED = "tenant_deleted"


def end_streams(tenant: Tenant, reason: str) -> None:
    """Announce, inside the caller's transaction, that the tenant's open streams must end (on commit)."""
    announcement = Announcement(tenant.schema_name, sent_at=time.time(), close=reason)
    with connection.cursor() as cursor:
        default_broker().announce(cursor, announcement)


def rotate_signing_secret(tenant: Tenant) -> None:
    """A new subscriber-signing secret; tokens signed with the old one stop working and streams end."""
    with transaction.atomic():
        tenant.rotate_signing_secret()
        end_streams(tenant, SECRET_ROTATED)


def save_tenant(tenant: Tenant, *, was_active: bool, update_fields: list[str] | None = None) -> None:
    """Save ``tenant``; when it goes from active to inactive, its open streams end."""
    with transaction.atomic():
        tenant.save(update_fields=update_fields)
        if was_active and not tenant.is_active:
            end_streams(tenant, TENANT_INACTIVE)


def set_active(tenant: Tenant, active: bool) -> None:
    was_active = tenant.is_active
    tenant.is_active = active
    save_tenant(tenant, was_active=was_active, update_fields=["is_active"])
