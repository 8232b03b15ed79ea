"""``list_tenants``: one tab-separated line per tenant (slug, schema, active, domains), for scripts."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from tenants.models import Tenant


class Command(BaseCommand):
    help = "List tenants: slug, schema, active, comma-separated domains (tab-separated, one per line)."

    def handle(self, *args: Any, **options: Any) -> None:
        for tenant in Tenant.objects.prefetch_related("domains").order_by("slug"):
            domains = ",".join(d.domain for d in tenant.domains.all())
            self.stdout.write(
                f"{tenant.slug}\t{tenant.schema_name}\t{'active' if tenant.is_active else 'inactive'}\t{domains}"
            )
