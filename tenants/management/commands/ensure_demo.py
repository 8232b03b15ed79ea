"""``ensure_demo``: the ``demo`` tenant and a working demo API key, kept in ``.data/demo_api_key``.

Idempotent, for ``make run``: the key file is reused while its key is still valid, else a new key is made.
The key is printed alone on the last line of stdout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from tenants import keys
from tenants.models import ApiKey, Domain, Tenant


def demo_origins(port: int) -> list[str]:
    """The demo page's own origins on ``port`` (``make run`` honours ``PORT``)."""
    return [f"http://localhost:{port}", f"http://127.0.0.1:{port}"]


class Command(BaseCommand):
    help = "Create the demo tenant and API key when missing; print the key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--key-file", default=str(Path(settings.BASE_DIR) / ".data" / "demo_api_key"))
        parser.add_argument("--port", type=int, default=8000, help="the port the demo page is served on")

    def handle(self, *args: Any, key_file: str, port: int, **options: Any) -> None:
        origins = demo_origins(port)
        tenant = Tenant.objects.filter(slug="demo").first()
        if tenant is not None and not set(origins) <= set(tenant.allowed_origins):
            tenant.allowed_origins = list(dict.fromkeys([*tenant.allowed_origins, *origins]))
            tenant.save(update_fields=["allowed_origins"])
        if tenant is None:
            tenant = Tenant.objects.create(slug="demo", name="Demo", allowed_origins=origins)
            Domain.objects.get_or_create(
                domain="demo.localhost", defaults={"tenant": tenant, "is_primary": True}
            )
            self.stdout.write("created tenant demo")
        path = Path(key_file)
        existing = path.read_text().strip() if path.exists() else ""
        parsed = keys.parse(existing)
        if parsed is not None:
            key = ApiKey.objects.filter(public_id=parsed.public_id, tenant=tenant).first()
            if (
                key is not None
                and key.is_usable(timezone.now())
                and keys.secret_matches(parsed.secret, key.secret_hash)
            ):
                self.stdout.write(existing)
                return
        _, full = ApiKey.issue(tenant, name="demo")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(full + "\n")
        path.chmod(0o600)
        self.stdout.write(full)
