"""Typed readers for environment variables that refuse bad values at start-up.

Every setting of Beacon comes through one of these helpers, so a typo in a deployment fails loudly when the
process starts instead of surfacing as odd behaviour under load. Numbers follow ``service.numbers``: ASCII
digits only (``PORT=١٢``, ``PORT=_8000``, ``PORT=+80``, ``HEARTBEAT_SECONDS=inf`` or ``=1e3`` are refused
with a message naming the variable), as every number Beacon parses from text.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

from service.numbers import ascii_decimal, ascii_int

_BLANKS = " \t"  # ASCII blanks around a value are forgiven (``PORT= 8000`` in an env file); nothing else


class ConfigError(ValueError):
    """An environment variable holds a value Beacon cannot use."""


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name}: expected a boolean (1/0, true/false, yes/no, on/off), got {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = ascii_int(raw.strip(_BLANKS))
    if value is None:
        raise ConfigError(f"{name}: expected a whole number in ASCII digits (such as 8000), got {raw!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}: must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}: must be at most {maximum}, got {value}")
    return value


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = ascii_decimal(raw.strip(_BLANKS))
    if value is None:
        raise ConfigError(f"{name}: expected a number in ASCII digits (such as 2 or 0.5), got {raw!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}: must be at least {minimum}, got {value}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def database_from_url(url: str) -> dict[str, Any]:
    """Turn ``postgresql://user:pass@host:port/db?host=/socket/dir`` into Django's DATABASES entry."""
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise ConfigError(f"DATABASE_URL: only postgresql:// URLs are supported, got scheme {parts.scheme!r}")
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    name = unquote(parts.path.lstrip("/")) or query.pop("dbname", "")
    if not name:
        raise ConfigError("DATABASE_URL: the database name is missing")
    host = query.pop("host", None) or (unquote(parts.hostname) if parts.hostname else "")
    port = _url_port("DATABASE_URL", parts)
    return {
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": host,
        "PORT": str(port or ""),
        "OPTIONS": query,
    }


def env_url(name: str, default: str, schemes: set[str]) -> str:
    """A URL whose scheme is one of ``schemes`` (``""`` when unset and the default is empty)."""
    raw = os.environ.get(name, default).strip()
    if not raw:
        return ""
    parts = urlsplit(raw)
    if parts.scheme not in schemes:
        raise ConfigError(
            f"{name}: the scheme must be one of {', '.join(sorted(schemes))}, got {parts.scheme!r}"
        )
    if not parts.hostname and parts.scheme != "unix":
        raise ConfigError(f"{name}: the host is missing")
    _url_port(name, parts)
    return raw


def _url_port(name: str, parts: SplitResult) -> int | None:
    """The URL's port in ASCII digits up to 65535 (``urllib`` raises a bare ``ValueError`` otherwise)."""
    try:
        return parts.port
    except ValueError:
        raise ConfigError(f"{name}: the port must be ASCII digits from 0 to 65535") from None
