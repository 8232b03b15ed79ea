"""Worker lifecycle: SIGTERM drain, quick shutdown (SIGINT), listener loss and recovery, and zero queries from
idle streams."""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time

import httpx
import jwt
import psycopg
import pytest

from tests.support import (
    Api,
    CheckedThread,
    connection_reset,
    sse_stream,
    stalled_stream,
    take,
    unique,
    wait_until,
)


def _open_raw_stream(port: int, token: str, last_event_id: str | None = None) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    extra = f"Last-Event-ID: {last_event_id}\r\n" if last_event_id else ""
    sock.sendall(
        f"GET /v1/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n{extra}\r\n".encode()
    )
    head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 200"), head
    return sock


def test_sigterm_drains_streams_and_clients_resume_without_loss(start_server, make_tenant):
    _tenant, key = make_tenant()
    pod_a = start_server(workers=1, DRAIN_SECONDS="3")
    pod_b = start_server(workers=1, REPLAY_LIMIT="10000")
    api = Api(pod_b.url, key)
    user = unique()
    token = api.token(user)
    start_id = api.publish_ok({"recipient": user})[0]["id"]
    extra = [_open_raw_stream(pod_a.port, api.token(unique())) for _ in range(20)]  # to spread the drain over
    published: list[str] = []
    stop = threading.Event()

    def publish() -> None:
        while not stop.is_set():
            published.append(api.publish_ok({"recipient": user})[0]["id"])
            time.sleep(0.01)

    publisher = CheckedThread(publish)
    received: list[str] = []
    with sse_stream(pod_a.url, token, last_event_id=start_id) as events:
        publisher.start()
        received += [e.id for e in take(events, 3)]
        assert pod_a.process is not None
        pod_a.process.send_signal(signal.SIGTERM)

        # While draining: not ready, and new streams are refused with 503 draining. (The signal reaches the
        # worker through the master: a request sent at once can come first.)
        def not_ready() -> httpx.Response | None:
            answer = httpx.get(pod_a.url + "/readyz")
            return answer if answer.status_code == 503 else None

        ready = wait_until(not_ready, timeout=5, message="the worker to begin draining")
        assert ready.json()["checks"]["draining"] == "yes"
        refused = httpx.get(
            pod_a.url + "/v1/stream", headers={"Authorization": f"Bearer {api.token(unique())}"}
        )
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "draining"
        assert refused.headers["Retry-After"]
        for event in events:  # the server ends this stream within the drain window
            if event.id and event.event != "beacon.unread" and event.data:
                received.append(event.id)
    pod_a.process.wait(timeout=20)  # all within gunicorn's graceful_timeout
    assert pod_a.process.returncode == 0
    with sse_stream(pod_b.url, token, last_event_id=received[-1]) as events:
        time.sleep(0.2)
        stop.set()
        publisher.join()
        missing = [i for i in published if int(i) > int(received[-1])]
        received += [e.id for e in take(events, len(missing))] if missing else []
    for sock in extra:
        sock.close()
    duplicates = sorted({i for i in received if received.count(i) > 1}, key=int)
    assert not duplicates, duplicates[:20]
    assert received == sorted(received, key=int)
    assert set(published) <= set(received)


@pytest.mark.parametrize("ctrl_c", [False, True], ids=["sigint-to-the-master", "ctrl-c-to-the-group"])
def test_a_quick_shutdown_closes_streams_at_once_and_exits_cleanly(start_server, make_tenant, ctrl_c):
    """gunicorn's quick shutdown: SIGINT (or SIGQUIT) to the master, which sends SIGQUIT to its workers, and
    Ctrl-C in a terminal, which also reaches the workers. Every stream closes at once (not spread over
    DRAIN_SECONDS), a client that stopped reading has its connection aborted, each worker runs its lifespan
    shutdown (also one with no stream) and the master exits 0, long before ``graceful_timeout``
    (DRAIN_SECONDS + 10 s) would have it kill them: until then the workers ignored the master's SIGQUIT and
    served on until that SIGKILL."""
    _tenant, key = make_tenant(max_payload_bytes=64 * 1024)
    srv = start_server(workers=2, DRAIN_SECONDS="120", STREAM_SEND_TIMEOUT_SECONDS="120")
    api = Api(srv.url, key)
    streams = [_open_raw_stream(srv.port, api.token(unique())) for _ in range(6)]
    stalled = stalled_stream(srv.port, api)
    offset = srv.log_size()
    assert srv.process is not None
    if ctrl_c:
        os.killpg(srv.process.pid, signal.SIGINT)  # what the terminal does: SIGINT to the foreground group
    else:
        srv.process.send_signal(signal.SIGINT)
    assert srv.process.wait(timeout=60) == 0, srv.log_tail()
    for sock in streams:  # each was ended by the server (a clean end of the chunked body), not left open
        sock.settimeout(10)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        assert received.endswith(b"0\r\n\r\n"), received[-200:]
        sock.close()
    assert connection_reset(stalled)  # reset by the server: never read, so no clean end could arrive
    stalled.close()
    log = srv.log_text(offset)
    closed = [int(n) for n in re.findall(r"closing (\d+) streams at once", log)]
    assert len(closed) == 2 and sum(closed) == len(streams) + 1, log
    assert log.count("Application shutdown complete") == 2, log  # slots released, pools closed
    assert "SIGKILL" not in log and "was sent SIGINT" not in log and "was sent SIGQUIT" not in log, log
    assert "without completing response" not in log, log


