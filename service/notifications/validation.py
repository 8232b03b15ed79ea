"""Field rules shared by the request schemas, tokens and the admin form."""

from __future__ import annotations

import re

EVENT_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MAX_ID_LENGTH = 256
# Printable: no C0/C1 control characters, separators other than the space, or surrogates. The OpenAPI
# document carries this pattern; ``valid_target_id`` (``str.isprintable``) is the full rule.
TARGET_PATTERN = r"^[^\u0000-\u001f\u007f-\u009f\u2028\u2029]+$"
MIN_TTL = 60
MAX_TTL = 90 * 86_400
DEFAULT_TTL = 30 * 86_400
MAX_RECIPIENTS = 1000
MAX_BATCH = 1000
MAX_SINGLE_BODY = 1024 * 1024
MAX_BATCH_BODY = 16 * 1024 * 1024
#: ``Idempotency-Key``: 1-255 printable ASCII characters (the contract's length; the IETF idempotency-key
#: draft's value is a structured-field string, which is printable ASCII), sent once.
IDEMPOTENCY_KEY_RE = re.compile(r"[\x20-\x7e]{1,255}")


def valid_target_id(value: str) -> bool:
    """Recipient and topic ids: 1-256 printable characters (no control characters)."""
    return 1 <= len(value) <= 256 and value.isprintable()


def event_problem(value: str) -> str | None:
    if not EVENT_RE.match(value):
        return "must match ^[A-Za-z0-9_.:-]{1,64}$"
    if value.startswith("beacon."):
        return "names starting with beacon. are reserved"
    return None


def idempotency_key_problem(raw: str) -> str | None:
    """Why ``raw`` (the header's value as received, Latin-1) is not an ``Idempotency-Key``, or ``None``."""
    if not IDEMPOTENCY_KEY_RE.fullmatch(raw):
        return "must be 1-255 printable ASCII characters"
    return None
