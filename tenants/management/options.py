"""Options shared by ``create_tenant`` and ``update_tenant``: allowed origins, limits and retention.

Values are checked with the model's own validators (``Tenant.full_clean``, ``tenants.origins``) before
anything is written, so a bad value exits non-zero with a clear message and changes nothing.
"""

from __future__ import annotations

import argparse
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser

from service.numbers import ascii_int
from tenants.models import Tenant
from tenants.origins import check_origins

#: option dest -> Tenant field, for the limits (positive integers).
LIMITS = {
    "max_connections": "max_connections",
    "max_connections_per_recipient": "max_connections_per_recipient",
    "publish_rate": "publish_rate_per_second",
    "max_payload_bytes": "max_payload_bytes",
}
#: option dest -> Tenant field, for retention (seconds, or ``default`` to clear).
RETENTION = {"default_ttl": "default_ttl_seconds", "max_retention": "max_retention_seconds"}
DEFAULT = "default"


def positive_int(raw: str) -> int:
    """A positive whole number in ASCII digits (``service.numbers``: no ``+5``, ``1_0`` or ``١٢``)."""
    value = ascii_int(raw)
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {raw!r}")
    return value


def seconds_or_default(raw: str) -> int | str:
    return DEFAULT if raw == DEFAULT else positive_int(raw)


def add_tenant_options(parser: CommandParser) -> None:
    """``--allowed-origin`` (repeatable), the four limits, ``--default-ttl`` and ``--max-retention``."""
    parser.add_argument(
        "--allowed-origin",
        action="append",
        dest="allowed_origins",
        metavar="ORIGIN",
        help="a serialized origin scheme://host[:port] allowed by CORS (repeatable)",
    )
    parser.add_argument("--max-connections", type=positive_int, metavar="N", help="open streams per tenant")
    parser.add_argument(
        "--max-connections-per-recipient", type=positive_int, metavar="N", help="open streams per recipient"
    )
    parser.add_argument("--publish-rate", type=positive_int, metavar="N", help="publish requests per second")
    parser.add_argument(
        "--max-payload-bytes", type=positive_int, metavar="N", help="largest encoded data of a notification"
    )
    parser.add_argument(
        "--default-ttl",
        type=seconds_or_default,
        metavar="SECONDS",
        help="ttl of notifications published without one, 60 to 7776000 (`default`: 30 days)",
    )
    parser.add_argument(
        "--max-retention",
        type=seconds_or_default,
        metavar="SECONDS",
        help="longest a notification is kept, 60 to 7776000 (`default`: 90 days)",
    )


def apply_tenant_options(tenant: Tenant, options: dict[str, Any]) -> list[str]:
    """Set the given options on ``tenant`` (unsaved); returns the names of the fields changed."""
    changed: list[str] = []
    origins = options.get("allowed_origins")
    if options.get("clear_allowed_origins"):
        origins = []
    if origins is not None:
        try:
            tenant.allowed_origins = check_origins(list(origins))
        except ValidationError as exc:
            raise CommandError(
                "invalid --allowed-origin: " + "; ".join(exc.messages) + "; nothing changed"
            ) from None
        changed.append("allowed_origins")
    for dest, field in LIMITS.items():
        if options.get(dest) is not None:
            setattr(tenant, field, options[dest])
            changed.append(field)
    for dest, field in RETENTION.items():
        value = options.get(dest)
        if value is not None:
            setattr(tenant, field, None if value == DEFAULT else value)
            changed.append(field)
    return changed


def validate_tenant(tenant: Tenant) -> None:
    """The model's validators and ``clean``, as a ``CommandError`` naming each field."""
    try:
        tenant.full_clean(exclude=["schema_name"])
    except ValidationError as exc:
        problems = [f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items()]
        raise CommandError("; ".join(problems) + "; nothing changed") from None
