"""Subscriber tokens are parsed once per connect (``tokens.decode``) and verified against that one parse.

In-process: the same verdicts as PyJWT's for the tokens Beacon and tenant backends mint, and the refusals
PyJWT gave (wrong secret, other algorithms, audiences nobody asked for, malformed tokens).
"""

from __future__ import annotations

import time

import jwt
import pytest

from service.errors import ApiError
from service.notifications import tokens
from tenants.directory import TenantInfo

TENANT = TenantInfo(
    id=1,
    slug="acme",
    schema="acme",
    is_active=True,
    signing_secret="s" * 40,
    allowed_origins=(),
    max_connections=10,
    max_connections_per_recipient=10,
    publish_rate_per_second=10,
    max_payload_bytes=1024,
)


def _claims(**extra: object) -> dict[str, object]:
    return {"sub": "u1", "tid": "acme", "exp": int(time.time()) + 30 * 86_400, **extra}  # built at collection


def test_minted_and_pyjwt_tokens_verify_with_one_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    parses: list[bytes] = []
    original = tokens._json_object
    monkeypatch.setattr(tokens, "_json_object", lambda segment: parses.append(segment) or original(segment))
    minted, _ = tokens.mint(TENANT, "u1", ["news", "news", "a"], 600)
    decoded = tokens.decode(minted)
    subscriber = tokens.verify(decoded, TENANT if decoded.tenant_slug == "acme" else None)
    assert subscriber.recipient == "u1" and subscriber.topics == ("news", "a")
    assert len(parses) == 2  # header and claims, once each: no second decode to verify
    own = jwt.encode(_claims(), TENANT.signing_secret, algorithm="HS256")
    assert tokens.verify(own, TENANT).recipient == "u1"


@pytest.mark.parametrize(
    "token",
    [
        jwt.encode(_claims(), "other-secret-of-some-length-32b!", algorithm="HS256"),
        jwt.encode(_claims(), TENANT.signing_secret, algorithm="HS512"),
        jwt.encode(_claims(), None, algorithm="none"),  # type: ignore[arg-type]
        jwt.encode(_claims(aud="x"), TENANT.signing_secret, algorithm="HS256"),
        jwt.encode({"sub": "u1", "tid": "acme"}, TENANT.signing_secret, algorithm="HS256"),
        jwt.encode(_claims(tid="globex"), TENANT.signing_secret, algorithm="HS256"),
        jwt.encode(_claims(sub=5), TENANT.signing_secret, algorithm="HS256"),
        "not.a.jwt",
        "a.b",
        "é.é.é",
        "",
        "x" * 9000,
    ],
    # Fixed ids: the tokens carry a time-based exp, and pytest-xdist needs the same ids in every worker.
    ids=[
        "other-secret",
        "hs512",
        "alg-none",
        "audience",
        "no-exp",
        "other-tenant",
        "sub-not-a-string",
        "not-a-jwt",
        "two-parts",
        "non-ascii",
        "empty",
        "oversized",
    ],
)
def test_refusals_are_invalid_token(token: str) -> None:
    with pytest.raises(ApiError) as caught:
        tokens.verify(token, TENANT)
    assert caught.value.status == 401 and caught.value.code == "invalid_token"


def test_tampered_claims_do_not_verify() -> None:
    good = jwt.encode(_claims(), TENANT.signing_secret, algorithm="HS256")
    header, _, signature = good.split(".")
    other = jwt.encode(_claims(sub="admin"), TENANT.signing_secret, algorithm="HS256").split(".")[1]
    with pytest.raises(ApiError):
        tokens.verify(f"{header}.{other}.{signature}", TENANT)


def test_expired_token_is_token_expired() -> None:
    old = jwt.encode(_claims(exp=int(time.time()) - 5), TENANT.signing_secret, algorithm="HS256")
    with pytest.raises(ApiError) as caught:
        tokens.verify(old, TENANT)
    assert caught.value.code == "token_expired"
