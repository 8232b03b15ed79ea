"""Prometheus metrics under a real gunicorn: aggregated over workers, dead workers leave live gauges."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.observability import metrics
from tests.observability.helpers import (
    RawStream,
    connections_by_pid,
    exported_metric_names,
    next_notification,
    open_stream,
    scrape,
    total,
    wait_for,
)
from tests.support import Api, Server, sse_stream, take, unique

MIN_STREAMS = 8
MAX_STREAMS = 48


def test_metrics_are_served_on_the_metrics_port_only(server: Server) -> None:
    public = httpx.get(f"{server.url}/metrics", timeout=5)
    assert public.status_code == 404
    assert b"beacon_" not in public.content
    private = httpx.get(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5)
    assert private.status_code == 200
    assert "beacon_http_requests_total" in private.text


def test_every_metric_is_named_beacon() -> None:
    names = exported_metric_names()
    assert names and all(name.startswith("beacon_") for name in names)


def test_connections_are_summed_over_workers_and_a_killed_worker_leaves_the_gauge(
    start_server: Callable[..., Server], make_tenant: Callable[..., tuple[Any, str]], tmp_path: Path
) -> None:
    srv = start_server(workers=2)
    multiproc = tmp_path / f"prom-{srv.port}"  # where tests.support.Server puts PROMETHEUS_MULTIPROC_DIR
    tenant, key = make_tenant()
    api = Api(srv.url, key)
    streams: list[tuple[str, RawStream]] = []
    try:
        # Open streams until both workers hold some (the kernel decides who accepts each connection).
        while True:
            recipient = unique()
            streams.append((recipient, open_stream(srv.url, api.token(recipient))))
            per_pid = connections_by_pid(multiproc, tenant.slug)
            holders = [pid for pid, count in per_pid.items() if count > 0]
            if len(streams) >= MIN_STREAMS and len(holders) >= 2:
                break
            assert len(streams) < MAX_STREAMS, f"all {len(streams)} streams landed on one worker: {per_pid}"
        opened = len(streams)
        assert sum(per_pid.values()) == opened
        assert set(holders) <= set(srv.worker_pids())

        for recipient, _ in streams:
            api.publish_ok({"recipient": recipient, "data": {"n": 1}})
        for _, stream in streams:
            next_notification(stream.events)

        def delivered() -> dict[str, Any] | None:
            samples = scrape(srv.metrics_port)
            ok = (
                total(samples, "beacon_connections", tenant=tenant.slug) == opened
                and total(samples, "beacon_connections_opened_total", tenant=tenant.slug) == opened
                and total(samples, "beacon_notifications_ingested_total", tenant=tenant.slug) == opened
                and total(samples, "beacon_events_delivered_total", tenant=tenant.slug) == opened
                and total(samples, "beacon_delivery_latency_seconds_count") == opened
            )
            return samples if ok else None

        samples = wait_for(delivered, message="metrics to show every stream and delivery")
        buckets = samples["beacon_delivery_latency_seconds_bucket"]
        assert max(value for labels, value in buckets if labels["le"] == "+Inf") == opened
        assert total(samples, "beacon_delivery_latency_seconds_sum") > 0
        assert total(samples, "beacon_http_requests_total", route="/v1/notifications", status="201") >= opened

        victim = holders[0]
        lost = per_pid[victim]
        os.kill(victim, signal.SIGKILL)
        wait_for(
            lambda: (
                total(scrape(srv.metrics_port), "beacon_connections", tenant=tenant.slug) == opened - lost
            ),
            message=f"the killed worker's {lost} streams to leave beacon_connections",
        )
        # Counters keep what the dead worker counted: they never go backwards.
        after = scrape(srv.metrics_port)
        assert total(after, "beacon_events_delivered_total", tenant=tenant.slug) == opened
        wait_for(
            lambda: len(srv.worker_pids()) == 2 and victim not in srv.worker_pids(),
            message="gunicorn to replace the killed worker",
        )
    finally:
        for _, stream in streams:
            stream.close()


def test_tenant_labels_are_capped_and_can_be_turned_off(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    monkeypatch.setattr(metrics, "_seen_tenants", set())
    settings.METRICS_TENANT_LABELS = True
    settings.METRICS_TENANT_LABEL_LIMIT = 2
    assert [metrics.tenant_label(slug) for slug in ("a", "b", "c", "a", "d")] == [
        "a",
        "b",
        "other",
        "a",
        "other",
    ]
    settings.METRICS_TENANT_LABELS = False
    assert metrics.tenant_label("a") == "all"


def test_replay_reset_heartbeat_rejection_and_slow_consumer_counters(
    start_server: Callable[..., Server], make_tenant: Callable[..., tuple[Any, str]]
) -> None:
    # A client that stops reading: its socket fills, writes wait, and the small queue then overflows.
    srv = start_server(workers=1, STREAM_QUEUE_SIZE="2", STREAM_SEND_TIMEOUT_SECONDS="1")
    tenant, key = make_tenant(max_payload_bytes=64 * 1024)
    api = Api(srv.url, key)
    user = unique()
    token = api.token(user)
    first, _, third = (api.publish_ok({"recipient": user, "data": {"n": n}})[0]["id"] for n in range(3))

    def counted(name: str, expected: float, **labels: str) -> None:
        wait_for(
            lambda: total(scrape(srv.metrics_port), name, **labels) == expected,
            message=f"{name}{labels} == {expected}",
        )

    # Resume after the first: the other two come from the database.
    with sse_stream(srv.url, token, last_event_id=first) as events:
        assert [event.id for event in take(events, 2)] == [str(int(first) + 1), third]
        counted("beacon_replayed_events_total", 2, tenant=tenant.slug)
        # Silence: HEARTBEAT_SECONDS is 1 in the test servers.
        wait_for(
            lambda: total(scrape(srv.metrics_port), "beacon_heartbeats_total") >= 1, message="a heartbeat"
        )
    counted("beacon_connections_closed_total", 1, reason="client")

    with sse_stream(srv.url, token, last_event_id=str(int(third) + 1000)) as events:
        (reset,) = take(events, 1, skip_control=False)
        assert reset.event == "beacon.reset"
        counted("beacon_resets_total", 1, reason="unknown_id")

    refused = httpx.get(f"{srv.url}/v1/stream", params={"token": "not-a-token"}, timeout=5)
    assert refused.status_code == 401
    counted("beacon_connections_rejected_total", 1, reason="invalid_token")

    stream = socket.create_connection(("127.0.0.1", srv.port))
    try:
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stream.sendall(
            f"GET /v1/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        )
        assert b"200" in stream.recv(100)
        burst = [{"recipient": user, "data": "x" * 60_000}] * 20
        for _ in range(5):  # then it reads nothing
            assert api.publish({"notifications": burst}, batch=True).status_code == 201
        counted("beacon_slow_consumer_disconnects_total", 1)
        counted("beacon_connections_closed_total", 1, reason="slow_consumer")
    finally:
        stream.close()
    counted("beacon_connections", 0, tenant=tenant.slug)
