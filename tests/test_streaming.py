"""GET /v1/stream on a real gunicorn + uvicorn server, read with a real SSE parser (httpx-sse)."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import jwt
import pytest
from django.db import connection
from django_tenants.utils import schema_context

from service.notifications.models import Notification
from tests import support
from tests.observability.helpers import scrape, total
from tests.support import Api, CheckedThread, sse_stream, take, unique, wait_until


def test_delivery_shape_and_headers(acme: Api):
    user = unique()
    token = acme.token(user)
    with (
        httpx.Client(base_url=acme.base_url, timeout=10) as client,
        client.stream("GET", "/v1/stream", headers={"Authorization": f"Bearer {token}"}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache, no-store"
        assert response.headers["x-accel-buffering"] == "no"
        lines = response.iter_lines()
        first = next(lines)
        assert first.startswith("retry: ") and 1000 <= int(first.split(": ")[1]) <= 5000
        stored = acme.publish_ok({"recipient": user, "event": "invoice.paid", "data": {"amount": 12}})
        plain = acme.publish_ok({"recipient": user, "data": [1, 2]})
        blocks: list[list[str]] = []
        block: list[str] = []
        for line in lines:
            if line:
                block.append(line)
            elif block:
                if block[0].startswith("id:"):
                    blocks.append(block)
                block = []
                if len(blocks) == 2:
                    break
    named, unnamed = blocks
    assert named[:2] == [f"id: {stored[0]['id']}", "event: invoice.paid"] and len(named) == 3
    payload = json.loads(named[2].removeprefix("data: "))
    assert payload == {
        "id": stored[0]["id"],
        "event": "invoice.paid",
        "data": {"amount": 12},
        "recipient": user,
        "topic": None,
        "created_at": stored[0]["created_at"],
    }
    # An event without a name has no event: line, so a plain onmessage handler receives it.
    assert unnamed[0] == f"id: {plain[0]['id']}" and len(unnamed) == 2 and unnamed[1].startswith("data: ")


def test_topics_and_broadcast_reach_matching_subscribers_only(acme: Api):
    user, topic = unique(), unique("team")
    token = acme.token(user, topics=[topic])
    with sse_stream(acme.base_url, token) as events:
        acme.publish_ok({"topic": unique("other"), "data": "no"})
        acme.publish_ok({"recipient": unique(), "data": "no"})
        acme.publish_ok({"topic": topic, "data": "team"})
        acme.publish_ok({"broadcast": True, "data": "all"})
        got = take(events, 2)
    assert [json.loads(e.data)["data"] for e in got] == ["team", "all"]


def test_same_recipient_in_two_tenants_gets_no_cross_tenant_event(acme: Api, globex: Api):
    user = unique()
    with (
        sse_stream(acme.base_url, acme.token(user)) as acme_events,
        sse_stream(globex.base_url, globex.token(user)) as globex_events,
    ):
        acme.publish_ok({"recipient": user, "data": "for acme"})
        acme.publish_ok({"broadcast": True, "data": "acme broadcast"})
        globex.publish_ok({"recipient": user, "data": "for globex"})
        assert [json.loads(e.data)["data"] for e in take(globex_events, 1)] == ["for globex"]
        assert [json.loads(e.data)["data"] for e in take(acme_events, 2)] == ["for acme", "acme broadcast"]


def test_replay_after_reconnect_with_header_and_query(acme: Api):
    user = unique()
    token = acme.token(user)
    with sse_stream(acme.base_url, token) as events:
        first = acme.publish_ok({"recipient": user, "data": 1})
        (seen,) = take(events, 1)
    assert seen.id == first[0]["id"]
    missed = [acme.publish_ok({"recipient": user, "data": i})[0]["id"] for i in range(2, 6)]
    with sse_stream(acme.base_url, token, last_event_id=seen.id) as events:
        replayed = take(events, 4)
        live = acme.publish_ok({"recipient": user, "data": 6})[0]["id"]
        (after,) = take(events, 1)
    assert [e.id for e in replayed] == missed and after.id == live
    # The query parameter works for a first connect; the header wins when both are present.
    with httpx.Client(base_url=acme.base_url, timeout=10) as client:
        from httpx_sse import connect_sse

        with connect_sse(client, "GET", f"/v1/stream?token={token}&last_event_id={missed[1]}") as source:
            assert [e.id for e in take(source.iter_sse(), 2)] == missed[2:4]
        with connect_sse(
            client, "GET", f"/v1/stream?token={token}&last_event_id=0", headers={"Last-Event-ID": missed[2]}
        ) as source:
            assert [e.id for e in take(source.iter_sse(), 1)] == [missed[3]]


def test_out_of_order_commits_are_resumed_without_loss_or_duplicates(start_server, make_tenant):
    """Eight concurrent publishers; a reader drops and resumes repeatedly. Every id arrives once, in order.

    The replay limit is raised so the publishers can never push the reader into a (by design lossy) reset.
    """
    srv = start_server(workers=2, REPLAY_LIMIT="100000")
    acme = Api(srv.url, make_tenant()[1])
    user = unique()
    token = acme.token(user)
    published: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()

    def publisher() -> None:
        with httpx.Client(base_url=acme.base_url, timeout=30) as client:
            while not stop.is_set():
                response = client.post(
                    "/v1/notifications", json={"recipient": user, "data": {}}, headers=acme.headers()
                )
                assert response.status_code == 201
                with lock:
                    published.append(int(response.json()["notifications"][0]["id"]))

    received: list[int] = []
    last: str | None = acme.publish_ok({"recipient": user})[0]["id"]  # the reader starts from here
    threads = [CheckedThread(publisher) for _ in range(8)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(12):  # twelve connections, each reading a few events then dropping
            with sse_stream(acme.base_url, token, last_event_id=last) as events:
                batch = [int(e.id) for e in take(events, 15)]
            assert batch == sorted(batch)
            received += batch
            last = str(batch[-1])
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    with sse_stream(acme.base_url, token, last_event_id=last) as events:
        expected_rest = sorted(i for i in published if i > int(last))
        if expected_rest:
            received += [int(e.id) for e in take(events, len(expected_rest))]
    assert len(received) == len(set(received)), "duplicates"
    assert sorted(received) == sorted(published), "a committed notification was lost"


def test_heartbeat_comments_while_idle(acme: Api):
    token = acme.token(unique())
    with (
        httpx.Client(base_url=acme.base_url, timeout=10) as client,
        client.stream("GET", "/v1/stream", headers={"Authorization": f"Bearer {token}"}) as response,
    ):
        pings = 0
        for line in response.iter_lines():
            if line == ": ping":
                pings += 1
                if pings == 2:
                    break
    assert pings == 2


def test_reset_when_too_far_behind_unknown_or_expired(acme: Api, tenant_pair):
    user = unique()
    token = acme.token(user)
    ids = [
        n["id"]
        for n in acme.publish({"notifications": [{"recipient": user} for _ in range(60)]}, batch=True).json()[
            "notifications"
        ]
    ]
    with sse_stream(acme.base_url, token, last_event_id=str(int(ids[0]) - 1)) as events:
        reset = take(events, 1, skip_control=False)[0]
        live = acme.publish_ok({"recipient": user})[0]["id"]
        after = take(events, 1)[0]
    assert reset.event == "beacon.reset" and reset.id == ""
    body = json.loads(reset.data)
    assert body["reason"] == "too_far_behind" and int(body["resume_from"]) >= int(ids[-1])
    assert after.id == live

    with sse_stream(acme.base_url, token, last_event_id="999999999") as events:
        reset = take(events, 1, skip_control=False)[0]
    assert reset.event == "beacon.reset" and json.loads(reset.data)["reason"] == "unknown_id"

    # Retention: rows below the client's position were purged.
    with schema_context(tenant_pair[0][0].schema_name):
        oldest = Notification.objects.order_by("id").first()
        assert oldest is not None
        Notification.objects.filter(id__lte=oldest.id + 1).delete()
        newest = Notification.objects.order_by("-id").first()
    with sse_stream(acme.base_url, token, last_event_id=str(oldest.id)) as events:
        reset = take(events, 1, skip_control=False)[0]
    assert newest is not None
    assert json.loads(reset.data) == {"reason": "expired", "resume_from": str(newest.id)}


def test_zero_means_everything_retained(acme: Api, make_tenant, server):
    _tenant, key = make_tenant()
    api = Api(server.url, key)
    user = unique()
    ids = [api.publish_ok({"recipient": user, "data": i})[0]["id"] for i in range(3)]
    with sse_stream(server.url, api.token(user), last_event_id="0") as events:
        assert [e.id for e in take(events, 3)] == ids


def test_token_expiry_sends_control_event_and_closes(acme: Api, server, tenant_pair):
    tenant = tenant_pair[0][0]
    exp = int(time.time()) + 2
    token = jwt.encode({"sub": unique(), "tid": "acme", "exp": exp}, tenant.signing_secret, "HS256")
    with sse_stream(server.url, token) as events:
        got = list(events)  # the server closes the stream after the control event
    control = [e for e in got if e.event == "beacon.token-expired"]
    assert len(control) == 1 and json.loads(control[0].data) == {"exp": exp} and control[0].id == ""


def test_unread_count_is_pushed_to_every_open_stream_of_the_recipient(acme: Api):
    user = unique()
    token = acme.token(user)
    with sse_stream(acme.base_url, token) as tab1, sse_stream(acme.base_url, token) as tab2:
        for tab in (tab1, tab2):  # the count at open comes first
            unread = next(e for e in tab if e.event == "beacon.unread")
            assert json.loads(unread.data) == {"unread": 0}
        (n,) = acme.publish_ok({"recipient": user})
        for tab in (tab1, tab2):
            unread = next(e for e in tab if e.event == "beacon.unread")
            assert json.loads(unread.data) == {"unread": 1}
        acme.client.post(f"/v1/inbox/{n['id']}/read", headers={"Authorization": f"Bearer {token}"})
        for tab in (tab1, tab2):
            unread = next(e for e in tab if e.event == "beacon.unread")
            assert json.loads(unread.data) == {"unread": 0}


def _status(url: str, **headers: str) -> tuple[int, dict]:
    with httpx.Client(timeout=10) as client, client.stream("GET", url, headers=headers) as response:
        if response.status_code == 200:
            return 200, {}
        return response.status_code, {"body": json.loads(response.read()), "headers": response.headers}


def test_refusals_before_any_stream_byte(acme: Api, server, tenant_pair):
    url = server.url + "/v1/stream"
    tenant = tenant_pair[0][0]
    token = acme.token(unique())
    cases = [
        ({}, 401, "unauthenticated"),
        ({"Authorization": "Bearer not.a.jwt"}, 401, "invalid_token"),
        (
            {
                "Authorization": "Bearer "
                + jwt.encode(
                    {"sub": "u", "tid": "acme", "exp": int(time.time()) - 1}, tenant.signing_secret, "HS256"
                )
            },
            401,
            "token_expired",
        ),
        ({"Authorization": f"Bearer {token}", "Host": "globex.localhost"}, 403, "tenant_mismatch"),
        ({"Authorization": f"Bearer {token}", "Origin": "https://evil.test"}, 403, "origin_not_allowed"),
        ({"Authorization": f"Bearer {token}", "Last-Event-ID": "abc"}, 400, "invalid_last_event_id"),
        ({"Authorization": f"Bearer {token}", "Last-Event-ID": "-1"}, 400, "invalid_last_event_id"),
    ]
    for headers, status, code in cases:
        got, info = _status(url, **headers)
        assert (got, info["body"]["error"]["code"]) == (status, code), headers
    # Token in the cookie works like the header; an allowed origin gets CORS headers.
    with (
        httpx.Client(timeout=10) as client,
        client.stream(
            "GET", url, headers={"Cookie": f"beacon_token={token}", "Origin": "https://app.acme.test"}
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://app.acme.test"
        assert response.headers["access-control-allow-credentials"] == "true"


def test_per_recipient_and_per_tenant_limits_hold_across_two_pods(start_server, make_tenant):
    """Two separate servers (pods) share the limits through PostgreSQL."""
    _tenant, key = make_tenant(max_connections=3, max_connections_per_recipient=2)
    pod_a, pod_b = start_server(workers=1), start_server(workers=1)
    api = Api(pod_a.url, key)
    user = unique()
    token = api.token(user)
    with sse_stream(pod_a.url, token), sse_stream(pod_b.url, token):
        status, info = _status(pod_a.url + "/v1/stream", Authorization=f"Bearer {token}")
        assert status == 429 and info["body"]["error"]["code"] == "too_many_connections"
        assert int(info["headers"]["retry-after"]) > 0
        with sse_stream(pod_b.url, api.token(unique())):
            status, info = _status(pod_a.url + "/v1/stream", Authorization=f"Bearer {api.token(unique())}")
            assert status == 429 and "tenant" in info["body"]["error"]["message"]
    # Closed streams give their slots back.
    wait_until(
        lambda: _status(pod_b.url + "/v1/stream", Authorization=f"Bearer {token}")[0] == 200,
        timeout=10,
        message="slots released",
    )


@pytest.mark.parametrize("window", ["20000", "0"])
def test_a_refused_slot_on_every_opening_path_holds_nothing(start_server, make_tenant, window):
    """The slot is taken after the stream joined the hub, on each path a stream opens by: a first connect,
    a resume from the replay window (``REPLAY_WINDOW_EVENTS`` on) and a resume from the database (off). A
    refusal is ``429`` in the error shape with ``Retry-After`` and no stream bytes, and it leaves nothing held:
    the worker's hub is as before, and once the open stream closes its recipient connects again."""
    _tenant, key = make_tenant(max_connections_per_recipient=1)
    srv = start_server(workers=1, REPLAY_WINDOW_EVENTS=window)
    api = Api(srv.url, key)
    user = unique()
    token = api.token(user)
    first = api.publish_ok({"recipient": user})[0]["id"]
    with sse_stream(srv.url, token, last_event_id="0") as events:
        assert take(events, 1)[0].id == first
        before = httpx.get(srv.url + "/readyz").json()["checks"]
        for extra in ({}, {"Last-Event-ID": first}, {"Last-Event-ID": "0"}):
            status, info = _status(srv.url + "/v1/stream", Authorization=f"Bearer {token}", **extra)
            assert status == 429 and info["body"]["error"]["code"] == "too_many_connections", extra
            assert int(info["headers"]["retry-after"]) > 0
        after = httpx.get(srv.url + "/readyz").json()["checks"]
        assert (after["subscriptions"], after["hub_keys"], after["streams"]) == (
            before["subscriptions"],
            before["hub_keys"],
            before["streams"],
        )
    with sse_stream(srv.url, token, last_event_id="0") as events:  # the slot came back
        assert take(events, 1)[0].id == first


