"""``rotate_signing_secret SLUG``: a new subscriber-signing secret, alone on the last line of stdout.

Tokens signed with the old secret stop working at once and the tenant's open streams end within seconds
(contract: operator commands); clients reconnect with a new token. A tenant backend that signs its own
tokens needs the new secret: hand it over from this output (the admin never shows it).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenants import lifecycle
from tenants.models import Tenant


class Command(BaseCommand):
    help = "Rotate a tenant's subscriber-signing secret; old tokens stop working and open streams end."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")

    def handle(self, *args: Any, slug: str, **options: Any) -> None:
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"no tenant {slug!r}")
        lifecycle.rotate_signing_secret(tenant)
        self.stdout.write(
            f"rotated the signing secret of {tenant.slug}; its open streams end now. New secret:"
        )
        self.stdout.write(tenant.signing_secret)
