"""Allowed origins are serialized origins (WHATWG HTML 7.1.1); anything a browser would never send is refused."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from tenants.origins import check_origin, check_origins

GOOD = [
    "https://app.example.com",
    "http://localhost:8000",
    "http://127.0.0.1:3000",
    "https://xn--bcher-kva.example",
    "http://[::1]:8080",
    "https://a-b.c-d.example:8443",
    "https://[::ffff:102:304]",
    "https://10.0.0.1:8443",
    "https://a.b1",
]

BAD = [
    ("*", "wildcard"),
    ("https://*.example.com", "wildcard"),
    ("https://app.example.com/", "path"),
    ("https://app.example.com/path", "path"),
    ("https://app.example.com?x=1", "query"),
    ("https://app.example.com#f", "fragment"),
    ("HTTPS://App.Example.com", "lower case"),
    ("app.example.com", "scheme://host"),
    ("ftp://example.com", "http or https"),
    ("null", "scheme://host"),
    ("https://example.com:443", "default port"),
    ("http://example.com:80", "default port"),
    ("https://example.com:0", "port"),
    ("https://example.com:65536", "port"),
    ("https://example.com:080", "port"),
    ("https://user@example.com", "user name"),
    ("https://exa mple.com", "spaces"),
    (" https://example.com", "spaces"),
    ("", "empty"),
    ("https://-bad.example", "host name"),
    ("https://bad..example", "host name"),
    ("http://[zz::1]", "IPv6"),
    ("https://example.com:", "scheme://host"),
    # forms a browser never sends, so the stored origin could never match (WHATWG URL host serializers)
    ("https://[::1%eth0]", "zone id"),
    ("https://[0:0::1]", "([::1])"),
    ("https://[::ffff:1.2.3.4]", "([::ffff:102:304])"),
    ("https://256.1.1.1", "dotted-decimal"),
    ("https://0x7f.1", "dotted-decimal"),
    ("https://010.0.0.1", "dotted-decimal"),
    ("https://1", "dotted-decimal"),
    ("https://a.0x", "dotted-decimal"),
    ("https://" + ("a" * 63 + ".") * 4 + "b", "host name"),
]


@pytest.mark.parametrize("origin", GOOD)
def test_serialized_origins_are_accepted(origin: str) -> None:
    assert check_origin(origin) == origin


@pytest.mark.parametrize(("origin", "says"), BAD)
def test_everything_else_is_refused_with_a_reason(origin: str, says: str) -> None:
    with pytest.raises(ValidationError) as info:
        check_origin(origin)
    assert says in " ".join(info.value.messages)


def test_lists_are_checked_whole_and_deduplicated() -> None:
    assert check_origins(["https://a.example", "https://a.example", "https://b.example"]) == [
        "https://a.example",
        "https://b.example",
    ]
    with pytest.raises(ValidationError) as info:
        check_origins(["https://a.example", "https://b.example/", 3])
    assert len(info.value.messages) == 2
    with pytest.raises(ValidationError):
        check_origins("https://a.example")