def test_worker_capacity_is_503_over_capacity(start_server, acme: Api):
    srv = start_server(workers=1, WORKER_MAX_CONNECTIONS="1")
    with sse_stream(srv.url, acme.token(unique())):
        status, info = _status(srv.url + "/v1/stream", Authorization=f"Bearer {acme.token(unique())}")
    assert (
        status == 503 and info["body"]["error"]["code"] == "over_capacity" and info["headers"]["retry-after"]
    )


def test_slots_of_a_sigkilled_worker_come_back(start_server, make_tenant):
    import os
    import signal

    _tenant, key = make_tenant(max_connections_per_recipient=1)
    srv = start_server(workers=1)
    api = Api(srv.url, key)
    token = api.token(unique())
    held = socket.create_connection(("127.0.0.1", srv.port))
    held.sendall(f"GET /v1/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
    assert b"200" in held.recv(200)
    assert _status(srv.url + "/v1/stream", Authorization=f"Bearer {token}")[0] == 429
    (worker,) = srv.worker_pids()
    os.kill(worker, signal.SIGKILL)
    held.close()
    wait_until(
        lambda: _status(srv.url + "/v1/stream", Authorization=f"Bearer {token}")[0] == 200,
        timeout=60,
        interval=0.5,
        message="the killed worker's slot to come back",
    )


def test_max_connection_age_closes_and_client_resumes(start_server, acme: Api):
    """The server ends a stream at its maximum age; the client resumes from its Last-Event-ID and gets what
    was published while it was away, nothing twice."""
    srv = start_server(workers=1, MAX_CONNECTION_AGE_SECONDS="1")
    api = Api(srv.url, acme.key)
    user = unique()
    token = api.token(user)
    started = time.monotonic()
    with sse_stream(srv.url, token) as events:
        first = api.publish_ok({"recipient": user, "data": 1})[0]["id"]
        (got,) = take(events, 1)
        rest = take(events, 1)  # nothing more: the stream ends by itself within the (jittered) maximum age
    assert time.monotonic() - started < 10 and got.id == first and rest == []
    missed = [api.publish_ok({"recipient": user, "data": i})[0]["id"] for i in (2, 3)]
    with sse_stream(srv.url, token, last_event_id=got.id) as events:
        resumed = take(events, 2)
    assert [e.id for e in resumed] == missed
    assert [json.loads(e.data)["data"] for e in resumed] == [2, 3]


def test_dropped_streams_release_every_resource(start_server, make_tenant):
    """Open and drop a thousand streams; afterwards the hub, the slots and the worker's counters are empty."""
    tenant, key = make_tenant()
    srv = start_server(workers=1)
    api = Api(srv.url, key)
    tokens = [api.token(f"drop-{i % 50}", topics=[f"t{i % 7}"]) for i in range(50)]
    request = "GET /v1/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n"
    for round_ in range(5):
        sockets = []
        for i in range(200):
            sock = socket.create_connection(("127.0.0.1", srv.port))
            sock.sendall(request.format(tokens[(i + round_) % 50]).encode())
            sockets.append(sock)
        for sock in sockets:
            assert sock.recv(12).startswith(b"HTTP/1.1 200")
        checks = httpx.get(srv.url + "/readyz").json()["checks"]
        assert checks["streams"] == 200
        for sock in sockets:
            sock.close()

    def empty() -> bool:
        checks = httpx.get(srv.url + "/readyz").json()["checks"]
        return checks["streams"] == 0 and checks["subscriptions"] == 0 and checks["hub_keys"] == 0

    wait_until(empty, timeout=20, message="hub to be empty")

    def no_slots() -> bool:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT coalesce(sum(count), 0) FROM public.beacon_slot_tenant WHERE tenant_id = %s",
                [tenant.id],
            )
            return cursor.fetchone()[0] == 0

    wait_until(no_slots, timeout=20, message="slots released")


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_stream_requested_with_a_body_streams_and_ends_on_disconnect(server, acme: Api, framing: str):
    """A body sent with ``GET /v1/stream`` is read (within the 1 MiB limit: past it, 413, tests/test_hardening.py)
    and dropped before the stream starts; the stream then serves events, and closing the socket ends it."""
    user = unique()
    token = acme.token(user)
    piece = b"x" * 65536
    pieces = 12  # 768 KiB
    length = (
        f"Content-Length: {pieces * len(piece)}"
        if framing == "content-length"
        else "Transfer-Encoding: chunked"
    )
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.settimeout(10)
    try:
        sock.sendall(f"GET /v1/stream?token={token} HTTP/1.1\r\nHost: x\r\n{length}\r\n\r\n".encode())
        for _ in range(pieces):
            sock.sendall(piece if framing == "content-length" else b"10000\r\n" + piece + b"\r\n")
        if framing == "chunked":
            sock.sendall(b"0\r\n\r\n")
        head = b""
        while b"beacon.unread" not in head:
            head += sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 200")
        nid = acme.publish_ok({"recipient": user, "data": "after the body"})[0]["id"]
        got = b""
        while f"id: {nid}".encode() not in got:
            got += sock.recv(65536)
        assert b"after the body" in got
        before = _client_closes(server)
    finally:
        sock.close()
    wait_until(lambda: _client_closes(server) > before, timeout=10, message="the dropped stream to end")


