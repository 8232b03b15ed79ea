"""The announcement format is defined once: PostgreSQL's ``beacon_publish`` and Python encode it alike."""

from __future__ import annotations

import os
import time
from typing import Any

import psycopg
import pytest

from service.broker.base import Announcement, Row
from service.broker.payload import MAX_PAYLOAD, decode, encode
from service.broker.postgres import CHANNEL
from service.timefmt import rfc3339

CREATED = "2026-11-25T12:00:00.000000Z"


def _publish_in_sql(conn: psycopg.Connection[Any], tenant: Any, rows: list[tuple[Any, ...]]) -> list[int]:
    """Call the tenant schema's ``beacon_publish`` the way ``service/notifications/publish.py`` does."""
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    (ids,) = conn.execute(
        f'SELECT "{tenant.schema_name}".beacon_publish(%s, %s, %s, %s, %s, %s::text[], %s::text[], '
        "%s::boolean[], %s::text[], %s::text[], %s::integer[], %s, %s, %s)",
        [
            tenant.id,
            1_000_000,
            int(time.time()),
            now,
            CREATED,
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
            [r[3] for r in rows],
            [r[4] for r in rows],
            [60 for _ in rows],
            CHANNEL,
            tenant.schema_name,
            1.5,
        ],
    ).fetchone()
    return list(ids)


@pytest.mark.parametrize("size", ["small", "large"])
def test_sql_and_python_encode_the_same_announcement(make_tenant: Any, size: str) -> None:
    tenant, _ = make_tenant()
    body = '{"k":[1,"two"],"s":"é"}' if size == "small" else '"' + "y" * 600 + '"'
    specs: list[tuple[Any, ...]] = [
        ("u1", None, False, "order.shipped", body),
        (None, "news", False, None, body),
        (None, None, True, None, body),
    ] * (1 if size == "small" else 6)
    url = os.environ["BEACON_TEST_DATABASE_URL"]
    with (
        psycopg.connect(url, autocommit=True) as listener,
        psycopg.connect(url, autocommit=True) as publisher,
    ):
        listener.execute(f"LISTEN {CHANNEL}")
        ids = _publish_in_sql(publisher, tenant, specs)
        notify = next(listener.notifies(timeout=10))
    from_sql = decode(notify.payload)
    rows = [Row(i, r, t, b, e, CREATED, d) for i, (r, t, b, e, d) in zip(ids, specs, strict=True)]
    from_python = decode(encode(Announcement(tenant.schema_name, rows, sent_at=1.5)))
    assert from_sql == from_python
    if size == "large":
        assert from_sql.id_range == (ids[0], ids[-1]) and from_sql.rows == ()
        assert len(notify.payload.encode()) <= MAX_PAYLOAD
    else:
        assert from_sql.rows == tuple(rows)


def test_created_at_format_is_the_stores() -> None:
    from datetime import UTC, datetime

    assert rfc3339(datetime(2026, 11, 25, 12, tzinfo=UTC)) == CREATED
