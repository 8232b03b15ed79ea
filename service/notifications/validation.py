"""Field rules shared by the request schemas, tokens and the admin form."""

from __future__ import annotations

import re

EVENT_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MIN_TTL = 60
MAX_TTL = 90 * 86_400
DEFAULT_TTL = 30 * 86_400
MAX_RECIPIENTS = 1000
MAX_BATCH = 1000
MAX_SINGLE_BODY = 1024 * 1024
MAX_BATCH_BODY = 16 * 1024 * 1024


def valid_target_id(value: str) -> bool:
    """Recipient and topic ids: 1-256 printable characters (no control characters)."""
    return 1 <= len(value) <= 256 and value.isprintable()


def event_problem(value: str) -> str | None:
    if not EVENT_RE.match(value):
        return "must match ^[A-Za-z0-9_.:-]{1,64}$"
    if value.startswith("beacon."):
        return "names starting with beacon. are reserved"
    return None