def _client_closes(server) -> float:
    """Streams ended by their client's disconnect, over all workers (``/readyz`` is one worker's)."""
    return total(scrape(server.metrics_port), "beacon_connections_closed_total", reason="client")


def test_slow_consumer_is_cut_off_and_others_are_not_slowed(start_server, make_tenant):
    """A client that stops reading is cut off once a write to it blocks past STREAM_SEND_TIMEOUT_SECONDS: its
    connection is reset (a plain close would leave it open on both ends for as long as the client does not
    read), and the other streams are served meanwhile."""
    _tenant, key = make_tenant(max_payload_bytes=64 * 1024)
    srv = start_server(workers=1, STREAM_SEND_TIMEOUT_SECONDS="1", STREAM_QUEUE_SIZE="50")
    api = Api(srv.url, key)
    fast_user = unique("fast")
    with sse_stream(srv.url, api.token(fast_user)) as fast:
        slow = support.stalled_stream(srv.port, api)
        sent = api.publish_ok({"recipient": fast_user, "data": "still fast"})
        (event,) = take(fast, 1)
        assert event.id == sent[0]["id"]

    def slow_stream_closed() -> bool:
        checks = httpx.get(srv.url + "/readyz").json()["checks"]
        return checks["streams"] == 0

    wait_until(slow_stream_closed, timeout=20, message="the slow consumer to be disconnected")
    wait_until(
        lambda: support.connection_reset(slow), timeout=10, message="the slow consumer's connection reset"
    )
    slow.close()


