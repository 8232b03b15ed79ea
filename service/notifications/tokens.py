"""Subscriber tokens: HS256 JWTs signed with the tenant's subscriber-signing secret.

Claims: ``sub`` (recipient), ``tid`` (tenant slug), ``exp`` (all required); ``topics``, ``iat``, ``jti``
optional. Tenant backends may mint them on their own with the same secret (see ``docs/tokens.md``).
Verification needs no database beyond the cached tenant row.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt

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


def unverified_tenant_slug(token: str) -> str:
    """The ``tid`` claim before verification: it only picks which secret verifies the token."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise invalid_token("token too long")
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except Exception:  # PyJWTError, and anything a hostile header or payload makes the decoder raise
        raise invalid_token("token is not a JWT") from None
    slug = claims.get("tid")
    if not isinstance(slug, str):
        raise invalid_token("token has no tid claim")
    return slug


def verify(token: str, tenant: TenantInfo | None) -> Subscriber:
    if tenant is None or not tenant.is_active:
        raise invalid_token("token names an unknown tenant")
    try:
        # Time claims are checked below, after the signature: PyJWT accepts floats and huge integers there.
        claims = jwt.decode(
            token,
            tenant.signing_secret,
            algorithms=["HS256"],
            options={
                "require": ["sub", "tid", "exp"],
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.PyJWTError as exc:
        raise invalid_token(f"token does not verify: {exc}") from None
    except Exception:  # a payload the decoder cannot handle (e.g. an integer of 5000 digits)
        raise invalid_token("token does not verify") from None
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
