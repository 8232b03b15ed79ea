"""Array parameters written as PostgreSQL array literals read back as the same values, whatever the strings."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.pgarray import literal

TEXT = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=40)


@pytest.fixture(scope="module")
def pg(django_db_setup: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(os.environ["BEACON_TEST_DATABASE_URL"], autocommit=True) as conn:
        yield conn


@settings(max_examples=150, deadline=None)
@given(
    texts=st.lists(
        st.one_of(st.none(), TEXT, st.sampled_from(["NULL", "", " ", "{}", "a,b", '"', "\\", "\\\\"]))
    ),
    ints=st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1))),
    flags=st.lists(st.one_of(st.none(), st.booleans())),
)
def test_literals_read_back_as_the_values(pg: psycopg.Connection, texts, ints, flags) -> None:
    row = pg.execute(
        "SELECT %s::text[], %s::bigint[], %s::boolean[]", [literal(texts), literal(ints), literal(flags)]
    ).fetchone()
    assert row == (texts, ints, flags)
