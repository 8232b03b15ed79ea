"""Publishes without ``Idempotency-Key`` run on the worker's event loop (``publish_direct``), not in a thread.

The worker's publish pool (``application_name`` ``beacon-publish``) is the connection that ran the tenant's
schema-qualified ``beacon_publish``; with a key, Django's connection runs it (in the tenant's search_path).
Both answer alike and both deliver (the rest of the suite publishes through the direct path).
"""

from __future__ import annotations

from django.db import connection

from tests.support import Api, sse_stream, take, unique


def _publish_backends(schema: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'beacon-publish' AND query LIKE %s",
            [f'SELECT "{schema}".beacon_publish(%'],
        )
        return int(cursor.fetchone()[0])


def test_publishes_without_a_key_use_the_worker_pool(start_server, make_tenant):
    tenant, key = make_tenant()
    srv = start_server(workers=1)
    api = Api(srv.url, key)
    user = unique()
    with sse_stream(srv.url, api.token(user)) as events:
        direct = api.publish_ok({"recipient": user, "data": "direct"})
        assert _publish_backends(tenant.schema_name) == 1
        keyed = api.publish({"recipient": user, "data": "keyed"}, **{"Idempotency-Key": unique()})
        assert keyed.status_code == 201
        got = take(events, 2)
    assert [e.id for e in got] == [direct[0]["id"], keyed.json()["notifications"][0]["id"]]
    assert set(keyed.json()["notifications"][0]) == set(direct[0])