def test_first_connect_gets_everything_committed_after_its_headers(start_server, make_tenant):
    """A notification published right after the 200 arrives (the start position is fixed before it).

    Twenty clients at once each connect and publish to themselves the moment the headers arrive, against a
    worker with a one-connection stream pool, so commits race the stream set-up; before the fix a good share
    of these notifications were dropped.
    """
    from concurrent.futures import ThreadPoolExecutor

    tenant, key = make_tenant()
    srv = start_server(workers=1, STREAM_DB_POOL_SIZE="1")
    acme = Api(srv.url, key)
    exp = int(time.time()) + 600
    port = srv.port

    def connect_and_publish(i: int) -> tuple[socket.socket, str]:
        user = unique(f"first-{i}")
        token = jwt.encode({"sub": user, "tid": tenant.slug, "exp": exp}, tenant.signing_secret, "HS256")
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(f"GET /v1/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
        sock.settimeout(5)
        assert sock.recv(15).startswith(b"HTTP/1.1 200")
        with httpx.Client(base_url=acme.base_url, timeout=30) as client:
            response = client.post(
                "/v1/notifications", json={"recipient": user, "data": i}, headers=acme.headers()
            )
        return sock, response.json()["notifications"][0]["id"]

    with ThreadPoolExecutor(max_workers=20) as pool:
        streams = list(pool.map(connect_and_publish, range(200)))
    lost = []
    for sock, wanted in streams:
        received = b""
        try:
            while f"id: {wanted}\n".encode() not in received:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        except TimeoutError:
            pass
        if f"id: {wanted}\n".encode() not in received:
            lost.append(wanted)
        sock.close()
    assert lost == []


def test_batches_and_large_bodies_arrive_live_intact(acme: Api):
    """Small rows ride in the NOTIFY payload; a large body makes it an id range fetched once per process."""
    user = unique()
    big = {"blob": "x" * 20_000, "n": "ü✓"}
    with sse_stream(acme.base_url, acme.token(user)) as events:
        small = acme.publish(
            {"notifications": [{"recipient": user, "event": "e.small", "data": {"i": i}} for i in range(3)]},
            batch=True,
        ).json()["notifications"]
        large = acme.publish_ok({"recipient": user, "event": "e.large", "data": big})
        got = take(events, 4)
    assert [e.id for e in got] == [n["id"] for n in small] + [large[0]["id"]]
    assert [json.loads(e.data)["data"] for e in got] == [{"i": 0}, {"i": 1}, {"i": 2}, big]
    assert [e.event for e in got] == ["e.small"] * 3 + ["e.large"]


def test_a_reading_client_takes_a_burst_larger_than_its_queue(start_server, make_tenant):
    """A burst of 50 to a stream whose queue holds 2: the stream's task is parked and its socket takes the
    frames, so the fan-out writes them itself (hub.py, ``Subscription.write_now``) instead of queueing them:
    a client that reads is never cut off as a slow consumer; every event arrives once, in order."""
    _tenant, key = make_tenant()
    srv = start_server(workers=1, STREAM_QUEUE_SIZE="2")
    api = Api(srv.url, key)
    user = unique()
    with sse_stream(srv.url, api.token(user)) as events:
        stored = api.publish(
            {"notifications": [{"recipient": user, "data": n} for n in range(50)]}, batch=True
        )
        assert stored.status_code == 201
        ids = [n["id"] for n in stored.json()["notifications"]]
        assert [event.id for event in take(events, 50)] == ids
        after = api.publish_ok({"recipient": user, "data": "after"})[0]["id"]
        assert take(events, 1)[0].id == after  # still open
