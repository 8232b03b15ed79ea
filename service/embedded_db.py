"""The embedded PostgreSQL used when ``DATABASE_URL`` is unset (development and tests).

``pgserver`` ships PostgreSQL 16 inside its wheel, so a fresh machine needs nothing but ``pip install``.
The server listens on a Unix socket inside its data directory, so it never competes for a TCP port.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def start(data_dir: Path, *, cleanup_mode: str | None = None) -> Any:
    """Start (or reuse) the server whose data lives in ``data_dir`` and return its handle."""
    import pgserver  # imported lazily: production images talk to a real server

    data_dir.mkdir(parents=True, exist_ok=True)
    return pgserver.get_server(data_dir, cleanup_mode=cleanup_mode)


def url(server: Any, database: str = "postgres") -> str:
    """A ``postgresql://`` URL for ``database`` on the embedded server."""
    return str(server.get_uri(database))
