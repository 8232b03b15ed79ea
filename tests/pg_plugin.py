"""Loaded with ``-p tests.pg_plugin`` before Django: without DATABASE_URL, start a throw-away PostgreSQL.

The server (pgserver, PostgreSQL 16 from its wheel) lives in a temporary directory deleted at exit, and
its URL is exported so gunicorn processes started by the tests use the same server.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

# pgserver logs from its atexit hook, after pytest has closed the streams it captured.
_pg_log = logging.getLogger("pgserver")
_pg_log.propagate = False
_pg_log.addHandler(logging.NullHandler())

if not os.environ.get("DATABASE_URL"):
    from service import embedded_db

    _dir = Path(tempfile.mkdtemp(prefix="beacon-test-pg-"))
    _server = embedded_db.start(_dir / "data", cleanup_mode="delete")
    os.environ["DATABASE_URL"] = embedded_db.url(_server)
