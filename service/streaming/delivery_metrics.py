"""Delivery metrics of a whole loop tick recorded at once: a broadcast to 20,000 streams is 20,000 writes,
and one counter increment plus one histogram observation per write (each a locked mmap write in multiprocess
mode) would cost more than the writes. Streams add to plain in-memory tallies; the first addition of a tick
schedules one flush (``loop.call_soon``), which increments each counter once and each histogram bucket once.
"""

from __future__ import annotations

import asyncio
import bisect
from collections import Counter
from typing import Any

from service.observability import metrics

_delivered: Counter[str] = Counter()  # tenant label -> events written this tick
_latencies: list[float] = []  # seconds from announcement to write, this tick
_heartbeats = 0
_scheduled = False


def delivered(label: str, count: int, latencies: list[float]) -> None:
    """``count`` events of tenant ``label`` written now; ``latencies``: seconds since their announcement,
    for those that have an announce time (replayed and filled events have none)."""
    global _scheduled
    _delivered[label] += count
    _latencies.extend(latencies)
    if not _scheduled:
        _scheduled = True
        asyncio.get_running_loop().call_soon(flush)


def heartbeat() -> None:
    global _heartbeats, _scheduled
    _heartbeats += 1
    if not _scheduled:
        _scheduled = True
        asyncio.get_running_loop().call_soon(flush)


def flush() -> None:
    global _heartbeats, _scheduled
    _scheduled = False
    for label, count in _delivered.items():
        metrics.EVENTS_DELIVERED.labels(label).inc(count)
    _delivered.clear()
    if _heartbeats:
        metrics.HEARTBEATS.inc(_heartbeats)
        _heartbeats = 0
    if _latencies:
        observe_many(metrics.DELIVERY_LATENCY, _latencies)
        _latencies.clear()


def observe_many(histogram: Any, samples: list[float]) -> None:
    """``histogram.observe(s)`` for every sample, with one increment per bucket and one for the sum (the
    client has no batch API; without its internals this falls back to one observation per sample)."""
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for sample in samples:
            histogram.observe(sample)
        return
    per_bucket: Counter[int] = Counter(bisect.bisect_left(bounds, sample) for sample in samples)
    for index, count in per_bucket.items():
        if index < len(buckets):
            buckets[index].inc(count)
    total.inc(sum(samples))
