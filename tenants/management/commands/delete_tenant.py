"""``delete_tenant SLUG --drop-schema --yes``: the only way a tenant's data is dropped (contract).

Deletes the tenant, its domains and API keys, and drops its schema with every notification in it. Both flags
are required, so neither a typo nor a habit drops data; to stop a tenant without losing anything, use
``update_tenant SLUG --inactive``. Open streams of the tenant end at once.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction

from tenants import lifecycle
from tenants.models import Tenant


class Command(BaseCommand):
    help = "Delete a tenant and drop its schema with all its data (requires --drop-schema --yes)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--drop-schema", action="store_true", help="drop the schema and all its data")
        parser.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")

    def handle(self, *args: Any, slug: str, drop_schema: bool, yes: bool, **options: Any) -> None:
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"no tenant {slug!r}")
        if not drop_schema or not yes:
            raise CommandError(
                f"deleting {slug!r} drops schema {tenant.schema_name} and all its notifications for good: "
                "pass --drop-schema --yes (or keep the data: update_tenant "
                f"{slug} --inactive); nothing changed"
            )
        schema = tenant.schema_name
        with transaction.atomic():
            lifecycle.end_streams(tenant, lifecycle.TENANT_DELETED)
            tenant.delete()
            with connection.cursor() as cursor:
                cursor.execute(f"DROP SCHEMA IF EXISTS {connection.ops.quote_name(schema)} CASCADE")
        self.stdout.write(f"deleted tenant {slug} and dropped schema {schema}")
