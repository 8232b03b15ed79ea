"""The embedded PostgreSQL used when ``DATABASE_URL`` is unset (development and tests).

``pgserver`` (a dev/local extra, never in the production image) ships PostgreSQL 16 inside its wheel, so a
fresh machine needs nothing but ``pip install``. The server listens on a Unix socket inside its data
directory, so it never competes for a TCP port.

Only entry points start it, explicitly: ``manage.py`` and ``make run`` (``service.devserver``), the test
harness (``tests/pg_plugin.py``) and the benchmark. Importing the settings never starts a database.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

MISSING_URL = (
    "DATABASE_URL is not set and REQUIRE_DATABASE_URL=1: "
    "set DATABASE_URL=postgresql://user:password@host:5432/dbname"
)


def default_data_dir(base_dir: Path) -> Path:
    """``EMBEDDED_PG_DIR`` or ``<checkout>/.data/pg``: shared by ``make run`` and ``manage.py``."""
    return Path(os.environ.get("EMBEDDED_PG_DIR") or base_dir / ".data" / "pg")


def database_url_required() -> bool:
    """``REQUIRE_DATABASE_URL`` (the image and the Helm chart set it): never fall back to an embedded server."""
    from service.env import env_bool

    return env_bool("REQUIRE_DATABASE_URL", False)


def start(data_dir: Path, *, cleanup_mode: str | None = None) -> Any:
    """Start (or reuse) the server whose data lives in ``data_dir`` and return its handle."""
    # pgserver logs its own start and stop (at exit too); those lines are noise for operators.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); pgserver copes without it.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        try:
            import pgserver  # imported lazily: production images talk to a real server
        except ImportError:
            raise SystemExit(
                "DATABASE_URL is not set and pgserver is not installed: set DATABASE_URL "
                "(or install the local extra: pip install -e '.[local]')"
            ) from None
        data_dir.mkdir(parents=True, exist_ok=True)
        return pgserver.get_server(data_dir, cleanup_mode=cleanup_mode)


def url(server: Any, database: str = "postgres") -> str:
    """A ``postgresql://`` URL for ``database`` on the embedded server."""
    return str(server.get_uri(database))


def ensure_database_url(base_dir: Path) -> Any:
    """Export ``DATABASE_URL``, starting the embedded server when it is unset; returns the server or ``None``.

    Exits with a one-line message when ``REQUIRE_DATABASE_URL`` forbids the fallback. The server stops when
    its last user exits (a running ``make run`` keeps it up), so a command leaves nothing running behind it.
    """
    if os.environ.get("DATABASE_URL"):
        return None
    if database_url_required():
        raise SystemExit(MISSING_URL)
    server = start(default_data_dir(base_dir), cleanup_mode="stop")
    os.environ["DATABASE_URL"] = url(server)
    return server
