"""``update_tenant SLUG [--name NAME] [--allowed-origin ORIGIN ...] [--active | --inactive] [limits, retention]``.

Only the options given change. ``--allowed-origin`` replaces the whole list (``--clear-allowed-origins``
empties it). Every value is checked first: a bad one exits non-zero and changes nothing. ``--inactive`` ends
the tenant's open streams at once (tenants/lifecycle.py); its API keys and tokens are refused meanwhile.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenants import lifecycle
from tenants.management.options import add_tenant_options, apply_tenant_options, validate_tenant
from tenants.models import Tenant


class Command(BaseCommand):
    help = "Change a tenant's name, allowed origins, active flag, limits or retention."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--name")
        add_tenant_options(parser)
        parser.add_argument(
            "--clear-allowed-origins", action="store_true", help="allow no cross-origin page at all"
        )
        state = parser.add_mutually_exclusive_group()
        state.add_argument("--active", dest="active", action="store_true", default=None)
        state.add_argument("--inactive", dest="active", action="store_false")

    def handle(self, *args: Any, slug: str, name: str | None, active: bool | None, **options: Any) -> None:
        if options.get("clear_allowed_origins") and options.get("allowed_origins"):
            raise CommandError(
                "--clear-allowed-origins and --allowed-origin exclude each other; nothing changed"
            )
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"no tenant {slug!r}")
        was_active = tenant.is_active
        changed = apply_tenant_options(tenant, options)
        if name is not None:
            tenant.name = name
            changed.append("name")
        if active is not None:
            tenant.is_active = active
            changed.append("is_active")
        if not changed:
            raise CommandError("nothing to change: give at least one option (see --help)")
        validate_tenant(tenant)
        lifecycle.save_tenant(tenant, was_active=was_active, update_fields=changed)
        self.stdout.write(f"updated tenant {tenant.slug}: {', '.join(changed)}")