def test_listener_killed_recovers_and_streams_catch_up(start_server, make_tenant):
    _tenant, key = make_tenant()
    srv = start_server(workers=1)
    api = Api(srv.url, key)
    user = unique()
    with sse_stream(srv.url, api.token(user)) as events:
        first = api.publish_ok({"recipient": user})[0]["id"]
        assert take(events, 1)[0].id == first
        with psycopg.connect(os.environ["BEACON_TEST_DATABASE_URL"], autocommit=True) as conn:
            killed = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'beacon-listener' AND datname = current_database()"
            ).fetchall()
            assert killed
            # Published while the listener is gone (or reconnecting): must still arrive, in order.
            during = [api.publish_ok({"recipient": user, "data": i})[0]["id"] for i in range(5)]
        assert [e.id for e in take(events, 5)] == during
        after = api.publish_ok({"recipient": user})[0]["id"]
        assert take(events, 1)[0].id == after
    wait_until(lambda: httpx.get(srv.url + "/readyz").status_code == 200, timeout=15, message="ready again")


def _beacon_backends(conn: psycopg.Connection, database: str) -> dict[int, tuple]:
    """Beacon's own backends in ``database`` (``application_name`` beacon-*): pid -> (state_change,
    xact_start, state). Any statement a backend runs moves its ``state_change`` (idle -> active -> idle)."""
    conn.execute("SELECT pg_stat_clear_snapshot()")
    rows = conn.execute(
        "SELECT pid, state_change, xact_start, state FROM pg_stat_activity "
        "WHERE datname = %s AND application_name LIKE 'beacon%%'",
        [database],
    ).fetchall()
    return {row[0]: tuple(row[1:]) for row in rows}


def test_idle_streams_cause_no_database_queries(start_server, make_tenant, django_db_setup):
    """500 open streams, heartbeats flowing: not one statement from this server's connections while they
    idle. Only this server's backends are watched (those that appeared when it started), so the work of
    other servers, the test process or autovacuum on a busy machine cannot make the test fail."""
    tenant, _key = make_tenant()
    database = django_db_setup
    watcher = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)  # another database: not counted
    others = set(_beacon_backends(watcher, database))
    srv = start_server(workers=2, HEARTBEAT_SECONDS="0.5")
    exp = int(time.time()) + 3600
    streams = [
        _open_raw_stream(
            srv.port,
            jwt.encode(
                {"sub": f"idle-{i}", "tid": tenant.slug, "exp": exp, "topics": ["news"]},
                tenant.signing_secret,
                "HS256",
            ),
        )
        for i in range(500)
    ]
    with watcher:

        def quiet() -> dict[int, tuple] | None:
            """This server's backends once none has run anything for a second (stream set-up is over)."""
            ours = {
                pid: info for pid, info in _beacon_backends(watcher, database).items() if pid not in others
            }
            now = watcher.execute("SELECT now()").fetchone()[0]
            busy = any(
                state != "idle" or (now - changed).total_seconds() < 1 for changed, _x, state in ours.values()
            )
            return None if busy or not ours else ours

        before = wait_until(quiet, timeout=30, interval=0.25, message="this server's connections to go idle")
        for sock in streams[:5]:  # heartbeats are flowing during the window
            sock.settimeout(5)
            assert b": ping" in sock.recv(65536) or b": ping" in sock.recv(65536)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            time.sleep(0.25)
        after = {pid: info for pid, info in _beacon_backends(watcher, database).items() if pid not in others}
        checks = httpx.get(srv.url + "/readyz").json()["checks"]
    for sock in streams:
        sock.close()
    assert len(before) >= 3, before  # each worker's listener and stream pool, and Django's connection
    changed = {pid: (before.get(pid), info) for pid, info in after.items() if before.get(pid) != info}
    assert not changed, f"Beacon connections ran statements while idle (or new ones opened): {changed}"
    # The worker that answered holds its share of the 500 streams, each with one subscription.
    assert checks["database"] == "ok" and checks["listener"] == "ok" and checks["draining"] == "no", checks
    assert 0 < checks["streams"] <= 500 and checks["subscriptions"] == checks["streams"], checks
