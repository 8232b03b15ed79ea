"""Batched slot accounting (``beacon_slots``) keeps the limits exact across servers under concurrent connects.

Two servers of two workers each (four workers, each batching its connects into one statement) receive many
connects at once for one tenant; exactly the tenant's limit is admitted, no recipient over its own, and every
slot comes back once the streams close. ``test_streaming.py`` covers the SIGKILLed worker's slots.
"""

from __future__ import annotations

import socket
import threading
from collections import Counter

from django.db import connection

from tests.observability.helpers import scrape, total
from tests.support import Api, unique, wait_until


def _open(port: int, token: str, results: list[tuple[str, int, socket.socket]], recipient: str) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(f"GET /v1/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
    status = int(sock.recv(12).split(b" ")[1])
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
    assert operations == 50 + 25 and 0 < statements < operations
