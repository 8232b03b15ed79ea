"""A recipient's inbox: newest first with an id cursor, unread counts and read marks.

Every function takes the tenant explicitly and queries inside its schema only; recipient ids repeat across
tenants, so nothing here may run in whatever schema the thread happened to have.
"""

from __future__ import annotations

import time
from typing import Any

from django.db import connection, transaction
from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.utils import timezone
from django_tenants.utils import schema_context

from service import jsonbody
from service.broker import default_broker
from service.broker.base import Announcement
from service.errors import ApiError, not_found
from service.notifications.models import Notification
from service.numbers import ascii_int
from service.timefmt import rfc3339
from tenants.directory import TenantInfo

MAX_PAGE = 100


def _visible(recipient: str, topics: tuple[str, ...]) -> Q:
    target = Q(recipient=recipient) | Q(broadcast=True)
    if topics:
        target |= Q(topic__in=topics)
    return target & Q(expires_at__gt=timezone.now())


def _with_data_text(rows: QuerySet[Notification]) -> QuerySet[Notification]:
    """Rows with ``data_text``, the ``jsonb`` as PostgreSQL prints it (as the stream's replay reads it):
    ``serialize`` keeps its number texts instead of Django's float round trip (``1.5e-07`` for the stored
    ``0.00000015``)."""
    return rows.annotate(data_text=Cast("data", output_field=TextField())).defer("data")


def serialize(n: Notification) -> dict[str, Any]:
    text = getattr(n, "data_text", None)
    return {
        "id": str(n.id),
        "event": n.event,
        "data": jsonbody.stored(text) if text is not None else None,
        "recipient": n.recipient,
        "topic": n.topic,
        "broadcast": n.broadcast,
        "created_at": rfc3339(n.created_at),
        "expires_at": rfc3339(n.expires_at),
        "read_at": rfc3339(n.read_at) if n.read_at else None,
    }


def page(
    tenant: TenantInfo,
    recipient: str,
    topics: tuple[str, ...] = (),
    *,
    unread: bool = False,
    limit: int = 50,
    before: int | None = None,
) -> dict[str, Any]:
    with schema_context(tenant.schema):
        rows = _unread(recipient) if unread else Notification.objects.filter(_visible(recipient, topics))
        rows = _with_data_text(rows)
        if before is not None:
            rows = rows.filter(id__lt=before)
        found = list(rows.order_by("-id")[: limit + 1])
    has_more = len(found) > limit
    found = found[:limit]
    return {
        "notifications": [serialize(n) for n in found],
        "next": str(found[-1].id) if has_more and found else None,
    }


def unread_count(tenant: TenantInfo, recipient: str) -> int:
    with schema_context(tenant.schema):
        return _count_unread(recipient)


def _unread(recipient: str) -> QuerySet[Notification]:
    """Unread, unexpired rows of ``recipient`` in the current schema (callers set it explicitly)."""
    return Notification.objects.filter(
        recipient=recipient, read_at__isnull=True, expires_at__gt=timezone.now()
    )


def _count_unread(recipient: str) -> int:
    return _unread(recipient).count()


def mark_read(
    tenant: TenantInfo, recipient: str, topics: tuple[str, ...], notification_id: int
) -> dict[str, Any]:
    """Mark one of the recipient's rows read; a broadcast or topic row the token can see is ``409
    no_read_state`` (it is shared, see docs/decisions.md), anything else ``404``."""
    with schema_context(tenant.schema), transaction.atomic():
        visible = Notification.objects.filter(id=notification_id).filter(_visible(recipient, topics))
        row = _with_data_text(visible).first()
        if row is None:
            raise not_found("no such notification for this recipient")
        if row.recipient != recipient:
            raise ApiError(409, "no_read_state", "broadcast and topic notifications have no read state")
        if row.read_at is None:
            row.read_at = timezone.now()
            row.save(update_fields=["read_at"])
            _announce_unread(tenant, recipient)
        return serialize(row)


def mark_all_read(tenant: TenantInfo, recipient: str) -> dict[str, int]:
    """One UPDATE for every unread row of the recipient, then one announcement of the new count."""
    with schema_context(tenant.schema), transaction.atomic():
        updated = _unread(recipient).update(read_at=timezone.now())
        if updated:
            _announce_unread(tenant, recipient, 0)
    return {"updated": updated, "unread": 0}


def _announce_unread(tenant: TenantInfo, recipient: str, count: int | None = None) -> None:
    """Tell every open stream of the recipient (all workers, all pods) its new unread count on commit."""
    if count is None:
        count = _count_unread(recipient)
    with connection.cursor() as cursor:
        default_broker().announce(
            cursor, Announcement(tenant.schema, unread={recipient: count}, sent_at=time.time())
        )


def validate_page_args(limit: int, before: str | None) -> int | None:
    if not 1 <= limit <= MAX_PAGE:
        raise ApiError(422, "invalid_field", f"limit: must be between 1 and {MAX_PAGE}", field="limit")
    if before is None:
        return None
    cursor = ascii_int(before)
    if cursor is None:
        raise ApiError(422, "invalid_field", "before: must be a notification id", field="before")
    return cursor
