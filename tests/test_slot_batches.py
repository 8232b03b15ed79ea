"""Batched slot accounting (``beacon_slots``) keeps the limits exact across servers under concurrent connects.

Two servers of two workers each (four workers, each batching its connects into one statement) receive many
connects at once for one tenant; exactly the tenant's limit is admitted, no recipient over its own, and every
slot comes back once the streams close. ``test_streaming.py`` covers the SIGKILLed worker's slots.
"""

from __future__ import annotations

import os
import socket
import threading
from collections import Counter
from collections.abc import Iterator

import psycopg
import pytest
from django.db import connection
from hypothesis import given, settings
from hypothesis import strategies as st

from service import pgarray
from tests.observability.helpers import scrape, total
from tests.support import Api, open_stream_socket, unique, wait_until


def _open(port: int, token: str, results: list[tuple[str, int, socket.socket]], recipient: str) -> None:
    status, sock = open_stream_socket(port, token)
    results.append((recipient, status, sock))


def _slots(tenant_id: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(count), 0) FROM public.beacon_slot_tenant WHERE tenant_id = %s", [tenant_id]
        )
        return int(cursor.fetchone()[0])


def test_concurrent_connects_on_two_servers_never_exceed_the_limits(start_server, make_tenant):
    tenant, key = make_tenant(max_connections=25, max_connections_per_recipient=3)
    pods = [start_server(workers=2), start_server(workers=2)]
    api = Api(pods[0].url, key)
    recipients = [unique() for _ in range(8)]
    tokens = {r: api.token(r) for r in recipients}
    results: list[tuple[str, int, socket.socket]] = []
    threads = [
        threading.Thread(target=_open, args=(pods[i % 2].port, tokens[r], results, r))
        for i, r in enumerate(recipients * 6)  # 48 connects: 6 per recipient, at most 3 each may stay
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 48
    admitted = Counter(r for r, status, _ in results if status == 200)
    assert set(status for _, status, _ in results) <= {200, 429}
    assert all(count <= 3 for count in admitted.values()), admitted
    assert sum(admitted.values()) == 24  # 8 recipients x 3: the tenant limit (25) is not the binding one
    assert _slots(tenant.id) == 24
    # One more recipient: one slot left for the tenant, then none.
    extra: list[tuple[str, int, socket.socket]] = []
    for _ in range(2):
        _open(pods[1].port, api.token(unique()), extra, "extra")
    assert [status for _, status, _ in extra] == [200, 429]
    for _, _, sock in results + extra:
        sock.close()
    wait_until(lambda: _slots(tenant.id) == 0, timeout=20, message="every slot to come back")
    # Fewer statements than slot operations: connects (and releases) shared statements.
    samples = [scrape(pod.metrics_port) for pod in pods]
    statements = sum(total(s, "beacon_stream_batch_statements_total", kind="slots") for s in samples)
    operations = sum(total(s, "beacon_stream_batched_requests_total", kind="slots") for s in samples)
    # 50 connects, 25 releases, one registration per worker (it rides on the slot batcher: streaming/0006)
    assert operations == 50 + 25 + 4 and 0 < statements < operations


# --- the decision itself, in the database, against a model of deciding one by one ----------------------------

WORKER = "hypothesis-worker"
DEAD = "hypothesis-dead-worker"
TENANTS = (2_000_000_001, 2_000_000_002)  # no tenant has these ids: the slot tables have no foreign key


@pytest.fixture(scope="module")
def slot_db(django_db_setup: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(os.environ["BEACON_TEST_DATABASE_URL"], autocommit=True) as conn:
        conn.execute(  # this connection's backend stands for a live worker (beacon_live_workers)
            "INSERT INTO beacon_stream_worker (id, listener_pid, listener_started) SELECT %s, pid, "
            "backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()",
            [WORKER],
        )
        conn.execute(
            "INSERT INTO beacon_stream_worker (id, listener_pid, listener_started) VALUES (%s, 0, now())",
            [DEAD],
        )
        yield conn
        conn.execute("DELETE FROM beacon_stream_worker WHERE id = ANY(%s)", [[WORKER, DEAD]])
        _forget_slots(conn)


def _forget_slots(conn: psycopg.Connection) -> None:
    """Every slot of ``TENANTS``, whichever worker holds it."""
    for table in ("beacon_slot_tenant", "beacon_slot_recipient"):
        conn.execute(f"DELETE FROM {table} WHERE tenant_id = ANY(%s)", [list(TENANTS)])


ACQUIRE = st.tuples(st.sampled_from(TENANTS), st.sampled_from(["a", "b", "c"]))


@settings(max_examples=120, deadline=None)
@given(
    held=st.lists(st.tuples(ACQUIRE, st.booleans()), max_size=12),
    batch=st.lists(ACQUIRE, min_size=1, max_size=14),
    max_tenant=st.integers(0, 12),
    max_recipient=st.integers(0, 6),
)
def test_a_batch_is_decided_as_one_by_one_would(slot_db, held, batch, max_tenant, max_recipient) -> None:
    """Slots already held (some by a dead worker, which do not count), then a batch: the answers and the
    counts left are those of deciding each acquisition in order, whether the batch fits (set-based path)
    or not (the loop)."""
    _forget_slots(slot_db)
    for (tenant, recipient), live in held:
        worker = WORKER if live else DEAD
        slot_db.execute(
            "INSERT INTO beacon_slot_tenant VALUES (%s, %s, 1) ON CONFLICT (tenant_id, worker) "
            "DO UPDATE SET count = beacon_slot_tenant.count + 1",
            [tenant, worker],
        )
        slot_db.execute(
            "INSERT INTO beacon_slot_recipient VALUES (%s, %s, %s, 1) ON CONFLICT (tenant_id, recipient, worker) "
            "DO UPDATE SET count = beacon_slot_recipient.count + 1",
            [tenant, recipient, worker],
        )
    used_t = Counter(t for (t, _), live in held if live)
    used_r = Counter(key for key, live in held if live)
    expected = []
    for tenant, recipient in batch:  # the model: one by one, in order
        if used_t[tenant] >= max_tenant:
            expected.append("tenant")
        elif used_r[tenant, recipient] >= max_recipient:
            expected.append("recipient")
        else:
            used_t[tenant] += 1
            used_r[tenant, recipient] += 1
            expected.append("ok")
    (answers,) = slot_db.execute(
        "SELECT beacon_slots(%s, '{}', '{}', %s::bigint[], %s::text[], %s::integer[], %s::integer[])",
        [
            WORKER,
            pgarray.literal(t for t, _ in batch),
            pgarray.literal(r for _, r in batch),
            pgarray.literal([max_tenant] * len(batch)),
            pgarray.literal([max_recipient] * len(batch)),
        ],
    ).fetchone()
    assert answers == expected
    counts = dict(
        slot_db.execute(
            "SELECT tenant_id, count FROM beacon_slot_tenant WHERE worker = %s AND tenant_id = ANY(%s)",
            [WORKER, list(TENANTS)],
        ).fetchall()
    )
    assert {t: n for t, n in counts.items() if n} == {t: n for t, n in used_t.items() if n}
    recipients = {
        (t, r): n
        for t, r, n in slot_db.execute(
            "SELECT tenant_id, recipient, count FROM beacon_slot_recipient WHERE worker = %s "
            "AND tenant_id = ANY(%s)",
            [WORKER, list(TENANTS)],
        ).fetchall()
    }
    assert {k: n for k, n in recipients.items() if n} == {k: n for k, n in used_r.items() if n}


# --- a connect's opening reads ride in its slot's statement --------------------------------------------------


def _insert(
    conn: psycopg.Connection, schema: str, recipient: str, expires: str = "1 day", read: bool = False
):
    conn.execute(
        f'INSERT INTO "{schema}".beacon_notification (recipient, broadcast, data, created_at, expires_at, '
        "read_at) VALUES (%s, false, '{}', now(), now() + %s::interval, CASE WHEN %s THEN now() END)",
        [recipient, expires, read],
    )


def _one_batch(
    worker: str, first: tuple[int, str], then: list[tuple[int, str, str | None]]
) -> tuple[list, int]:
    """On a pool of its own, worker ``worker`` acquires ``first`` (limits 100), then releases it while the
    acquisitions ``then`` (tenant id, recipient, schema to read in or ``None``) are queued: they share the next
    statement. Registers ``worker`` first (an idle connection of its own stands for it) and returns the answers to
    ``then`` and the number of statements sent after the registration."""
    import asyncio

    from psycopg_pool import AsyncConnectionPool

    from service.streaming.slots import Slots

    url = os.environ["BEACON_TEST_DATABASE_URL"]

    async def run() -> tuple[list, int]:
        async with (
            AsyncConnectionPool(url, min_size=1, max_size=1, kwargs={"autocommit": True}) as pool,
            await psycopg.AsyncConnection.connect(url, autocommit=True) as liveness,
        ):
            slots = Slots(pool, worker, interval=0.05)
            assert await slots.register(liveness.info.backend_pid)  # a worker takes slots only while live
            registered = slots.batcher.statements
            await slots.acquire(*first, 100, 100)  # one in flight: the next ones share a batch
            slots.release(*first)
            answers = await asyncio.gather(
                *(slots.acquire(tenant, recipient, 100, 100, schema) for tenant, recipient, schema in then)
            )
            await slots.close()
            return list(answers), slots.batcher.statements - registered

    return asyncio.run(run())


def _forget_worker(conn: psycopg.Connection, worker: str) -> None:
    for table in ("beacon_slot_tenant", "beacon_slot_recipient"):
        conn.execute(f"DELETE FROM {table} WHERE worker = %s", [worker])
    conn.execute("DELETE FROM beacon_stream_worker WHERE id = %s", [worker])


def test_opening_reads_in_the_slot_statement_are_each_tenants_own(make_tenant) -> None:
    """One batch with two tenants' connects for the same recipient id (and a release, and a connect without
    reads): each answer carries its own tenant's newest and oldest ids and unread count, as read directly;
    an empty tenant gives ``(0, None, 0)``. One statement for the whole batch."""
    from service.streaming.slots import Opening

    (acme, _), (globex, _), (empty, _) = make_tenant(), make_tenant(), make_tenant()
    worker = f"test-{unique()}"
    with psycopg.connect(os.environ["BEACON_TEST_DATABASE_URL"], autocommit=True) as conn:
        for schema, rows in ((acme.schema_name, 3), (globex.schema_name, 5)):
            for i in range(rows):  # per tenant: "u" has rows - 2 unread (one read, one expired), "v" one
                _insert(conn, schema, "u", expires="-1 day" if i == 0 else "1 day", read=i == 1)
            _insert(conn, schema, "v")

        def direct(schema: str, recipient: str) -> tuple[int, int | None, int]:
            newest, oldest = conn.execute(
                f'SELECT max(id), min(id) FROM "{schema}".beacon_notification'
            ).fetchone()
            (unread,) = conn.execute(
                f'SELECT count(*) FROM "{schema}".beacon_notification WHERE recipient = %s '
                "AND read_at IS NULL AND expires_at > now()",
                [recipient],
            ).fetchone()
            return int(newest or 0), oldest, unread

        tenants = (acme, globex, empty)
        connects = [(t.id, r, t.schema_name) for t in tenants for r in ("u", "v", "w")]
        answers, statements = _one_batch(worker, (acme.id, "u"), [*connects, (globex.id, "u", None)])
        _forget_worker(conn, worker)
        expected = [Opening("ok", *direct(t.schema_name, r)) for t in tenants for r in ("u", "v", "w")]
        assert answers[:-1] == expected
        assert answers[-1] == Opening("ok")
        assert expected[0][3] == 1 and expected[3][3] == 3 and expected[6] == Opening("ok", 0, None, 0)
        assert statements == 2  # the first acquire, then the release with the ten connects


def test_a_tenant_whose_schema_is_gone_does_not_fail_the_others_in_its_batch(make_tenant) -> None:
    """A connect of a tenant just deleted (its schema dropped, the tenant still cached by the worker for a
    moment) shares a statement with another tenant's connect and a release: the statement does not fail, the
    other tenant gets its reads, the gone one reads nothing (``streaming/0004``), the release is applied."""
    from service.streaming.slots import Opening

    (kept, _), (gone, _) = make_tenant(), make_tenant()
    worker = f"test-{unique()}"
    with psycopg.connect(os.environ["BEACON_TEST_DATABASE_URL"], autocommit=True) as conn:
        _insert(conn, kept.schema_name, "u")
        (newest,) = conn.execute(f'SELECT max(id) FROM "{kept.schema_name}".beacon_notification').fetchone()
        conn.execute(f'DROP SCHEMA "{gone.schema_name}" CASCADE')
        answers, statements = _one_batch(
            worker, (kept.id, "u"), [(kept.id, "u", kept.schema_name), (gone.id, "u", gone.schema_name)]
        )
        held = conn.execute(
            "SELECT tenant_id, count FROM beacon_slot_tenant WHERE worker = %s ORDER BY tenant_id", [worker]
        ).fetchall()
        _forget_worker(conn, worker)
    assert answers == [Opening("ok", newest, newest, 1), Opening("ok", 0, None, 0)]
    assert statements == 2
    assert dict(held) == {kept.id: 1, gone.id: 1}  # 1 + 1 - 1 for the kept tenant: the release applied


def test_a_registration_keeps_the_slots_of_a_worker_that_is_only_momentarily_not_live(slot_db) -> None:
    """A database blip ends every worker's listener; the first to register again must not delete the others'
    slots while they reconnect (their streams are still open: they would stop counting for good). Only the
    slots of a worker that is forgotten (no registration row, or dead a day after it registered) go."""
    _forget_slots(slot_db)
    unknown = "hypothesis-unregistered-worker"
    for worker in (DEAD, unknown):
        slot_db.execute("INSERT INTO beacon_slot_tenant VALUES (%s, %s, 2)", [TENANTS[0], worker])
        slot_db.execute("INSERT INTO beacon_slot_recipient VALUES (%s, 'a', %s, 2)", [TENANTS[0], worker])

    def holders() -> set[str]:
        return {
            worker
            for (worker,) in slot_db.execute(
                "SELECT worker FROM beacon_slot_tenant WHERE tenant_id = %s UNION "
                "SELECT worker FROM beacon_slot_recipient WHERE tenant_id = %s",
                [TENANTS[0], TENANTS[0]],
            ).fetchall()
        }

    slot_db.execute("SELECT beacon_register_worker(%s, pg_backend_pid())", [WORKER])
    assert holders() == {DEAD}  # not live (its listener is reconnecting), registered: kept
    slot_db.execute(
        "UPDATE beacon_stream_worker SET seen_at = now() - interval '2 days' WHERE id = %s", [DEAD]
    )
    slot_db.execute("SELECT beacon_register_worker(%s, pg_backend_pid())", [WORKER])
    assert holders() == set()  # forgotten a day after it registered, not live: its slots go with it
    slot_db.execute(
        "INSERT INTO beacon_stream_worker (id, listener_pid, listener_started) VALUES (%s, 0, now())", [DEAD]
    )


# --- a worker that is not live takes nothing; a registration rewrites its rows (streaming/0006) --------------


def _rows(conn: psycopg.Connection, worker: str) -> tuple[dict[int, int], dict[tuple[int, str], int]]:
    """``worker``'s slot rows of ``TENANTS``: per tenant, and per (tenant, recipient)."""
    tenants = conn.execute(
        "SELECT tenant_id, count FROM beacon_slot_tenant WHERE worker = %s AND tenant_id = ANY(%s)",
        [worker, list(TENANTS)],
    ).fetchall()
    recipients = conn.execute(
        "SELECT tenant_id, recipient, count FROM beacon_slot_recipient WHERE worker = %s "
        "AND tenant_id = ANY(%s)",
        [worker, list(TENANTS)],
    ).fetchall()
    return dict(tenants), {(t, r): n for t, r, n in recipients}


def _hold(conn: psycopg.Connection, worker: str, tenant: int, recipient: str, count: int) -> None:
    conn.execute(
        "INSERT INTO beacon_slot_tenant VALUES (%s, %s, %s) ON CONFLICT (tenant_id, worker) "
        "DO UPDATE SET count = beacon_slot_tenant.count + excluded.count",
        [tenant, worker, count],
    )
    conn.execute(
        "INSERT INTO beacon_slot_recipient VALUES (%s, %s, %s, %s)", [tenant, recipient, worker, count]
    )


def test_a_worker_that_is_not_live_is_granted_nothing_and_its_releases_still_apply(slot_db) -> None:
    """A batch of a worker whose liveness backend is gone answers ``not_live`` to every acquisition, even one
    that every limit allows (its grant would count for no worker), and still applies the batch's releases;
    the same batch from a live worker is granted. Two tenants, the same recipient id."""
    _forget_slots(slot_db)
    _hold(slot_db, DEAD, TENANTS[0], "a", 2)
    batch = [
        DEAD,
        pgarray.literal([TENANTS[0]]),
        pgarray.literal(["a"]),
        pgarray.literal([TENANTS[0], TENANTS[1]]),
        pgarray.literal(["a", "a"]),
        pgarray.literal([100, 100]),
        pgarray.literal([100, 100]),
    ]
    statement = (
        "SELECT beacon_slots(%s, %s::bigint[], %s::text[], %s::bigint[], %s::text[], %s::integer[], "
        "%s::integer[])"
    )
    (answers,) = slot_db.execute(statement, batch).fetchone()
    assert answers == ["not_live", "not_live"]
    assert _rows(slot_db, DEAD) == ({TENANTS[0]: 1}, {(TENANTS[0], "a"): 1})  # the release applied, no grant
    (answers,) = slot_db.execute(statement, [WORKER, "{}", "{}", *batch[3:]]).fetchone()
    assert answers == ["ok", "ok"]
    assert _rows(slot_db, WORKER) == (
        {TENANTS[0]: 1, TENANTS[1]: 1},
        {(TENANTS[0], "a"): 1, (TENANTS[1], "a"): 1},
    )
    _forget_slots(slot_db)


def test_a_registration_rewrites_the_workers_rows_from_its_streams(slot_db) -> None:
    """``beacon_register_worker`` with counts replaces every row of the registering worker by the counts
    given (rows that were too high, too low, or missing alike), per tenant and per (tenant, recipient) with
    the same recipient id in two tenants kept apart; another worker's rows are untouched; it answers whether
    the worker is live (``false`` for a backend already gone, and its rows are still rewritten)."""
    _forget_slots(slot_db)
    _hold(slot_db, WORKER, TENANTS[0], "a", 7)  # history: too high
    _hold(slot_db, WORKER, TENANTS[0], "stale", 1)  # a stream long gone
    _hold(slot_db, DEAD, TENANTS[1], "a", 2)
    register = "SELECT beacon_register_worker(%s, %s, %s::bigint[], %s::text[], %s::integer[])"
    counts = [
        pgarray.literal([TENANTS[0], TENANTS[1], TENANTS[0]]),
        pgarray.literal(["a", "a", "b"]),
        pgarray.literal([2, 3, 1]),
    ]
    (pid,) = slot_db.execute("SELECT pg_backend_pid()").fetchone()
    (live,) = slot_db.execute(register, [WORKER, pid, *counts]).fetchone()
    assert live is True
    assert _rows(slot_db, WORKER) == (
        {TENANTS[0]: 3, TENANTS[1]: 3},
        {(TENANTS[0], "a"): 2, (TENANTS[1], "a"): 3, (TENANTS[0], "b"): 1},
    )
    assert _rows(slot_db, DEAD) == ({TENANTS[1]: 2}, {(TENANTS[1], "a"): 2})
    (live,) = slot_db.execute(register, [WORKER, pid, "{}", "{}", "{}"]).fetchone()
    assert live is True and _rows(slot_db, WORKER) == ({}, {})  # no open streams: no rows
    # A registration older than a day, deleted with its rows by another's registration after a restart,
    # comes back with its counts when the worker registers again (its backend gone: not live yet).
    slot_db.execute(
        "UPDATE beacon_stream_worker SET seen_at = now() - interval '2 days' WHERE id = %s", [DEAD]
    )
    slot_db.execute(register, [WORKER, pid, "{}", "{}", "{}"])
    assert _rows(slot_db, DEAD) == ({}, {})
    (live,) = slot_db.execute(register, [DEAD, 0, *counts]).fetchone()
    assert live is False
    assert _rows(slot_db, DEAD)[1] == {(TENANTS[0], "a"): 2, (TENANTS[1], "a"): 3, (TENANTS[0], "b"): 1}
    slot_db.execute(
        "INSERT INTO beacon_stream_worker (id, listener_pid, listener_started) VALUES (%s, 0, now()) "
        "ON CONFLICT (id) DO NOTHING",
        [DEAD],
    )
    _forget_slots(slot_db)
