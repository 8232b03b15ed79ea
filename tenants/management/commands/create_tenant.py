"""``create_tenant SLUG [--name NAME] [--domain HOST ...]``: create the tenant, its schema and migrate it."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from tenants.models import Domain, Tenant, validate_slug


class Command(BaseCommand):
    help = "Create a tenant with its own schema (migrated) and optional domains."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--name", default="")
        parser.add_argument("--domain", action="append", default=[], dest="domains", metavar="HOST")

    def handle(self, *args: Any, slug: str, name: str, domains: list[str], **options: Any) -> None:
        try:
            validate_slug(slug)
        except ValidationError as exc:
            raise CommandError(f"invalid slug {slug!r}: {' '.join(exc.messages)}") from None
        if Tenant.objects.filter(slug=slug).exists():
            raise CommandError(f"tenant {slug!r} already exists; nothing changed")
        taken = list(Domain.objects.filter(domain__in=domains).values_list("domain", flat=True))
        if taken:
            raise CommandError(f"domain already in use: {', '.join(taken)}; nothing changed")
        with transaction.atomic():
            tenant = Tenant.objects.create(slug=slug, name=name or slug)
            for index, host in enumerate(domains):
                Domain.objects.create(tenant=tenant, domain=host.lower(), is_primary=index == 0)
        self.stdout.write(f"created tenant {tenant.slug} (schema {tenant.schema_name})")
