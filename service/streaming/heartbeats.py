"""One heartbeat ticker per worker: ``: ping`` for every stream silent for ``HEARTBEAT_SECONDS``."""

from __future__ import annotations

import asyncio
import time

from service.streaming import sse
from service.streaming.dispatch import push
from service.streaming.hub import Hub, Item


async def run_heartbeats(hub: Hub, interval: float) -> None:
    """Queue ``: ping`` for every stream silent for ``interval`` seconds: one timer per worker, not one
    per stream (at 10k streams, re-arming per-stream timers was most of the idle CPU)."""
    tick = min(1.0, interval / 4)
    ping = Item(None, sse.PING)
    while True:
        await asyncio.sleep(tick)
        now = time.monotonic()
        due = now - interval
        for sub in hub.subscriptions():
            if sub.last_write <= due:
                sub.last_write = now  # counts as written: no second ping while this one waits
                push(sub, ping)
