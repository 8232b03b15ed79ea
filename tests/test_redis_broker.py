"""Redis as the broker (``BROKER_URL``): two pods on one database and one real Redis, gaps, outages.

Holes and lost announcements are produced for real: rows are committed through ``beacon_publish`` without
an announcement (a publisher that died between commit and announce), and announcements are published to
the Redis channel by hand, out of order or twice (two publishers racing, a retry).
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest
import redis

from service.broker.base import Announcement, Row
from service.broker.payload import encode
from tests.redis_support import PrivateRedis, channel, shared_redis_url
from tests.support import Api, sse_stream, take, unique, wait_until

CREATED = "2026-11-30T12:00:00.000000Z"


def _commit_silently(tenant: Any, recipient: str, count: int, *, rollback: bool = False) -> list[int]:
    """Commit ``count`` rows through ``beacon_publish`` with no announcement at all (or roll them back)."""
    with psycopg.connect(os.environ["BEACON_TEST_DATABASE_URL"]) as conn:
        (ids,) = conn.execute(
            f'SELECT "{tenant.schema_name}".beacon_publish(%s, %s, %s, %s, %s, %s::text[], %s::text[], '
            "%s::boolean[], %s::text[], %s::text[], %s::integer[], NULL, %s, %s)",
            [
                tenant.id,
                1_000_000,
                int(time.time()),
                datetime.now(UTC),
                CREATED,
                [recipient] * count,
                [None] * count,
                [False] * count,
                [None] * count,
                [str(i) for i in range(count)],
                [3600] * count,
                tenant.schema_name,
                time.time(),
            ],
        ).fetchone()
        if rollback:
            conn.rollback()
        else:
            conn.commit()
    return list(ids)


def _announce(url: str, name: str, tenant: Any, recipient: str, ids: list[int]) -> None:
    rows = [Row(i, recipient, None, False, None, CREATED, "0") for i in ids]
    redis.Redis.from_url(url).publish(
        name, encode(Announcement(tenant.schema_name, rows, sent_at=time.time()))
    )


@pytest.fixture
def redis_pods(start_server: Any) -> Any:
    """Two servers ("pods", two workers each) sharing the test database and the machine's Redis."""
    url = shared_redis_url()
    name = channel()
    env = {"BROKER_URL": url, "BROKER_CHANNEL": name, "BROKER_CHECK_SECONDS": "0.2"}
    return url, name, start_server(**env), start_server(**env)


def test_a_stream_on_one_pod_receives_what_is_published_on_the_other(redis_pods, make_tenant):
    _url, _name, pod_a, pod_b = redis_pods
    _tenant, key = make_tenant()
    api_a, api_b = Api(pod_a.url, key), Api(pod_b.url, key)
    user = unique()
    with sse_stream(pod_a.url, api_a.token(user)) as events:
        published = [api_b.publish_ok({"recipient": user, "data": i})[0]["id"] for i in range(5)]
        batch = api_a.publish({"notifications": [{"recipient": user}] * 3}, batch=True)
        assert batch.status_code == 201, batch.text
        published += [n["id"] for n in batch.json()["notifications"]]
        assert [e.id for e in take(events, 8)] == published


def test_limits_hold_across_pods_with_redis(redis_pods, make_tenant):
    _url, _name, pod_a, pod_b = redis_pods
    _tenant, key = make_tenant(max_connections_per_recipient=1, max_connections=2)
    api = Api(pod_a.url, key)
    user = unique()
    with sse_stream(pod_a.url, api.token(user)):
        refused = httpx.get(pod_b.url + "/v1/stream", headers={"Authorization": f"Bearer {api.token(user)}"})
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_connections"
        with sse_stream(pod_b.url, api.token(unique())):
            third = httpx.get(
                pod_a.url + "/v1/stream", headers={"Authorization": f"Bearer {api.token(unique())}"}
            )
            assert third.status_code == 429


