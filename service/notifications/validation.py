"""Field rules shared by the request schemas, tokens and the admin form."""

from __future__ import annotations

import functools
import re
import sys

EVENT_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
#: ``event`` as the OpenAPI document states it: ``EVENT_RE`` without the reserved ``beacon.`` prefix.
EVENT_PATTERN = r"^(?!beacon\.)[A-Za-z0-9_.:-]{1,64}$"
MAX_ID_LENGTH = 256
MIN_TTL = 60
MAX_TTL = 90 * 86_400
DEFAULT_TTL = 30 * 86_400
MAX_RECIPIENTS = 1000
MAX_BATCH = 1000
MAX_SINGLE_BODY = 1024 * 1024
MAX_BATCH_BODY = 16 * 1024 * 1024
BATCH_PATH = "/v1/notifications/batch"
#: ``Idempotency-Key``: 1-255 printable ASCII characters (the contract's length; the IETF idempotency-key
#: draft's value is a structured-field string, which is printable ASCII), sent once.
IDEMPOTENCY_KEY_RE = re.compile(r"[\x20-\x7e]{1,255}")


def valid_target_id(value: str) -> bool:
    """Recipient and topic ids: 1-256 printable characters (contract, "Publishing"), as ``str.isprintable``
    reads it: letters, marks, numbers, punctuation, symbols and the space (Unicode categories L, M, N, P, S
    and U+0020), so no control or format character, other separator, surrogate, private-use or unassigned
    code point."""
    return 1 <= len(value) <= MAX_ID_LENGTH and value.isprintable()


@functools.cache
def printable_pattern() -> str:
    """``valid_target_id``'s character rule as a JSON Schema ``pattern``: ``^[...]+$`` listing every range of
    printable code points of this Python's Unicode database (about 700 ranges), so the OpenAPI document allows
    exactly what the server takes. BMP code points are written ``\\uXXXX``; astral ones are written as
    themselves, which Python's ``re`` and ECMA-262 with the ``u`` flag (JSON Schema's dialect) both read as one
    character. Built on first use (0.2 s), not at import."""
    parts: list[str] = []
    start: int | None = None
    for code in range(sys.maxunicode + 2):
        printable = code <= sys.maxunicode and chr(code).isprintable()
        if printable and start is None:
            start = code
        elif not printable and start is not None:
            last = code - 1
            parts.append(_class_char(start) if start == last else f"{_class_char(start)}-{_class_char(last)}")
            start = None
    return f"^[{''.join(parts)}]+$"


def _class_char(code: int) -> str:
    return f"\\u{code:04x}" if code <= 0xFFFF else chr(code)


def body_limit(path: str) -> int:
    """Bytes a request body to ``path`` may have: the batch route takes more than every other path."""
    return MAX_BATCH_BODY if path == BATCH_PATH else MAX_SINGLE_BODY


def event_problem(value: str) -> str | None:
    if not EVENT_RE.fullmatch(value):  # not match: "$" also matches before a final newline
        return "must match ^[A-Za-z0-9_.:-]{1,64}$"
    if value.startswith("beacon."):
        return "names starting with beacon. are reserved"
    return None


def idempotency_key_problem(raw: str) -> str | None:
    """Why ``raw`` (the header's value as received, Latin-1) is not an ``Idempotency-Key``, or ``None``."""
    if not IDEMPOTENCY_KEY_RE.fullmatch(raw):
        return "must be 1-255 printable ASCII characters"
    return None
