"""``create_tenant SLUG [--name NAME] [--domain HOST ...] [--allowed-origin ORIGIN ...] [limits, retention]``.

Creates the tenant, its schema (migrated) and its domains. Every value is checked before anything is
written: a bad one exits non-zero with a clear message and changes nothing (contract: operator commands).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from service import hosts
from tenants.management.options import add_tenant_options, apply_tenant_options, validate_tenant
from tenants.models import Domain, Tenant, validate_slug


class Command(BaseCommand):
    help = "Create a tenant with its own schema (migrated), optional domains, allowed origins and limits."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--name", default="")
        parser.add_argument("--domain", action="append", default=[], dest="domains", metavar="HOST")
        add_tenant_options(parser)

    def handle(self, *args: Any, slug: str, name: str, domains: list[str], **options: Any) -> None:
        try:
            validate_slug(slug)
        except ValidationError as exc:
            raise CommandError(f"invalid slug {slug!r}: {' '.join(exc.messages)}") from None
        if Tenant.objects.filter(slug=slug).exists():
            raise CommandError(f"tenant {slug!r} already exists; nothing changed")
        # one host named twice (`x`, `X.`) is one domain: a second row broke the unique index (a traceback)
        hosts = list(dict.fromkeys(_domain(raw) for raw in domains))
        taken = list(Domain.objects.filter(domain__in=hosts).values_list("domain", flat=True))
        if taken:
            raise CommandError(f"domain already in use: {', '.join(taken)}; nothing changed")
        tenant = Tenant(slug=slug, name=name or slug)
        apply_tenant_options(tenant, options)
        validate_tenant(tenant)
        with transaction.atomic():
            tenant.save()
            for index, host in enumerate(hosts):
                Domain.objects.create(tenant=tenant, domain=host, is_primary=index == 0)
        self.stdout.write(f"created tenant {tenant.slug} (schema {tenant.schema_name})")


def _domain(raw: str) -> str:
    """A ``--domain`` as tenants are matched on it (``service.hosts.normalize``: lower case, no port, no
    trailing dot), or a ``CommandError``: a value that no ``Host`` header can match is a mistake, and one
    longer than the column ended in a database traceback."""
    host = hosts.normalize(raw)
    if not host:
        raise CommandError(
            f"invalid --domain {raw[:80]!r}: a host name such as acme.example.com; nothing changed"
        )
    return host
