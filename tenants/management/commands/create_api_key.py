"""``create_api_key SLUG [--name NAME]``: the new key is printed alone on the last line of stdout."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenants.models import ApiKey, Tenant


class Command(BaseCommand):
    help = "Create an API key for a tenant. The key is shown once; only its hash is stored."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--name", default="")

    def handle(self, *args: Any, slug: str, name: str, **options: Any) -> None:
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"no tenant {slug!r}")
        longest = ApiKey._meta.get_field("name").max_length or 0
        if len(name) > longest:
            raise CommandError(f"--name has {len(name)} characters; at most {longest}")
        api_key, full = ApiKey.issue(tenant, name=name)
        self.stdout.write(f"created API key {api_key.public_id} for tenant {tenant.slug}; it is shown once:")
        self.stdout.write(full)
