"""Fixtures of the observability tests: a database of its own whose connections a test may cut."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from tests.observability.helpers import OwnDatabase
from tests.support import create_database


@pytest.fixture
def own_database(django_db_setup: str) -> Iterator[OwnDatabase]:
    """A fresh database with Beacon's shared migrations (a copy of the run's template under xdist), dropped
    afterwards."""
    name = f"beacon_obs_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        copied = create_database(conn, name)
    database = OwnDatabase(
        name, urlunsplit(urlsplit(os.environ["BEACON_TEST_DATABASE_URL"])._replace(path=f"/{name}"))
    )
    try:
        if not copied:
            database.manage("migrate_schemas", "--shared", "-v", "0")
        yield database
    finally:
        database.allow_connections()
        database.execute('DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
