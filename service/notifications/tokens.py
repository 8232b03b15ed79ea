"""Subscriber tokens: HS256 JWTs signed with the tenant's subscriber-signing secret.

Claims: ``sub`` (recipient), ``tid`` (tenant slug), ``exp`` (all required); ``topics``, ``iat``, ``jti``
optional. Tenant backends may mint them on their own with the same secret (see ``docs/tokens.md``).
Verification needs no database beyond the cached tenant row.
"""

from __future__ import annotations

import functools
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
from jwt.algorithms import HMACAlgorithm
from jwt.utils import base64url_decode

from service.errors import ApiError
from service.notifications.validation import valid_target_id
from tenants.directory import TenantInfo

MAX_TOKEN_TTL = 86_400
MAX_TOPICS = 100
MAX_TOKEN_LENGTH = 8192
MAX_TIME_CLAIM = (
    253_402_300_799  # 9999-12-31T23:59:59Z: NumericDate claims (RFC 7519 section 2) beyond are refused
)


@dataclass(frozen=True)
class Subscriber:
    """Who a verified token lets read: one recipient of one tenant, plus its topics."""

    tenant: TenantInfo
    recipient: str
    topics: tuple[str, ...]
    exp: int


def mint(tenant: TenantInfo, recipient: str, topics: list[str], ttl: int) -> tuple[str, int]:
    now = int(time.time())
    exp = now + ttl
    claims: dict[str, Any] = {
        "sub": recipient,
        "tid": tenant.slug,
        "iat": now,
        "exp": exp,
        "jti": secrets.token_urlsafe(12),
    }
    if topics:
        claims["topics"] = topics
    return jwt.encode(claims, tenant.signing_secret, algorithm="HS256"), exp


def invalid_token(message: str) -> ApiError:
    return ApiError(
        401, "invalid_token", message, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
    )


@dataclass(frozen=True)
class Decoded:
    """A token split and parsed once, before the signature is checked (``tid`` picks the secret)."""

    signing_input: bytes  # ``header.payload`` as sent: what the signature covers
    signature: bytes
    claims: dict[str, Any]

    @property
    def tenant_slug(self) -> str:
        from tenants.models import SLUG_RE

        slug = self.claims.get("tid")
        if not isinstance(slug, str):
            raise invalid_token("token has no tid claim")
        if not SLUG_RE.match(slug):  # names no tenant; and NUL or a lone surrogate must never reach a query
            raise invalid_token("token names no tenant")
        return slug


_HS256 = HMACAlgorithm(HMACAlgorithm.SHA256)


def _json_object(segment: bytes) -> dict[str, Any]:
    value = json.loads(base64url_decode(segment))
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def decode(token: str) -> Decoded:
    """Split a compact JWS (RFC 7515 section 7.1) and parse its header and claims, once per connect.

    Only ``alg: HS256`` is accepted (RFC 8725 section 3.1: the algorithm is fixed, never read from the
    token). The claims are not trusted until :func:`verify` has checked the signature.
    """
    if len(token) > MAX_TOKEN_LENGTH:
        raise invalid_token("token too long")
    try:
        raw = token.encode("ascii")
        signing_input, _, signature_segment = raw.rpartition(b".")
        header_segment, _, payload_segment = signing_input.partition(b".")
        if not header_segment or b"." in payload_segment or not signing_input:
            raise ValueError("not three segments")
        header = _json_object(header_segment)
        claims = _json_object(payload_segment)
        signature = base64url_decode(signature_segment)
    except Exception:  # bad base64, bad JSON, huge integers, non-ASCII: all the same refusal
        raise invalid_token("token is not a JWT") from None
    if header.get("alg") != "HS256" or "crit" in header or header.get("b64", True) is not True:
        raise invalid_token("token does not verify: the algorithm must be HS256")
    return Decoded(signing_input, signature, claims)


def unverified_tenant_slug(token: str) -> str:
    """The ``tid`` claim before verification: it only picks which secret verifies the token."""
    return decode(token).tenant_slug


def verify(token: str | Decoded, tenant: TenantInfo | None) -> Subscriber:
    """Check the signature with the tenant's secret, then the claims; the token is parsed only once."""
    if tenant is None or not tenant.is_active:
        raise invalid_token("token names an unknown tenant")
    decoded = decode(token) if isinstance(token, str) else token
    if not _HS256.verify(decoded.signing_input, _key(tenant.signing_secret), decoded.signature):
        raise invalid_token("token does not verify: Signature verification failed")
    claims = decoded.claims
    missing = [name for name in ("sub", "tid", "exp") if name not in claims]
    if missing:
        raise invalid_token(f'token does not verify: Token is missing the "{missing[0]}" claim')
    if "aud" in claims:  # as PyJWT: an audience nobody asked for is refused
        raise invalid_token("token does not verify: Invalid audience")
    # Time claims are checked here: JSON allows floats and huge integers there.
    exp = _check_times(claims)
    recipient = claims["sub"]
    topics = claims.get("topics") or []
    if claims["tid"] != tenant.slug or not isinstance(recipient, str) or not valid_target_id(recipient):
        raise invalid_token("token claims are invalid")
    if (
        not isinstance(topics, list)
        or len(topics) > MAX_TOPICS
        or not all(isinstance(t, str) and valid_target_id(t) for t in topics)
    ):
        raise invalid_token("token topics are invalid")
    return Subscriber(tenant=tenant, recipient=recipient, topics=tuple(dict.fromkeys(topics)), exp=exp)


@functools.lru_cache(maxsize=1024)
def _key(secret: str) -> bytes:
    return bytes(_HS256.prepare_key(secret))


def _time_claim(claims: dict[str, Any], name: str) -> int | None:
    """A NumericDate claim as whole seconds in ``0..MAX_TIME_CLAIM``; ``invalid_token`` for anything else
    (floats, booleans, strings, huge integers: the stream does float arithmetic on ``exp``)."""
    if name not in claims:
        return None
    value = claims[name]
    if type(value) is not int or not 0 <= value <= MAX_TIME_CLAIM:
        raise invalid_token(f"the {name} claim must be an integer number of seconds since the epoch")
    return value


def _check_times(claims: dict[str, Any]) -> int:
    """``exp`` (required), ``nbf`` and ``iat`` in range; ``token_expired`` past ``exp``, ``invalid_token``
    before ``nbf``. Returns ``exp``."""
    exp = _time_claim(claims, "exp")
    nbf = _time_claim(claims, "nbf")
    _time_claim(claims, "iat")
    now = time.time()
    if exp is None:
        raise invalid_token("the exp claim is required")
    if exp <= now:
        raise ApiError(401, "token_expired", "token has expired")
    if nbf is not None and nbf > now:
        raise invalid_token("token is not valid yet (nbf)")
    return exp
