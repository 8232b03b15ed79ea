"""Group commit (``service/notifications/publish.py``, ``Coalescer``): a tenant's publishes in flight together
share one ``beacon_publish`` call, and each request still gets the answer it would have had alone.

In-process against the real PostgreSQL: the requests are started on one event loop, so which ones share a
call is deterministic (the first starts alone; the ones that queue while it runs go together in the next).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from service.errors import ApiError
from service.notifications import publish
from service.notifications.schemas import PublishIn
from tenants.directory import TenantInfo


def _item(recipient: str, data: int | str) -> tuple[PublishIn, str]:
    item = PublishIn(recipient=recipient, data=data)
    return item, publish.encoded_data(item, _FAKE_LIMITS, "data")


_FAKE_LIMITS = TenantInfo(0, "x", "x", True, "", (), 1, 1, 1, 1 << 20)


def _run(
    requests: list[tuple[TenantInfo, list[tuple[PublishIn, str]]]], cancel: set[int] = frozenset()
) -> list[Any]:
    """Start every request on one loop (in order), cancel those in ``cancel`` once all have queued; return
    each request's ``Outcome`` or exception."""

    async def main() -> list[Any]:
        async with AsyncConnectionPool(
            os.environ["BEACON_TEST_DATABASE_URL"], min_size=1, max_size=2, kwargs={"autocommit": True}
        ) as pool:
            tasks = [asyncio.ensure_future(publish.publish_direct(pool, t, items)) for t, items in requests]
            await asyncio.sleep(0)  # every request runs up to its wait: the first call has started
            await asyncio.sleep(0)
            for index in cancel:
                tasks[index].cancel()
            return await asyncio.gather(*tasks, return_exceptions=True)

    return asyncio.run(main())


def _created(outcome: Any) -> str:
    return outcome.body["notifications"][0]["created_at"]


def _stored(schema: str, recipient: str) -> list[tuple[int, Any]]:
    with psycopg.connect(os.environ["BEACON_TEST_DATABASE_URL"], autocommit=True) as conn:
        query = f'SELECT id, data FROM "{schema}".beacon_notification WHERE recipient = %s ORDER BY id'
        return [(row[0], row[1]) for row in conn.execute(query, [recipient])]


def test_concurrent_publishes_share_one_call_per_tenant(make_tenant) -> None:
    """20 requests of acme and 20 of globex for the same recipient id: per tenant, the first runs alone and the
    19 that queued meanwhile share the next call (one ``created_at``); ids ascend in request order; nothing of
    one tenant lands in the other's schema."""
    acme, globex = (TenantInfo.of(make_tenant()[0]) for _ in range(2))
    requests = [(tenant, [_item("u1", i)]) for i in range(20) for tenant in (acme, globex)]
    outcomes = _run(requests)
    assert all(o.status == 201 for o in outcomes)
    for tenant in (acme, globex):
        mine = [o for (t, _), o in zip(requests, outcomes, strict=True) if t is tenant]
        ids = [int(o.body["notifications"][0]["id"]) for o in mine]
        assert ids == sorted(ids) and len(set(ids)) == 20
        assert len({_created(o) for o in mine[1:]}) == 1  # one shared call after the first
        assert _stored(tenant.schema, "u1") == [(i, n) for i, n in zip(ids, range(20), strict=True)]


def test_each_request_of_a_shared_call_counts_in_the_rate_window(make_tenant) -> None:
    """A rate of 5/s and 12 requests at once: the shared call of 11 is over the rate, so each is retried on
    its own: exactly 5 stored, 7 answered ``429 rate_limited`` (as 12 separate calls would be)."""
    tenant = TenantInfo.of(make_tenant(publish_rate_per_second=5)[0])
    while time.time() % 1 > 0.5:  # start early in a second: the 12 run within one rate window
        time.sleep(0.05)
    second = int(time.time())
    outcomes = _run([(tenant, [_item("u1", i)]) for i in range(12)])
    ok = [o for o in outcomes if not isinstance(o, BaseException)]
    limited = [o for o in outcomes if isinstance(o, ApiError)]
    assert len(ok) + len(limited) == 12
    assert all(error.status == 429 and error.code == "rate_limited" for error in limited)
    if int(time.time()) == second:  # one window (else the next second's 5 may be stored too)
        assert len(ok) == 5
    assert len(_stored(tenant.schema, "u1")) == len(ok)


def test_a_request_the_database_refuses_fails_alone(make_tenant) -> None:
    """One request whose data PostgreSQL refuses (not JSON: the check before the database was skipped here on
    purpose) in a shared call: it gets the error, the others of the call are stored."""
    tenant = TenantInfo.of(make_tenant()[0])
    bad = (PublishIn(recipient="u1", data=1), "{not json")
    requests = [
        (tenant, [_item("u1", 0)]),
        (tenant, [_item("u1", 1)]),
        (tenant, [bad]),
        (tenant, [_item("u1", 3)]),
    ]
    outcomes = _run(requests)
    assert isinstance(outcomes[2], psycopg.DataError)
    assert [o.status for i, o in enumerate(outcomes) if i != 2] == [201, 201, 201]
    assert [data for _, data in _stored(tenant.schema, "u1")] == [0, 1, 3]


def test_a_request_cancelled_while_queued_is_not_stored(make_tenant) -> None:
    """A client gone before its request's call started: nothing is stored for it; the others are."""
    tenant = TenantInfo.of(make_tenant()[0])
    outcomes = _run([(tenant, [_item("u1", i)]) for i in range(3)], cancel={2})
    assert isinstance(outcomes[2], asyncio.CancelledError)
    assert [data for _, data in _stored(tenant.schema, "u1")] == [0, 1]


@pytest.mark.parametrize("rows", [publish.MAX_COALESCED_ROWS, publish.MAX_COALESCED_ROWS + 1])
def test_a_large_request_is_stored_in_one_call_of_its_own(make_tenant, rows: int) -> None:
    """Shared calls stop at ``MAX_COALESCED_ROWS`` rows, but a request is never split: a bigger one goes alone."""
    tenant = TenantInfo.of(make_tenant()[0])
    big = [_item("u1", i) for i in range(rows)]
    outcomes = _run([(tenant, [_item("u1", -1)]), (tenant, [_item("u1", -2)]), (tenant, big)])
    assert [o.status for o in outcomes] == [201, 201, 201]
    assert len(outcomes[2].body["notifications"]) == rows
    assert _created(outcomes[1]) != outcomes[2].body["notifications"][0]["created_at"]  # not in one call
