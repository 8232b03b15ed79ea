"""The announcement format is defined once: PostgreSQL's ``beacon_publish`` and Python encode it alike."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.broker.base import Announcement, Row
from service.broker.payload import MAX_PAYLOAD, decode, encode
from service.broker.postgres import CHANNEL
from service.timefmt import rfc3339
from tests.support import commit_unannounced

CREATED = "2026-11-25T12:00:00.000000Z"


NOW = datetime.now(UTC)


def _publish_in_sql(conn: psycopg.Connection[Any], tenant: Any, rows: list[tuple[Any, ...]]) -> list[int]:
    """Call the tenant schema's ``beacon_publish`` the way ``service/notifications/publish.py`` does."""
    now = NOW
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
    expires = NOW.timestamp() + 60  # the ttl _publish_in_sql gives every row
    rows = [Row(i, r, t, b, e, CREATED, d, expires) for i, (r, t, b, e, d) in zip(ids, specs, strict=True)]
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


# --------------------------------------------------------------------------------------------------------
# The listener's order and gap rules, in-process against the real database (service/streaming/listener.py)


async def _run_listener(url: str, tenant: Any, plan: dict[str, Any]) -> tuple[list[int], list[int]]:
    """Commit ``plan``'s transactions, announce them in ``plan``'s order (drops, duplicates), run two checks;
    return what one stream's queue received and what it should have received."""
    from psycopg_pool import AsyncConnectionPool

    from service.streaming.dispatch import Dispatcher
    from service.streaming.hub import Hub, Subscription, keys_for
    from service.streaming.listener import Listener
    from service.streaming.store import Store

    schema = tenant.schema_name
    recipient = f"r-{uuid.uuid4().hex[:8]}"
    async with AsyncConnectionPool(url, min_size=1, max_size=2, kwargs={"autocommit": True}) as pool:
        store = Store(pool)
        hub = Hub()

        async def nothing() -> None:
            return None

        listener = Listener(hub, Dispatcher(hub, lambda s, r: None), lambda: store, nothing, lambda: False)
        await listener.on_connected(True)
        sub = Subscription(schema, recipient, keys_for(schema, recipient, []), 10_000)
        await listener.ensure_newest(schema)
        hub.add(sub)
        start = listener.newest_dispatched(schema)
        assert start is not None
        sub.position = start
        transactions = [
            (commit_unannounced(tenant, recipient, size, rollback=rollback, url=url), rollback)
            for size, rollback in plan["transactions"]
        ]
        announced = [ids for ids, rollback in transactions if not rollback]
        for index in plan["order"]:
            if index < len(announced) and index not in plan["dropped"]:
                rows = [Row(i, recipient, None, False, None, CREATED, "1") for i in announced[index]]
                await listener.on_announcement(Announcement(schema, rows))
        newest = max((i for ids in announced for i in ids), default=start)
        await listener.check_newest({schema: newest})  # first sight of the tenant's newest id
        await listener.check_newest({schema: newest})  # still not dispatched one interval later: filled
        received = []
        while (item := sub.pop()) is not None:
            received.append(item.id)
        expected = [i for ids in announced for i in ids if i > start]
        return received, expected


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    data=st.lists(st.tuples(st.integers(1, 3), st.booleans()), min_size=1, max_size=6).flatmap(
        lambda txs: st.fixed_dictionaries(
            {
                "transactions": st.just(txs),
                "order": st.lists(st.integers(0, len(txs) - 1), max_size=2 * len(txs)),
                "dropped": st.sets(st.integers(0, len(txs) - 1)),
            }
        )
    )
)
def test_listener_dispatches_every_committed_id_once_in_order_whatever_the_announcements(
    make_tenant: Any, data: dict[str, Any]
) -> None:
    """Announcements reordered, repeated, lost (never sent), rolled-back holes: the stream's queue gets
    each committed id exactly once, ascending, after the hole reads and the periodic check."""
    tenant = _listener_tenant(make_tenant)
    received, expected = asyncio.run(_run_listener(os.environ["BEACON_TEST_DATABASE_URL"], tenant, data))
    assert received == expected


_TENANTS: dict[str, Any] = {}


def _listener_tenant(make_tenant: Any) -> Any:
    if "t" not in _TENANTS:
        _TENANTS["t"] = make_tenant()[0]
    return _TENANTS["t"]
