"""One ticker per worker: ``: ping`` for every stream silent for ``HEARTBEAT_SECONDS``, and a wake-up for
every stream whose deadline (token expiry, maximum age) has passed, and an interruption for every write blocked
past ``STREAM_SEND_TIMEOUT_SECONDS``: streams arm no timers of their own (at most one tick late)."""

from __future__ import annotations

import asyncio
import time

from service.streaming import delivery_metrics, sse
from service.streaming.dispatch import deliver
from service.streaming.hub import Hub, Item


async def run_heartbeats(hub: Hub, interval: float) -> None:
    """Queue ``: ping`` for every stream silent for ``interval`` seconds: one timer per worker, not one
    per stream (at 10k streams, re-arming per-stream timers was most of the idle CPU)."""
    tick = min(1.0, interval / 4)
    ping = Item(None, sse.PING)
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(tick)
        now = time.monotonic()
        due = now - interval
        deadline_passed = loop.time()
        for sub in hub.subscriptions():
            if sub.last_write <= due:
                sub.last_write = now  # counts as written: no second ping while this one waits
                if deliver(sub, ping, now):  # written at once: the stream's task stays parked
                    delivery_metrics.heartbeat()
            if sub.deadline <= deadline_passed:
                sub.wake()  # its token expired or it reached its maximum age: the stream ends itself
            if sub.write_deadline <= deadline_passed:
                sub.time_out_write()  # a write blocked past STREAM_SEND_TIMEOUT_SECONDS: a slow consumer
