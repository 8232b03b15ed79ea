"""Subscriber tokens are parsed once per connect (``tokens.decode``) and verified against that one parse.

In-process: the same verdicts as PyJWT's for the tokens Beacon and tenant backends mint, and the refusals
PyJWT gave (wrong secret, other algorithms, audiences nobody asked for, malformed tokens).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import string
import time
from collections.abc import Callable

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

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


# --- One spelling only (RFC 7515 sections 2 and 7.1, RFC 7519 section 7.2) -----------------------------------
# Python's base64 decoders take padding, the standard alphabet and stray bytes, and json.loads takes UTF-16,
# UTF-32 and a BOM: each of these spelled a token that verified. Fixed claims, so the ids stay stable.
FAR = 4_000_000_000  # 2096: in range, never expired


def _seg(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _sign(header: str, payload: str) -> str:
    mac = hmac.new(TENANT.signing_secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return _seg(mac)


def _token(claims: bytes, header: bytes = b'{"alg":"HS256","typ":"JWT"}') -> str:
    h, p = _seg(header), _seg(claims)
    return f"{h}.{p}.{_sign(h, p)}"


def _claims_json(sub: str = "u1", **extra: object) -> bytes:
    return json.dumps({"sub": sub, "tid": "acme", "exp": FAR, **extra}).encode()


def _respelled(change: Callable[[list[str]], list[str] | None], *, resign: bool = True) -> str:
    """A valid token with ``change`` applied to its segments (signed again over the changed ones when
    ``resign``): the first two-character recipient whose segments ``change`` applies to."""
    for i in range(94 * 94):
        sub = chr(0x21 + i % 94) + chr(0x21 + i // 94)
        token = _token(_claims_json(sub))
        assert tokens.verify(token, TENANT).recipient == sub
        parts = token.split(".")
        changed = change(list(parts))
        if changed is None:
            continue
        if resign:
            changed[2] = _sign(changed[0], changed[1])
        return ".".join(changed)
    raise AssertionError("no token to respell")


def _pad(index: int) -> Callable[[list[str]], list[str] | None]:
    def change(parts: list[str]) -> list[str] | None:
        if len(parts[index]) % 4 == 0:
            return None
        parts[index] += "=" * (-len(parts[index]) % 4)
        return parts

    return change


def _standard(index: int, url_char: str, std_char: str) -> Callable[[list[str]], list[str] | None]:
    def change(parts: list[str]) -> list[str] | None:
        if url_char not in parts[index]:
            return None
        parts[index] = parts[index].replace(url_char, std_char)
        return parts

    return change


def _noncanonical(parts: list[str]) -> list[str] | None:
    """The signature's last character with an unused low bit set: the same bytes, another spelling."""
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    last = alphabet.index(parts[2][-1])
    parts[2] = parts[2][:-1] + alphabet[last ^ 1]  # 43 characters carry 32 bytes: 2 bits unused
    return parts


def _inserted(text: str) -> Callable[[list[str]], list[str] | None]:
    def change(parts: list[str]) -> list[str] | None:
        parts[2] = parts[2][:10] + text + parts[2][10:]
        return parts

    return change


def _padded_header() -> str:
    header = _seg(b'{"alg":"HS256","x":"a"}')  # 23 bytes: 31 characters, one "=" of padding
    assert tokens.verify(_token(_claims_json(), b'{"alg":"HS256","x":"a"}'), TENANT)
    padded = header + "="
    payload = _seg(_claims_json())
    return f"{padded}.{payload}.{_sign(padded, payload)}"