def test_with_redis_postgresql_has_no_listen_connection_and_no_notify(start_server, make_tenant):
    url, name = shared_redis_url(), channel()
    database_url = os.environ["BEACON_TEST_DATABASE_URL"]
    query = (
        "SELECT count(*) FILTER (WHERE query ILIKE 'LISTEN%%' AND pid <> pg_backend_pid()), "
        "count(*) FILTER (WHERE application_name = 'beacon-worker') "
        "FROM pg_stat_activity WHERE datname = current_database()"
    )
    with psycopg.connect(database_url, autocommit=True) as watcher:
        listens_before, _ = watcher.execute(query).fetchone()
        watcher.execute(f"LISTEN {name}")  # the channel a NOTIFY broker would use with these settings
        pod = start_server(BROKER_URL=url, BROKER_CHANNEL=name)
        _tenant, key = make_tenant()
        api = Api(pod.url, key)
        user = unique()
        with sse_stream(pod.url, api.token(user)) as events:
            published = [api.publish_ok({"recipient": user})[0]["id"] for _ in range(3)]
            assert [e.id for e in take(events, 3)] == published
        assert list(watcher.notifies(timeout=0.5)) == []
        listens, presences = watcher.execute(query).fetchone()
        assert listens == listens_before  # other servers of this session may LISTEN; ours do not
        assert presences >= 2  # one idle presence connection per worker stands for its slots


def test_a_hole_before_an_announcement_is_filled_in_order(redis_pods, make_tenant):
    _url, _name, pod_a, _pod_b = redis_pods
    tenant, key = make_tenant()
    api = Api(pod_a.url, key)
    user = unique()
    with sse_stream(pod_a.url, api.token(user)) as events:
        first = api.publish_ok({"recipient": user})[0]["id"]
        assert take(events, 1)[0].id == first
        silent = _commit_silently(tenant, user, 3)  # committed, never announced
        _commit_silently(tenant, user, 2, rollback=True)  # a hole that stays empty forever
        later = api.publish_ok({"recipient": user})[0]["id"]
        assert [int(e.id) for e in take(events, 4)] == [*silent, int(later)]


def test_announcements_out_of_order_or_twice_are_delivered_once_in_id_order(redis_pods, make_tenant):
    url, name, pod_a, _pod_b = redis_pods
    tenant, key = make_tenant()
    api = Api(pod_a.url, key)
    user = unique()
    with sse_stream(pod_a.url, api.token(user)) as events:
        first = int(api.publish_ok({"recipient": user})[0]["id"])
        assert int(take(events, 1)[0].id) == first
        a, b, c = _commit_silently(tenant, user, 3)
        _announce(url, name, tenant, user, [c])  # the later transaction's announcement arrives first
        _announce(url, name, tenant, user, [a])
        _announce(url, name, tenant, user, [b])
        _announce(url, name, tenant, user, [c])  # and once more
        last = int(api.publish_ok({"recipient": user})[0]["id"])
        assert [int(e.id) for e in take(events, 4)] == [a, b, c, last]


def test_a_lost_trailing_announcement_is_found_by_the_periodic_check(redis_pods, make_tenant):
    _url, _name, pod_a, _pod_b = redis_pods
    tenant, key = make_tenant()
    api = Api(pod_a.url, key)
    user = unique()
    with sse_stream(pod_a.url, api.token(user), timeout=10) as events:
        first = api.publish_ok({"recipient": user})[0]["id"]
        assert take(events, 1)[0].id == first
        silent = _commit_silently(tenant, user, 2)  # nothing is published after these
        assert [int(e.id) for e in take(events, 2)] == silent  # BROKER_CHECK_SECONDS=0.2: well within 10 s


def test_redis_outage_streams_keep_positions_publishes_succeed_and_catch_up(
    start_server, make_tenant, tmp_path
):
    own = PrivateRedis(tmp_path).start()
    try:
        pod = start_server(BROKER_URL=own.url, BROKER_CHANNEL=channel(), BROKER_CHECK_SECONDS="0.2")
        _tenant, key = make_tenant()
        api = Api(pod.url, key)
        user = unique()
        with sse_stream(pod.url, api.token(user), timeout=30) as events:
            first = api.publish_ok({"recipient": user})[0]["id"]
            assert take(events, 1)[0].id == first
            own.stop()
            wait_until(
                lambda: all(httpx.get(pod.url + "/readyz").status_code == 503 for _ in range(4)),
                timeout=20,
                message="readiness false while Redis is down",
            )
            during = [api.publish_ok({"recipient": user, "data": i})[0]["id"] for i in range(4)]
            own.start()
            assert [e.id for e in take(events, 4)] == during
            after = api.publish_ok({"recipient": user})[0]["id"]
            assert take(events, 1)[0].id == after
        wait_until(lambda: httpx.get(pod.url + "/readyz").status_code == 200, timeout=15, message="ready")
    finally:
        own.stop()
