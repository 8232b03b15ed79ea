"""Whole numbers read from headers, queries and paths: ASCII digits only.

Python's ``int()`` also takes ``"+5"``, ``" 5 "``, ``"1_000"`` and digits of other scripts (``"١٢"``), and
``str.isdigit()`` is true for ``"²"`` which ``int()`` then refuses. Protocol numbers (RFC 9110's ``1*DIGIT``,
the SSE ``id``) are ASCII digits, so that is all ``ascii_int`` takes.
"""

from __future__ import annotations

import re

_DIGITS = re.compile(r"[0-9]{1,19}")
INT64_MAX = 2**63 - 1  # bigint, the type of notification ids


def ascii_int(raw: str, maximum: int = INT64_MAX) -> int | None:
    """``raw`` as an integer in ``0..maximum`` when it is 1-19 ASCII digits, else ``None``."""
    if not _DIGITS.fullmatch(raw):
        return None
    value = int(raw)
    return value if value <= maximum else None
