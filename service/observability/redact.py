"""Secret shapes Beacon must never write to logs or send to Sentry, and the one function that removes them.

Shared by the log formatters/filters and the Sentry scrubber so both agree on what a secret looks like:
API keys (``bk_`` + 12 + ``_`` + 32 or more URL-safe base64 characters), JWTs (three base64url segments
starting ``eyJ``), ``Bearer`` credentials and the values of ``token``-like query parameters.
"""

from __future__ import annotations

import re

FILTERED = "[Filtered]"

API_KEY = re.compile(r"bk_[A-Za-z0-9_-]{12}_[A-Za-z0-9_-]{32,}")
JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
BEARER = re.compile(r"(?i)\b(bearer)(\s+|%20|\+)[^\s\"',;&\\]+")
# ``token=...`` in query strings and cookie headers; the look-behind keeps ``csrftoken=`` and the like.
SECRET_PARAM = re.compile(
    r"(?i)(?<![A-Za-z0-9_.-])((?:access_|beacon_|refresh_)?token|api_key|apikey)=[^&\s\"'#;\\]*"
)
SECRET_PARAM_NAMES = frozenset(
    {"token", "access_token", "beacon_token", "refresh_token", "api_key", "apikey"}
)


def redact(text: str) -> str:
    """``text`` with every API key, JWT, bearer credential and token query value replaced by ``[Filtered]``."""
    if "bk_" in text:
        text = API_KEY.sub(FILTERED, text)
    if "eyJ" in text:
        text = JWT.sub(FILTERED, text)
    if "=" in text:
        text = SECRET_PARAM.sub(lambda m: f"{m.group(1)}={FILTERED}", text)
    if "earer" in text or "EARER" in text:
        text = BEARER.sub(lambda m: f"{m.group(1)} {FILTERED}", text)
    return text
