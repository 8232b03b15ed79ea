"""The ``Host`` header reduced to the name tenants' domains are matched on, in one place for every route.

RFC 9110 section 7.2 and RFC 3986 section 3.2.2: the host is case-insensitive and a fully qualified name
may end in a dot (``acme.example.`` is ``acme.example``); the port is ignored. A header that is not
``host[:port]`` with a port of 1-5 ASCII digits up to 65535 is refused (``400 invalid_host``) instead of
skipping the tenant check; that includes an empty port (``host:``), which Django and common proxies refuse
too (see docs/decisions.md). ``request_problem`` applies the rule to every request, in the front ASGI app
(``service.streaming.app``), before any route runs; ``require`` gives the authenticated routes the name to
match tenants' domains on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from service.errors import ApiError

_NAME = re.compile(r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*")
_IPV6 = re.compile(r"\[[0-9a-f:.]+\]")
_PORT = re.compile(r"[0-9]{1,5}")


def normalize(raw: str) -> str | None:
    """``Acme.Example.:443`` -> ``acme.example``; ``None`` when ``raw`` is not a host with an optional port.

    IPv6 literals keep their brackets. Only ASCII is accepted (an IDN arrives as its ``xn--`` A-label).
    """
    value = raw.strip(" \t").lower()
    if not value.isascii():
        return None
    if value.startswith("["):
        host, bracket, rest = value.partition("]")
        host += bracket
        if not _IPV6.fullmatch(host):
            return None
        if rest and not rest.startswith(":"):
            return None
        has_port, port = bool(rest), rest[1:]
    else:
        host, colon, port = value.partition(":")
        has_port = bool(colon)
        if host.endswith("."):
            host = host[:-1]
        if len(host) > 253 or not _NAME.fullmatch(host):
            return None
    if has_port and (not _PORT.fullmatch(port) or int(port) > 65535):
        return None
    return host


def invalid_host(message: str) -> ApiError:
    return ApiError(400, "invalid_host", message)


def request_problem(headers: Iterable[tuple[bytes, bytes]], http_version: str) -> ApiError | None:
    """``400 invalid_host`` for a request whose ``Host`` lines break RFC 9112 section 3.2, else ``None``.

    An HTTP/1.1 request needs exactly one ``Host``; a request of any version with more than one, or with a
    value that ``normalize`` refuses, is refused. An empty value is refused too: RFC 9112 allows it only when
    the target URI has no authority, and an ``http`` URI always has one (RFC 9110 section 4.2.1; see
    docs/decisions.md). An HTTP/1.0 request may come without ``Host`` (it then matches no tenant's domain).
    ``headers`` are ASGI header pairs (lower-case names).
    """
    values = [value for name, value in headers if name == b"host"]
    if not values:
        if http_version == "1.0":
            return None
        return invalid_host("an HTTP/1.1 request needs a Host header (RFC 9112, section 3.2)")
    if len(values) > 1:
        return invalid_host("a request has at most one Host header (RFC 9112, section 3.2)")
    if normalize(values[0].decode("latin-1")) is None:
        return invalid_host("the Host header is not a host name with an optional port")
    return None


def require(raw: str | None) -> str:
    """The normalised host of a request, or ``400 invalid_host``; no header (HTTP/1.0) matches no tenant."""
    if not raw:
        return ""
    host = normalize(raw)
    if host is None:
        raise invalid_host("the Host header is not a host name with an optional port")
    return host
