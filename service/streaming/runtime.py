"""Everything a worker process runs for streaming: pool, hub, listener, readiness and drain.

One ``Runtime`` per process, started by the ASGI lifespan and stopped with it. The listener feeds the hub
in commit order; while it catches up after a reconnect, live announcements wait so no stream can send a
newer id before an older one.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import random
import signal
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from django.conf import settings
from psycopg_pool import AsyncConnectionPool

from service.broker import default_broker
from service.broker.base import Announcement, Row
from service.observability import metrics
from service.streaming import sse
from service.streaming.hub import BROADCAST, RECIPIENT, TOPIC, Hub, Item, Subscription
from service.streaming.store import Store

log = logging.getLogger(__name__)
CATCH_UP_PAGE = 5000


def frame_for(row: Row) -> bytes:
    return sse.notification(
        row.id, row.event, row.data_json or "null", row.recipient, row.topic, row.created_at
    )


class Runtime:
    def __init__(self) -> None:
        self.hub = Hub()
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.pool: AsyncConnectionPool | None = None
        self.store: Store | None = None
        self.listener_connected = False
        self.draining = False
        self.open_streams = 0
        self._listener_task: asyncio.Task[None] | None = None
        self._unread_task: asyncio.Task[None] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._unread_pending: dict[str, set[str]] = defaultdict(set)
        self._unread_wake = asyncio.Event()
        self._catching_up = False
        self._connections = 0
        self._held: list[Announcement] = []
        # Newest id this listener has dispatched per tenant schema, valid only while it stays connected:
        # a first connect starts there without asking the database.
        self._newest: dict[str, int] = {}
        self._previous_sigterm: Any = None
        self.broker = default_broker()

    # --- lifecycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        # Ten thousand streams are many long-lived objects: full collections of them paused the event loop
        # for 0.4-0.7 s in the benchmark. Freeze what start-up allocated and collect young objects less often.
        gc.freeze()
        gc.set_threshold(100_000, 50, 100)
        self.pool = AsyncConnectionPool(
            settings.DATABASE_URL,
            min_size=1,
            max_size=settings.STREAM_DB_POOL_SIZE,
            open=False,
            kwargs={"autocommit": True, "application_name": "beacon-stream"},
            name="beacon-stream",
        )
        await self.pool.open(wait=False)
        self.store = Store(self.pool)
        self._listener_task = asyncio.create_task(
            self.broker.listen(self._on_announcement, self._on_connected), name="beacon-listener"
        )
        self._unread_task = asyncio.create_task(self._flush_unread(), name="beacon-unread")
        self._heartbeat_task = asyncio.create_task(self._heartbeats(), name="beacon-heartbeats")
        self._install_sigterm_hook()
        metrics.READY.set(0)

    async def stop(self) -> None:
        tasks = (self._listener_task, self._unread_task, self._heartbeat_task)
        for task in tasks:
            if task is not None:
                task.cancel()
        for task in tasks:
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self.pool is not None:
            await self.pool.close()
        metrics.LISTENER_CONNECTED.set(0)
        metrics.READY.set(0)

    def newest_dispatched(self, schema: str) -> int | None:
        return self._newest.get(schema) if self.listener_connected else None

    def ready_problem(self) -> str | None:
        if self.draining:
            return "draining"
        if not self.listener_connected:
            return "listener"
        return None

    # --- drain ------------------------------------------------------------------------------------------
    def _install_sigterm_hook(self) -> None:
        """Drain before the server's own shutdown: gunicorn sends SIGTERM, we close streams spread over
        ``DRAIN_SECONDS`` while refusing new ones, then hand the signal to uvicorn's handler."""
        try:
            previous = signal.getsignal(signal.SIGTERM)
            signal.signal(signal.SIGTERM, self._on_sigterm)
            self._previous_sigterm = previous
        except ValueError:  # not the main thread (tests embedding the app): no signal hook
            self._previous_sigterm = None

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        loop = asyncio.get_event_loop()
        if self.draining:
            self._forward_sigterm(signum, frame)
            return
        loop.call_soon_threadsafe(
            lambda: asyncio.ensure_future(self.drain(lambda: self._forward_sigterm(signum, frame)))
        )

    def _forward_sigterm(self, signum: int, frame: Any) -> None:
        previous = self._previous_sigterm
        if callable(previous):
            previous(signum, frame)

    async def drain(self, then: Callable[[], None] | None = None) -> None:
        """Refuse new streams, close open ones evenly over the window, then let the server stop."""
        self.draining = True
        metrics.READY.set(0)
        window = settings.DRAIN_SECONDS
        subs = list(self.hub.subscriptions())
        random.shuffle(subs)  # spread over the window so clients do not all reconnect at once
        log.info("draining %d streams over %.1fs", len(subs), window)
        started = time.monotonic()
        for index, sub in enumerate(subs):
            due = started + window * 0.9 * index / max(len(subs), 1)
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            sub.close("drain")
        deadline = time.monotonic() + max(window * 0.1, 1.0)
        while self.open_streams and time.monotonic() < deadline:  # noqa: ASYNC110 - bounded, 20 polls/s
            await asyncio.sleep(0.05)
        if then is not None:
            then()

    # --- listener -----------------------------------------------------------------------------------------
    async def _on_connected(self, connected: bool) -> None:
        if not connected:
            if self.listener_connected:
                log.warning("listener disconnected; streams keep their positions and catch up on reconnect")
            self.listener_connected = False
            self._newest.clear()
            metrics.LISTENER_CONNECTED.set(0)
            metrics.READY.set(0)
            return
        # Announcements that arrive while we catch up are held, then replayed in order after it.
        self._catching_up = True
        try:
            if self._connections:
                metrics.LISTENER_RECONNECTS.inc()
            self._connections += 1
            await self._register_worker()
            await self._catch_up()
        finally:
            held, self._held = self._held, []
            self._catching_up = False
            for announcement in held:
                await self._dispatch(announcement)
        self.listener_connected = True
        metrics.LISTENER_CONNECTED.set(1)
        metrics.READY.set(0 if self.draining else 1)

    async def _register_worker(self) -> None:
        """Tie this worker's slots to the listener's backend: they stop counting when it is gone."""
        pid = getattr(self.broker, "backend_pid", None)
        if pid is None or self.pool is None:
            return
        async with self.pool.connection() as conn:
            await conn.execute("SELECT beacon_register_worker(%s, %s)", [self.worker_id, pid])

    async def _catch_up(self) -> None:
        """Send every stream what was committed while the listener was away, from its own position."""
        assert self.store is not None
        for schema in self.hub.schemas():
            subs = self.hub.in_schema(schema)
            if not subs:
                continue
            after = min(sub.position for sub in subs)
            while True:
                rows = await self.store.after(schema, after, CATCH_UP_PAGE)
                if not rows:
                    break
                await self._dispatch(Announcement(schema, rows))
                after = rows[-1].id
                if len(rows) < CATCH_UP_PAGE:
                    break

    async def _on_announcement(self, announcement: Announcement) -> None:
        if self._catching_up:
            self._held.append(announcement)
            return
        await self._dispatch(announcement)

    async def _dispatch(self, announcement: Announcement) -> None:
        schema = announcement.schema
        hub = self.hub
        if announcement.close:
            self._close_tenant(schema, announcement.close)
            return
        for recipient, count in announcement.unread.items():
            self._send_unread(schema, recipient, count)
        rows = announcement.rows
        if announcement.id_range is not None:
            newest = announcement.id_range[1]
            if hub.has_schema(schema):
                assert self.store is not None
                rows = await self.store.range(schema, *announcement.id_range)
        elif rows:
            newest = rows[-1].id
        else:
            newest = 0
        self._newest[schema] = max(self._newest.get(schema, 0), newest)
        for row in rows:
            if row.broadcast:
                key = (schema, BROADCAST, "")
            elif row.topic is not None:
                key = (schema, TOPIC, row.topic)
            else:
                key = (schema, RECIPIENT, row.recipient or "")
            subs = hub.matching(key)
            if not subs:
                continue
            item = Item(row.id, frame_for(row), announcement.sent_at)
            for sub in list(subs):
                self._push(sub, item)
            if row.recipient is not None:
                self._unread_pending[schema].add(row.recipient)
                self._unread_wake.set()

    def _close_tenant(self, schema: str, reason: str) -> None:
        """End every local stream of one tenant (secret rotated, tenant deactivated): forget the cached
        tenant first, so the clients' reconnects are checked against its new secret and state."""
        from tenants.directory import forget_tenants

        forget_tenants()
        subs = self.hub.in_schema(schema)
        for sub in subs:
            sub.close(reason)
        log.info("closed %d streams of %s: %s", len(subs), schema, reason)

    @staticmethod
    def _push(sub: Subscription, item: Item) -> None:
        if not sub.push(item):
            metrics.SLOW_CONSUMER_DISCONNECTS.inc()

    def _send_unread(self, schema: str, recipient: str, count: int) -> None:
        """Queue ``beacon.unread`` to every local stream of one recipient of one tenant."""
        item = Item(None, sse.control("beacon.unread", {"unread": count}))
        for sub in list(self.hub.matching((schema, RECIPIENT, recipient))):
            self._push(sub, item)

    async def _heartbeats(self) -> None:
        """Queue ``: ping`` for every stream silent for ``HEARTBEAT_SECONDS``: one timer per worker, not one
        per stream (at 10k streams, re-arming per-stream timers was most of the idle CPU)."""
        interval = settings.HEARTBEAT_SECONDS
        tick = min(1.0, interval / 4)
        ping = Item(None, sse.PING)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            due = now - interval
            for sub in self.hub.subscriptions():
                if sub.last_write <= due:
                    sub.last_write = now  # counts as written: no second ping while this one waits
                    self._push(sub, ping)

    async def _flush_unread(self) -> None:
        """After new recipient rows, send ``beacon.unread`` with fresh counts: one query per tenant batch."""
        while True:
            await self._unread_wake.wait()
            await asyncio.sleep(0.02)  # coalesce a burst of publishes into one count query
            self._unread_wake.clear()
            pending, self._unread_pending = self._unread_pending, defaultdict(set)
            for schema, recipients in pending.items():
                local = [r for r in recipients if self.hub.has((schema, RECIPIENT, r))]
                if not local or self.store is None:
                    continue
                try:
                    counts = await self.store.unread_counts(schema, local)
                except Exception:  # counts are advisory; the next change sends fresh ones
                    log.exception("unread count query failed")
                    continue
                for recipient, count in counts.items():
                    self._send_unread(schema, recipient, count)
