"""Allowed origins of a tenant: serialized origins (``scheme://host[:port]``), as browsers send in ``Origin``.

The rule is the HTML standard's "ASCII serialization of an origin" (WHATWG HTML, section 7.1.1): a scheme,
``://``, a host and an optional port, nothing else. A browser never sends a path, a trailing slash, a default
port (``:443`` for https) or upper case, so a stored origin with any of them would never match: it is refused.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from django.core.exceptions import ValidationError

_SCHEMES = {"http": 80, "https": 443}
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_SHAPE = re.compile(
    r"^(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<host>\[[^\]/]*\]|[^:/?#\[\]@]+)(?::(?P<port>[0-9]{1,5}))?$"
)
_NUMERIC = re.compile(r"^(?:[0-9]+|0x[0-9a-f]*)$")
MAX_ORIGINS = 100


def check_origin(value: Any) -> str:
    """Return ``value`` if it is a serialized http(s) origin, else raise ``ValidationError`` saying why.

    Refused: anything but a string, ``*``, a path or trailing slash, a query, a fragment, user info, upper case,
    a scheme other than http/https, a default port (``:80`` on http, ``:443`` on https), a port above 65535,
    and a host that is neither a DNS name nor an IP literal.
    """
    if not isinstance(value, str):
        raise ValidationError(f"an origin must be a string, not {type(value).__name__}")
    shown = value if len(value) <= 80 else value[:77] + "..."
    if "*" in value:
        raise ValidationError(f"{shown!r}: wildcards are not allowed; list each origin")
    if not value or any(ch.isspace() for ch in value):
        raise ValidationError(f"{shown!r}: an origin has no spaces and is not empty")
    if value != value.lower():
        raise ValidationError(
            f"{shown!r}: write the origin in lower case, as browsers send it ({value.lower()!r})"
        )
    scheme, sep, rest = value.partition("://")
    if not sep:
        raise ValidationError(f"{shown!r}: an origin is scheme://host[:port], e.g. 'https://app.example.com'")
    if scheme not in _SCHEMES:
        raise ValidationError(f"{shown!r}: the scheme must be http or https")
    if any(ch in rest for ch in "/?#"):
        raise ValidationError(
            f"{shown!r}: an origin has no path, no trailing slash, no query and no fragment"
        )
    if "@" in rest:
        raise ValidationError(f"{shown!r}: an origin has no user name or password")
    match = _SHAPE.fullmatch(value)  # not match: "$" also matches before a final newline
    if match is None:
        raise ValidationError(f"{shown!r}: an origin is scheme://host[:port], e.g. 'https://app.example.com'")
    host, port = match["host"], match["port"]
    if port is not None:
        number = int(port)
        if port != str(number) or not 0 < number <= 65535:
            raise ValidationError(
                f"{shown!r}: the port must be a number from 1 to 65535 without leading zeros"
            )
        if number == _SCHEMES[scheme]:
            raise ValidationError(f"{shown!r}: drop the default port; browsers send {scheme}://{host}")
    if host.startswith("["):
        try:
            address = ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValidationError(f"{shown!r}: {host} is not an IPv6 address") from None
        if address.scope_id is not None:
            raise ValidationError(f"{shown!r}: a browser never sends a zone id (%...) in an origin")
        if host[1:-1] != address.compressed:
            # browsers serialize IPv6 compressed (WHATWG URL "IPv6 serializer"): [0:0::1] arrives as [::1]
            raise ValidationError(
                f"{shown!r}: write the address as browsers send it ([{address.compressed}])"
            )
    elif len(host) > 253 or not all(_LABEL.fullmatch(label) for label in host.split(".")):
        raise ValidationError(f"{shown!r}: {host!r} is not a valid host name")
    elif _NUMERIC.fullmatch(host.rsplit(".", 1)[-1]):
        # a host ending in a number is an IPv4 address to a browser (WHATWG URL "ends in a number"):
        # 0x7f.1 arrives as 127.0.0.1, 256.1.1.1 is no URL at all; only the dotted-decimal form can match
        try:
            canonical = str(ipaddress.IPv4Address(host))
        except ValueError:
            canonical = None
        if canonical != host:
            raise ValidationError(f"{shown!r}: {host!r} is not an IPv4 address in dotted-decimal form")
    return value


def check_origins(values: Any) -> list[str]:
    """Validate a list of origins (``Tenant.allowed_origins``); duplicates are dropped, order is kept."""
    if not isinstance(values, list | tuple):
        raise ValidationError('allowed origins must be a list, e.g. ["https://app.example.com"]')
    if len(values) > MAX_ORIGINS:
        raise ValidationError(f"at most {MAX_ORIGINS} allowed origins")
    errors: list[str] = []
    for value in values:
        try:
            check_origin(value)
        except ValidationError as exc:
            errors.extend(exc.messages)
    if errors:
        raise ValidationError(errors)
    return list(dict.fromkeys(values))


def validate_allowed_origins(values: Any) -> None:
    """Model-field validator for ``Tenant.allowed_origins``."""
    check_origins(values)
