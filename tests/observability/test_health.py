"""``/healthz`` and ``/readyz`` on a real server; readiness fails, naming the listener, while it is down."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.observability.helpers import OwnDatabase, scrape, total, wait_for
from tests.support import Server

CONSECUTIVE = 6  # answers in a row, so that every worker (each request lands on either) has answered


def _in_a_row(url: str, check: Callable[[httpx.Response], bool]) -> Callable[[], dict[str, Any] | None]:
    def probe() -> dict[str, Any] | None:
        body: dict[str, Any] = {}
        for _ in range(CONSECUTIVE):
            response = httpx.get(url, timeout=5)
            if not check(response):
                return None
            body = response.json()
        return body

    return probe


def _per_worker(srv: Server, name: str) -> list[float]:
    """The values of a per-worker (``liveall``) gauge, one per live worker."""
    return sorted(value for _, value in scrape(srv.metrics_port).get(name, ()))


def test_healthz_and_readyz_are_ok_on_a_healthy_server(server: Server) -> None:
    assert httpx.get(f"{server.url}/healthz", timeout=5).json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/readyz", timeout=5)
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready"
    assert (body["checks"]["database"], body["checks"]["listener"], body["checks"]["draining"]) == (
        "ok",
        "ok",
        "no",
    )


def test_readyz_names_the_listener_while_it_is_down_and_recovers(
    own_database: OwnDatabase, start_server: Callable[..., Server]
) -> None:
    srv = start_server(workers=2, DATABASE_URL=own_database.url)
    readyz = f"{srv.url}/readyz"
    wait_for(lambda: _per_worker(srv, "beacon_ready") == [1.0, 1.0], message="both workers ready")

    # Keep the listeners from reconnecting (connections already open, like the stream pool's, stay).
    own_database.refuse_connections()
    try:
        assert own_database.terminate("query = 'LISTEN beacon'") == 2  # one listener per worker

        def listener_down(response: httpx.Response) -> bool:
            return response.status_code == 503 and response.json()["checks"]["listener"] == "down"

        body = wait_for(_in_a_row(readyz, listener_down), message="readyz to report the listener down")
        assert body["error"]["code"] == "not_ready"
        # With LISTEN/NOTIFY the listener's connection is also the worker's liveness one: no slots either.
        assert body["error"]["message"] == "failing: listener, slots"
        assert body["error"]["field"] == "listener"
        assert (body["checks"]["database"], body["checks"]["draining"]) == ("ok", "no")
        assert body["checks"]["slots"] == "down"
        assert httpx.get(f"{srv.url}/healthz", timeout=5).status_code == 200  # alive, only not ready
        wait_for(
            lambda: (
                _per_worker(srv, "beacon_listener_connected") == [0.0, 0.0]
                and _per_worker(srv, "beacon_ready") == [0.0, 0.0]
            ),
            message="both workers to report their listener down in the metrics",
        )
    finally:
        own_database.allow_connections()

    # The listeners reconnect with backoff (at most 5 s, jittered); then every worker is ready again.
    wait_for(
        lambda: (
            _per_worker(srv, "beacon_listener_connected") == [1.0, 1.0]
            and _per_worker(srv, "beacon_ready") == [1.0, 1.0]
        ),
        timeout=30,
        message="both listeners to reconnect",
    )
    body = wait_for(_in_a_row(readyz, lambda r: r.status_code == 200), message="readyz to answer 200 again")
    assert body["checks"]["listener"] == "ok"
    assert total(scrape(srv.metrics_port), "beacon_listener_reconnects_total") >= 2


def test_readyz_reads_draining_once_so_a_sigterm_during_its_ping_gives_one_answer() -> None:
    """A SIGTERM landing while ``/readyz`` pings the database: the answer is ready (the state before) or
    draining in both places, never "failing: draining" beside ``"draining": "no"`` (in-process)."""
    import asyncio
    import json
    from types import SimpleNamespace

    from service.streaming.app import BeaconApp

    class Hub:
        def __len__(self) -> int:
            return 0

        def key_count(self) -> int:
            return 0

    async def ping() -> None:
        runtime.draining = True  # the signal's callback ran while the ping was in flight

    runtime = SimpleNamespace(
        draining=False,
        listener_connected=True,
        slots_live=True,
        open_streams=0,
        hub=Hub(),
        store=SimpleNamespace(ping=ping),
    )
    app = BeaconApp(None)
    app.runtime = runtime  # type: ignore[assignment]
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app._ready(send))
    body = json.loads(sent[1]["body"])
    assert sent[0]["status"] == 503
    assert body["checks"]["draining"] == "yes" and body["error"]["field"] == "draining", body
