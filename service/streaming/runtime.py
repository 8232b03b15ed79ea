"""Everything a worker process runs for streaming, wired together: pool, hub, listener, readiness and drain.

One ``Runtime`` per process, started by the ASGI lifespan and stopped with it. Each part lives in a module
named for its job: ``listener`` (broker callbacks, catch-up), ``dispatch`` (rows to streams), ``unread``
(coalesced counts), ``heartbeats``, ``drain`` (SIGTERM, SIGINT), ``presence`` (worker registration for slots),
``gc_tuning``; the broker itself is ``service.broker``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Callable

from django.conf import settings
from psycopg_pool import AsyncConnectionPool

from service.broker import default_broker
from service.notifications import publish
from service.observability import metrics
from service.streaming.dispatch import Dispatcher, frame_for
from service.streaming.drain import Drainer
from service.streaming.gc_tuning import tune_for_long_lived_objects
from service.streaming.heartbeats import run_heartbeats
from service.streaming.hub import Hub
from service.streaming.listener import Listener
from service.streaming.presence import WorkerPresence
from service.streaming.slots import Slots
from service.streaming.store import Store
from service.streaming.unread import UnreadCoalescer
from service.streaming.window import ReplayWindow

__all__ = ["Runtime", "frame_for"]


class Runtime:
    def __init__(self) -> None:
        self.hub = Hub()
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.pool: AsyncConnectionPool | None = None
        self.publish_pool: AsyncConnectionPool | None = None
        self.store: Store | None = None
        self.slots: Slots | None = None
        self.open_streams = 0
        self.window = ReplayWindow(settings.REPLAY_WINDOW_EVENTS, settings.REPLAY_WINDOW_BYTES)
        self.broker = default_broker()
        self.drainer = Drainer(self.hub, lambda: self.open_streams, settings.DRAIN_SECONDS)
        self.unread = UnreadCoalescer(self.hub, lambda: self.store, self._send_unread)
        self.dispatcher = Dispatcher(self.hub, self.unread.note)
        self.listener = Listener(
            self.hub,
            self.dispatcher,
            lambda: self.store,
            self._register_worker,
            lambda: self.draining,
            self.window,
        )
        self.presence: WorkerPresence | None = None
        if (
            self.broker.after_commit
        ):  # no LISTEN backend to stand for this worker, and announcements can be lost
            self.presence = WorkerPresence(
                settings.DATABASE_URL,
                self._register_backend,
                self.listener.tracked,
                self.listener.check_newest,
                settings.BROKER_CHECK_SECONDS,
                self._liveness_lost,
            )
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def draining(self) -> bool:
        return self.drainer.draining

    @property
    def listener_connected(self) -> bool:
        return self.listener.connected

    @property
    def slots_live(self) -> bool:
        """This worker is registered and live, so it can take stream slots (``Slots.live``): with Redis its
        presence connection, which the listener's state does not tell."""
        return self.slots is not None and self.slots.live

    # --- lifecycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        tune_for_long_lived_objects()
        self.pool = AsyncConnectionPool(
            settings.DATABASE_URL,
            min_size=1,
            max_size=settings.STREAM_DB_POOL_SIZE,
            timeout=settings.DB_POOL_WAIT_SECONDS,  # then PoolTimeout, an OperationalError: 503
            open=False,
            kwargs={"autocommit": True, "application_name": "beacon-stream"},
            name="beacon-stream",
        )
        await self.pool.open(wait=False)
        # Publishing without a thread hop (service/notifications/publish.py, publish_direct): its own pool so
        # that publishes never queue behind the streams' statements, nor the streams behind publishes.
        self.publish_pool = AsyncConnectionPool(
            settings.DATABASE_URL,
            min_size=1,
            max_size=settings.PUBLISH_DB_POOL_SIZE,
            timeout=settings.DB_POOL_WAIT_SECONDS,
            max_idle=60,  # seconds: connections beyond min_size close after a burst
            open=False,
            kwargs={"autocommit": True, "application_name": "beacon-publish"},
            name="beacon-publish",
        )
        await self.publish_pool.open(wait=False)
        publish.use_direct_pool(self.publish_pool)
        self.store = Store(self.pool)
        self.slots = Slots(self.pool, self.worker_id, settings.STREAM_BATCH_SECONDS)
        self._tasks = [
            asyncio.create_task(
                self.broker.listen(self.listener.on_announcement, self._on_listener_connected),
                name="beacon-listener",
            ),
            asyncio.create_task(self.unread.run(), name="beacon-unread"),
            asyncio.create_task(
                run_heartbeats(self.hub, settings.HEARTBEAT_SECONDS), name="beacon-heartbeats"
            ),
        ]
        if self.presence is not None:
            self._tasks.append(asyncio.create_task(self.presence.run(), name="beacon-presence"))
        self.drainer.install_signal_hooks()
        metrics.READY.set(0)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.slots is not None:
            await self.slots.close()  # pending releases
        if self.publish_pool is not None:
            publish.use_direct_pool(None)
            await self.publish_pool.close()
        if self.pool is not None:
            await self.pool.close()
        metrics.LISTENER_CONNECTED.set(0)
        metrics.READY.set(0)

    def newest_dispatched(self, schema: str) -> int | None:
        return self.listener.newest_dispatched(schema)

    async def drain(self, then: Callable[[], None] | None = None) -> None:
        await self.drainer.drain(then)

    async def _register_worker(self) -> None:
        """Tie this worker's slots to its liveness backend (the listener's, or the presence connection's)
        and rewrite its slot rows from its open streams (``Slots.register``)."""
        pid = self.broker.backend_pid if self.presence is None else self.presence.backend_pid
        if pid is not None:
            await self._register_backend(pid)

    async def _register_backend(self, pid: int) -> None:
        if self.slots is not None:
            await self.slots.register(pid)

    async def _on_listener_connected(self, connected: bool) -> None:
        """The broker's ``on_connected``; with LISTEN/NOTIFY the listener's backend is the liveness one, so
        its loss makes this worker refuse connects at once (``503``) until it registers again."""
        if not connected and self.presence is None:
            self._liveness_lost()
        await self.listener.on_connected(connected)

    def _liveness_lost(self) -> None:
        if self.slots is not None:
            self.slots.lost()

    def _send_unread(self, schema: str, recipient: str, count: int) -> None:
        self.dispatcher.unread(schema, recipient, count)
