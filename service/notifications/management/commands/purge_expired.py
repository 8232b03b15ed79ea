"""``purge_expired [--schema S]``: delete expired notifications and idempotency records past 24 h.

Run it from cron (the Helm chart's operators schedule it); replay answers ``beacon.reset`` (``expired``) to
clients whose position was purged. Each tenant is purged in its own schema, explicitly.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone
from django_tenants.utils import schema_context

from service.notifications.models import IdempotencyRecord, Notification
from service.notifications.publish import IDEMPOTENCY_WINDOW
from tenants.models import Tenant


class Command(BaseCommand):
    help = "Delete expired notifications and old idempotency records in every tenant schema (or one)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("-s", "--schema", dest="schema_name", help="only this tenant schema")

    def handle(self, *args: Any, schema_name: str | None = None, **options: Any) -> None:
        tenants = Tenant.objects.all()
        if schema_name:
            tenants = tenants.filter(schema_name=schema_name)
        now = timezone.now()
        for tenant in tenants:
            with schema_context(tenant.schema_name):
                expired, _ = Notification.objects.filter(expires_at__lte=now).delete()
                old, _ = IdempotencyRecord.objects.filter(created_at__lt=now - IDEMPOTENCY_WINDOW).delete()
            self.stdout.write(f"{tenant.slug}\t{expired} notifications\t{old} idempotency records")
