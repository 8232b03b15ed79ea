"""Resumes answered from a worker's replay window and from the database give the same events (real servers).

Two single-worker servers on one database: one with the window, one with ``REPLAY_WINDOW_EVENTS=0`` (every
resume is a query). The tenant's ids have holes (sequence values burnt as a rolled-back publish leaves them)
and a batch too large for its announcement (fetched by id range); resumes from many positions must give the
same events, in the same order, on both; the metrics show which answered.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from django.db import connection

from tests.observability.helpers import scrape, total
from tests.support import Api, sse_stream, take, unique, wait_until


def _burn_ids(schema: str, count: int) -> None:
    """Take sequence values without a committed row: the holes a rolled-back publish leaves."""
    with connection.cursor() as cursor:
        for _ in range(count):
            cursor.execute(
                f"SELECT nextval(pg_get_serial_sequence('\"{schema}\".beacon_notification', 'id'))"
            )


def _replayed(url: str, token: str, last_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    """The events a resume sends before ``beacon.unread`` (a reset included), as (id, event, data)."""
    found = []
    with sse_stream(url, token, last_event_id=last_id) as events:
        for event in events:
            if not event.data:
                continue
            if event.event == "beacon.unread":
                break
            data = json.loads(event.data)
            if event.event == "beacon.reset":
                data.pop("resume_from")  # the newest id each worker knew: either is a valid position
            found.append((event.id, event.event, data))
    return found


def test_resume_from_the_window_equals_resume_from_the_database(start_server, make_tenant):
    tenant, key = make_tenant()
    with_window = start_server(workers=1)
    without = start_server(workers=1, REPLAY_WINDOW_EVENTS="0")
    api = Api(with_window.url, key)
    user, other = unique(), unique()
    token = api.token(user, topics=["news"])
    ids: list[str] = []
    with sse_stream(
        with_window.url, api.token(unique())
    ) as watcher:  # the tenant has a stream on that worker
        for round_ in range(4):
            ids += [n["id"] for n in api.publish_ok({"recipient": user, "data": {"r": round_}})]
            api.publish_ok({"recipient": other, "data": "not for user"})
            _burn_ids(tenant.schema_name, 3)
            ids += [n["id"] for n in api.publish_ok({"topic": "news", "data": round_})]
            ids += [n["id"] for n in api.publish_ok({"broadcast": True, "event": "all.b", "data": [round_]})]
        big = {"notifications": [{"recipient": user, "data": "x" * 2000} for _ in range(6)]}
        response = api.publish(big, batch=True)  # about 12 kB: announced as an id range
        assert response.status_code == 201
        ids += [n["id"] for n in response.json()["notifications"]]
        last = ids[-1]
        assert take(watcher, 1)[0].id  # the watcher's broadcasts arrive: the listener is there
        wait_until(
            lambda: (
                _replayed(with_window.url, token, str(int(ids[0]) - 1))[-1:]
                == _replayed(without.url, token, str(int(ids[0]) - 1))[-1:]
            ),
            timeout=20,
            message="the window worker to have dispatched the last batch",
        )
        before = scrape(with_window.metrics_port)
        positions = sorted({str(int(ids[0]) - 1), *ids[::3], ids[-2], last})
        for position in positions:
            from_window = _replayed(with_window.url, token, position)
            from_database = _replayed(without.url, token, position)
            assert from_window == from_database, position
        assert _replayed(with_window.url, token, ids[0])[0][0] == ids[1]
        assert len(_replayed(with_window.url, token, str(int(ids[0]) - 1))) == len(ids)
    after = scrape(with_window.metrics_port)
    served = total(after, "beacon_resumes_total", source="window") - total(
        before, "beacon_resumes_total", source="window"
    )
    assert served == len(positions) + 2  # every resume on that worker, none from the database
    assert total(scrape(without.metrics_port), "beacon_resumes_total", source="window") == 0
    assert total(scrape(without.metrics_port), "beacon_resumes_total", source="database") >= len(positions)
    assert httpx.get(with_window.url + "/readyz").status_code == 200
