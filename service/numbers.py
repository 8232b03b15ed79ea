"""Numbers read from text outside the program (headers, queries, paths, the environment): ASCII digits only.

Python's ``int()`` also takes ``"+5"``, ``" 5 "``, ``"1_000"`` and digits of other scripts (``"١٢"``), and
``str.isdigit()`` is true for ``"²"`` which ``int()`` then refuses; ``float()`` further takes ``"inf"``,
``"nan"``, ``"1e3"`` and the same underscores and scripts. Protocol numbers (RFC 9110's ``1*DIGIT``, the SSE
``id``) and settings are written in ASCII digits, so that is all these readers take.
"""

from __future__ import annotations

import re

_DIGITS = re.compile(r"[0-9]{1,19}")
_DECIMAL = re.compile(r"(?:[0-9]{1,19}(?:\.[0-9]{0,19})?|\.[0-9]{1,19})")
INT64_MAX = 2**63 - 1  # bigint, the type of notification ids


def ascii_int(raw: str, maximum: int = INT64_MAX) -> int | None:
    """``raw`` as an integer in ``0..maximum`` when it is 1-19 ASCII digits, else ``None``."""
    if not _DIGITS.fullmatch(raw):
        return None
    value = int(raw)
    return value if value <= maximum else None


def ascii_int_pattern() -> str:
    """What ``ascii_int(raw)`` accepts, as a JSON Schema ``pattern`` (the OpenAPI document's ``before``): 1-18
    ASCII digits, or 19 whose value is at most ``INT64_MAX``, digit by digit: a common prefix, then a smaller
    digit, then any digits. (``INT64_MAX`` has 19 digits, so leading zeros need no case of their own.)"""
    top = str(INT64_MAX)
    choices = [f"[0-9]{{1,{len(top) - 1}}}"]
    for index, digit in enumerate(top):
        if digit != "0":
            smaller = "0" if digit == "1" else f"[0-{int(digit) - 1}]"
            rest = len(top) - index - 1
            choices.append(top[:index] + smaller + (f"[0-9]{{{rest}}}" if rest else ""))
    choices.append(top)
    return f"^(?:{'|'.join(choices)})$"


def ascii_decimal(raw: str) -> float | None:
    """``raw`` as a non-negative float when it is ASCII digits with an optional ``.`` fraction (``"2"``,
    ``"0.5"``, ``".5"``, ``"5."``), else ``None``: no sign, exponent, underscore, ``inf`` or ``nan``."""
    if not _DECIMAL.fullmatch(raw):
        return None
    return float(raw)
