"""API keys: ``bk_<12-char public id>_<secret>``; only a SHA-256 of the secret is ever stored.

Both parts are URL-safe base64, which may itself contain ``_``: the key is parsed by position, never by
splitting on the separator.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

PREFIX = "bk_"
PUBLIC_ID_LENGTH = 12
MIN_SECRET_LENGTH = 32
_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@dataclass(frozen=True)
class ParsedKey:
    public_id: str
    secret: str


def generate() -> tuple[str, str, str]:
    """A new key: ``(full key, public id, secret hash)``. The full key is shown once, never stored.

    The public id never begins with ``-``: operators pass it alone to commands (``revoke_api_key ID``), where
    argparse would take it for an option (one id in 64 did). Ids of older keys that do go after ``--``."""
    public_id = secrets.token_urlsafe(9)  # 9 bytes -> exactly 12 characters
    while public_id.startswith("-"):  # drawn again, not patched: ids stay uniform over the rest
        public_id = secrets.token_urlsafe(9)
    secret = secrets.token_urlsafe(32)  # 32 bytes -> 43 characters
    return f"{PREFIX}{public_id}_{secret}", public_id, hash_secret(secret)


def hash_secret(secret: str) -> str:
    # The secret has 256 bits of entropy, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def parse(key: str) -> ParsedKey | None:
    """Split a presented key by position; ``None`` when it is not shaped like a Beacon key."""
    if not key.startswith(PREFIX):
        return None
    body = key[len(PREFIX) :]
    public_id, sep, secret = (
        body[:PUBLIC_ID_LENGTH],
        body[PUBLIC_ID_LENGTH : PUBLIC_ID_LENGTH + 1],
        body[PUBLIC_ID_LENGTH + 1 :],
    )
    if (
        sep != "_"
        or len(public_id) != PUBLIC_ID_LENGTH
        or len(secret) < MIN_SECRET_LENGTH
        or len(secret) > 512
    ):
        return None
    if not (set(public_id) <= _ALPHABET and set(secret) <= _ALPHABET):
        return None
    return ParsedKey(public_id, secret)


def public_id_from_argument(value: str) -> str:
    """``revoke_api_key`` takes the public id or the whole key."""
    parsed = parse(value)
    return parsed.public_id if parsed else value
