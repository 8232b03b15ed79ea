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
    except jwt.PyJWTError:
        raise invalid_token("token is not a JWT") from None
    slug = claims.get("tid")
    if not isinstance(slug, str):
        raise invalid_token("token has no tid claim")
    return slug


def verify(token: str, tenant: TenantInfo | None) -> Subscriber:
    if tenant is None or not tenant.is_active:
        raise invalid_token("token names an unknown tenant")
    try:
        claims = jwt.decode(
            token,
            tenant.signing_secret,
            algorithms=["HS256"],
            options={"require": ["sub", "tid", "exp"]},
            leeway=0,
        )
    except jwt.ExpiredSignatureError:
        raise ApiError(401, "token_expired", "token has expired") from None
    except jwt.PyJWTError as exc:
        raise invalid_token(f"token does not verify: {exc}") from None
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
    return Subscriber(
        tenant=tenant, recipient=recipient, topics=tuple(dict.fromkeys(topics)), exp=int(claims["exp"])
    )
