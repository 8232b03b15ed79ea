"""``revoke_api_key PUBLIC_ID`` (or the whole key): effective on every worker within seconds.

An id that begins with ``-`` (only keys made before ids avoided it, ``tenants.keys.generate``) goes after
``--``, as any argparse argument must: ``revoke_api_key -- -AbCdEfGhIjK``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from tenants.keys import public_id_from_argument
from tenants.models import ApiKey


class Command(BaseCommand):
    help = "Revoke an API key by its public id (the 12 characters after bk_) or by the whole key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "key", help="the public id, or the whole key; an id that begins with - goes after --"
        )

    def handle(self, *args: Any, key: str, **options: Any) -> None:
        public_id = public_id_from_argument(key)
        updated = ApiKey.objects.filter(public_id=public_id, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        if updated:
            self.stdout.write(f"revoked {public_id}")
        elif ApiKey.objects.filter(public_id=public_id).exists():
            self.stdout.write(f"{public_id} was already revoked")
        else:
            raise CommandError(f"no API key {public_id!r}")
