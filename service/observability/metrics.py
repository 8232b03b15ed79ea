"""Beacon's Prometheus metrics (names start with ``beacon_``).

Under gunicorn, ``PROMETHEUS_MULTIPROC_DIR`` is set before workers start, so every worker writes its
samples to shared files and the metrics server in the master aggregates them. Gauges use ``livesum`` so a
dead worker's streams leave the total as soon as the master marks it dead.
"""

from __future__ import annotations

import threading

from django.conf import settings
from prometheus_client import Counter, Gauge, Histogram

CONNECTIONS = Gauge("beacon_connections", "Open SSE streams.", ["tenant"], multiprocess_mode="livesum")
CONNECTIONS_OPENED = Counter("beacon_connections_opened_total", "SSE streams accepted.", ["tenant"])
CONNECTIONS_REJECTED = Counter(
    "beacon_connections_rejected_total", "SSE stream requests refused, by reason.", ["reason"]
)
CONNECTIONS_CLOSED = Counter("beacon_connections_closed_total", "SSE streams ended, by reason.", ["reason"])
NOTIFICATIONS_INGESTED = Counter(
    "beacon_notifications_ingested_total", "Notifications stored (rows).", ["tenant"]
)
EVENTS_DELIVERED = Counter(
    "beacon_events_delivered_total", "Notification events written to streams.", ["tenant"]
)
DELIVERY_LATENCY = Histogram(
    "beacon_delivery_latency_seconds",
    "From the publishing transaction's announcement (just before commit) to the socket write.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
REPLAYED_EVENTS = Counter(
    "beacon_replayed_events_total", "Events sent from the database on resume.", ["tenant"]
)
RESETS = Counter("beacon_resets_total", "beacon.reset events sent, by reason.", ["reason"])
HEARTBEATS = Counter("beacon_heartbeats_total", "Heartbeat comments written.")
SLOW_CONSUMER_DISCONNECTS = Counter(
    "beacon_slow_consumer_disconnects_total", "Streams closed because the client did not keep up."
)
LISTENER_RECONNECTS = Counter(
    "beacon_listener_reconnects_total", "Times the LISTEN connection was re-established."
)
LISTENER_CONNECTED = Gauge(
    "beacon_listener_connected",
    "1 while this worker's broker subscription (LISTEN or Redis) is up.",
    multiprocess_mode="liveall",
)
BROKER_GAP_FILLS = Counter(
    "beacon_broker_gap_fills_total",
    "Times a worker read missing ids from the database: a hole before an announcement, or a periodic check.",
    ["cause"],
)
BROKER_PUBLISH_FAILURES = Counter(
    "beacon_broker_publish_failures_total",
    "Announcements a broker outside PostgreSQL could not send after commit (rows are stored; streams catch up).",
)
READY = Gauge(
    "beacon_ready",
    "1 while this worker is ready (database, listener, not draining).",
    multiprocess_mode="liveall",
)
HTTP_REQUESTS = Counter(
    "beacon_http_requests_total", "HTTP requests by route and status.", ["route", "method", "status"]
)

_seen_tenants: set[str] = set()
_seen_lock = threading.Lock()


def tenant_label(slug: str) -> str:
    """The tenant's label value, or ``other`` past the cap (``METRICS_TENANT_LABEL_LIMIT`` per process)."""
    if not settings.METRICS_TENANT_LABELS:
        return "all"
    if slug in _seen_tenants:
        return slug
    with _seen_lock:
        if len(_seen_tenants) < settings.METRICS_TENANT_LABEL_LIMIT:
            _seen_tenants.add(slug)
            return slug
    return "other"
