"""Subscriber tokens: HS256 JWTs signed with the tenant's subscriber-signing secret.

Claims: ``sub`` (recipient), ``tid`` (tenant slug), ``exp`` (all required); ``topics``, ``iat``, ``jti``
optional. Tenant backends may mint them on their own with the same secret (see ``docs/tokens.md``).
Verification needs no database beyond the cached tenant row.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
from jwt.algorithms import HMACAlgorithm

from service import jsonbody
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
        # names no tenant; and NUL, a lone surrogate or a final newline must never reach a query
        if not SLUG_RE.fullmatch(slug):
            raise invalid_token("token names no tenant")
        return slug


_HS256 = HMACAlgorithm(HMACAlgorithm.SHA256)
#: The compact serialization (RFC 7515 sections 2 and 7.1): three base64url segments without padding, in
#: the base64url alphabet only. Python's decoders take ``=``, ``+``, ``/`` and skip other bytes, so a token
#: had several spellings; only this one is accepted (checked before anything is decoded).
_COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def compact_form_problem(token: str) -> str | None:
    """Why ``token`` is not a JWS compact serialization spelled as RFC 7515 says, else ``None``.

    Every route that takes a subscriber token (stream, inbox, ``beacon_token`` cookie) reaches this through
    :func:`decode`: one rule for every way of sending a token.
    """
    if len(token) > MAX_TOKEN_LENGTH:
        return "token too long"
    if not _COMPACT.fullmatch(token):
        return "token is not a JWT (three base64url segments, no padding)"
    return None


def _base64url(segment: str) -> bytes:
    """A base64url segment (already matched by ``_COMPACT``) as bytes; only the canonical spelling: a
    length of 1 modulo 4, or unused low bits that are not zero (RFC 4648 section 3.5), is refused."""
    value = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    if base64.urlsafe_b64encode(value).rstrip(b"=") != segment.encode("ascii"):
        raise ValueError("not the canonical base64url spelling")
    return value


# Claims as request bodies are read (``service.jsonbody``): unique member names, no NaN, and no number beyond
# a 64-bit float, in any claim (``1e400`` was read as ``inf`` and accepted, ``1`` and 6,000 zeros refused by
# Python's int limit); its errors are ValueErrors, which ``decode`` answers with 401. One decoder for every
# call (json.loads made one per call).
_JSON = json.JSONDecoder(
    object_pairs_hook=jsonbody.unique_members,
    parse_constant=jsonbody.no_constant,
    parse_int=jsonbody.finite_int,
    parse_float=jsonbody.finite_float,
)


def _json_object(segment: str) -> dict[str, Any]:
    """A header or claims segment: UTF-8 JSON text (no BOM, not UTF-16 or -32: RFC 7519 section 7.2 and
    RFC 8259 section 8.1; ``json.loads`` of bytes would take all three), one object, unique member names."""
    text = _base64url(segment).decode("utf-8")  # a BOM survives as U+FEFF, which the decoder refuses
    value = _JSON.decode(text)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


@functools.lru_cache(maxsize=64)
def _header(segment: str) -> dict[str, Any]:
    """A header segment, parsed once: every token one tenant's backend mints has the same header (the
    parsed dict is only read). Refusals are not cached: they raise each time."""
    return _json_object(segment)


def decode(token: str) -> Decoded:
    """Split a compact JWS (RFC 7515 section 7.1) and parse its header and claims, once per connect.

    Only ``alg: HS256`` is accepted (RFC 8725 section 3.1: the algorithm is fixed, never read from the
    token). The claims are not trusted until :func:`verify` has checked the signature.
    """
    if (problem := compact_form_problem(token)) is not None:
        raise invalid_token(problem)
    header_segment, payload_segment, signature_segment = token.split(".")
    try:
        header = _header(header_segment)
        claims = _json_object(payload_segment)
        signature = _base64url(signature_segment)
    except (ValueError, binascii.Error, RecursionError):  # bad base64, bad JSON, huge integers, not UTF-8
        raise invalid_token("token is not a JWT") from None
    if header.get("alg") != "HS256" or "crit" in header or header.get("b64", True) is not True:
        raise invalid_token("token does not verify: the algorithm must be HS256")
    if not isinstance(header.get("typ", ""), str) or not isinstance(header.get("kid", ""), str):
        raise invalid_token("token header is invalid: typ and kid must be strings")
    signing_input = f"{header_segment}.{payload_segment}".encode("ascii")
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
    topics = claims.get("topics", [])  # present means a list: ``false``, ``null`` or ``""`` are refused
    if claims["tid"] != tenant.slug or not isinstance(recipient, str) or not valid_target_id(recipient):
        raise invalid_token("token claims are invalid")
    if (
        type(topics) is not list
        or len(topics) > MAX_TOPICS
        or not all(isinstance(t, str) and valid_target_id(t) for t in topics)
    ):
        raise invalid_token("token topics are invalid: a list of up to 100 topic ids")
    for name in _STRING_CLAIMS:
        if name in claims and not isinstance(claims[name], str):
            raise invalid_token(f"the {name} claim must be a string")
    return Subscriber(tenant=tenant, recipient=recipient, topics=tuple(dict.fromkeys(topics)), exp=exp)


#: Registered claims Beacon does not read, but whose type RFC 7519 section 4.1 fixes: checked all the same.
_STRING_CLAIMS = ("iss", "jti")


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
