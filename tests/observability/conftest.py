"""Fixtures of the observability tests: a database of its own whose connections a test may cut."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from tests.observability.helpers import OwnDatabase


@pytest.fixture
def own_database(django_db_setup: str) -> Iterator[OwnDatabase]:
    """A fresh database with Beacon's shared migrations, dropped afterwards."""
    name = f"beacon_obs_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database = OwnDatabase(
        name, urlunsplit(urlsplit(os.environ["BEACON_TEST_DATABASE_URL"])._replace(path=f"/{name}"))
    )
    try:
        database.manage("migrate_schemas", "--shared", "-v", "0")
        yield database
    finally:
        database.allow_connections()
        database.execute('DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
