"""Tenant-schema tables: notifications and idempotency records."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class Notification(models.Model):
    """One delivered-to target: a recipient row, a topic row, or a broadcast row (exactly one of them)."""

    id = models.BigAutoField(primary_key=True)
    recipient = models.CharField(max_length=256, null=True, blank=True)
    topic = models.CharField(max_length=256, null=True, blank=True)
    broadcast = models.BooleanField(default=False)
    event = models.CharField(max_length=64, null=True, blank=True)
    data = models.JSONField(null=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "beacon_notification"
        indexes = [
            # "everything for recipient R after id N" (replay, inbox pages) is an index range scan.
            models.Index(fields=["recipient", "id"], name="notif_recipient_id"),
            models.Index(fields=["topic", "id"], name="notif_topic_id", condition=Q(topic__isnull=False)),
            models.Index(fields=["id"], name="notif_broadcast_id", condition=Q(broadcast=True)),
            # "unread for R": a small partial index that only holds unread recipient rows.
            models.Index(
                fields=["recipient", "id"],
                name="notif_unread",
                condition=Q(read_at__isnull=True, recipient__isnull=False),
            ),
            models.Index(fields=["expires_at"], name="notif_expires"),
        ]
        constraints = [
            models.CheckConstraint(
                name="notif_one_target",
                condition=(
                    Q(recipient__isnull=False, topic__isnull=True, broadcast=False)
                    | Q(recipient__isnull=True, topic__isnull=False, broadcast=False)
                    | Q(recipient__isnull=True, topic__isnull=True, broadcast=True)
                ),
            )
        ]


class IdempotencyRecord(models.Model):
    """The first answer to an ``Idempotency-Key``; its unique key makes concurrent retries wait on each other."""

    key = models.CharField(max_length=255, unique=True)
    request_hash = models.CharField(max_length=64)
    status = models.PositiveSmallIntegerField(default=201)
    response = models.JSONField(null=True)
    created_at = models.DateTimeField()

    class Meta:
        db_table = "beacon_idempotency"
        indexes = [models.Index(fields=["created_at"], name="idem_created")]