BOM = b"\xef\xbb\xbf"
SPELLINGS: dict[str, Callable[[], str]] = {
    "padding on the claims": lambda: _respelled(_pad(1)),
    "padding on the header": lambda: _padded_header(),
    "padding on the signature": lambda: _respelled(_pad(2), resign=False),
    "standard alphabet + in the claims": lambda: _respelled(_standard(1, "-", "+")),
    "standard alphabet / in the claims": lambda: _respelled(_standard(1, "_", "/")),
    "standard alphabet in the signature": lambda: (
        _respelled(_standard(2, "-", "+"), resign=False)
        if "-" in _token(_claims_json()).split(".")[2]
        else _respelled(_standard(2, "_", "/"), resign=False)
    ),
    "unused bits set in the signature": lambda: _respelled(_noncanonical, resign=False),
    "newline inside the signature": lambda: _respelled(_inserted("\n"), resign=False),
    "space inside the signature": lambda: _respelled(_inserted(" "), resign=False),
    "dot-separated fourth segment": lambda: _token(_claims_json()) + ".x",
    "trailing newline": lambda: _token(_claims_json()) + "\n",
    "claims with a UTF-8 BOM": lambda: _token(BOM + _claims_json()),
    "claims in UTF-16": lambda: _token(_claims_json().decode().encode("utf-16")),
    "claims in UTF-16-LE without BOM": lambda: _token(_claims_json().decode().encode("utf-16-le")),
    "claims in UTF-32": lambda: _token(_claims_json().decode().encode("utf-32")),
    "header with a UTF-8 BOM": lambda: _token(_claims_json(), BOM + b'{"alg":"HS256"}'),
    "claims in Latin-1": lambda: _token(
        json.dumps({"sub": "ü", "tid": "acme", "exp": FAR}, ensure_ascii=False).encode("latin-1")
    ),
    "a claim twice": lambda: _token(b'{"sub":"u1","sub":"u2","tid":"acme","exp":%d}' % FAR),
    "NaN in the claims": lambda: _token(b'{"sub":"u1","tid":"acme","exp":%d,"x":NaN}' % FAR),
    "topics false": lambda: _token(_claims_json(topics=False)),
    "topics null": lambda: _token(_claims_json(topics=None)),
    "topics empty string": lambda: _token(_claims_json(topics="")),
    "topics a string": lambda: _token(_claims_json(topics="news")),
    "topics an object": lambda: _token(_claims_json(topics={"news": True})),
    "topics with a number": lambda: _token(_claims_json(topics=["news", 5])),
    "topics with null": lambda: _token(_claims_json(topics=[None])),
    "sub a list": lambda: _token(json.dumps({"sub": ["u1"], "tid": "acme", "exp": FAR}).encode()),
    "tid a list": lambda: _token(json.dumps({"sub": "u1", "tid": ["acme"], "exp": FAR}).encode()),
    "exp a string": lambda: _token(json.dumps({"sub": "u1", "tid": "acme", "exp": str(FAR)}).encode()),
    "exp true": lambda: _token(json.dumps({"sub": "u1", "tid": "acme", "exp": True}).encode()),
    "iat a float": lambda: _token(_claims_json(iat=1.5)),
    "jti a number": lambda: _token(_claims_json(jti=5)),
    "iss a list": lambda: _token(_claims_json(iss=["x"])),
    "typ a number": lambda: _token(_claims_json(), b'{"alg":"HS256","typ":5}'),
    "kid an object": lambda: _token(_claims_json(), b'{"alg":"HS256","kid":{}}'),
}


def test_the_canonical_spelling_verifies() -> None:
    assert tokens.verify(_token(_claims_json(topics=["news"], jti="j", iss="me")), TENANT).topics == ("news",)
    assert tokens.verify(_token(_claims_json(topics=[])), TENANT).topics == ()


@pytest.mark.parametrize("name", list(SPELLINGS))
def test_other_spellings_and_claim_types_are_invalid_token(name: str) -> None:
    token = SPELLINGS[name]()
    with pytest.raises(ApiError) as caught:
        tokens.verify(token, TENANT)
    assert caught.value.status == 401 and caught.value.code == "invalid_token", caught.value.message
    assert "WWW-Authenticate" in caught.value.headers


@given(st.text(max_size=200))
def test_any_text_is_a_verdict_never_an_exception(text: str) -> None:
    """Whatever a client sends as a token, the answer is a subscriber or ``invalid_token``."""
    try:
        tokens.verify(text, TENANT)
    except ApiError as error:
        assert error.code in {"invalid_token", "token_expired"}


_B64URL = st.text(alphabet=string.ascii_letters + string.digits + "-_", max_size=60)


@given(
    st.one_of(
        st.tuples(_B64URL, _B64URL, _B64URL).map(".".join),
        st.tuples(st.binary(max_size=60), st.binary(max_size=200)).map(
            lambda parts: f"{_seg(parts[0])}.{_seg(parts[1])}.{_seg(b'x' * 32)}"
        ),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=5), st.lists, max_leaves=20
        ).map(
            lambda value: _token(
                json.dumps({"sub": value, "tid": "acme", "exp": FAR, "topics": value}).encode()
            )
        ),
    )
)
def test_any_compact_token_is_a_verdict_never_an_exception(token: str) -> None:
    """Segments in the alphabet, any bytes in them, any JSON in the claims: a subscriber or a 401."""
    try:
        tokens.verify(token, TENANT)
    except ApiError as error:
        assert error.code in {"invalid_token", "token_expired"}
