"""The worker's side of the broker: connection state, catch-up after a reconnect, announcements to dispatch.

Feeds the hub in commit order: while it catches up after a (re)connect, live announcements are held and
dispatched after it, so no stream can send a newer id before an older one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from service.broker.base import Announcement
from service.observability import metrics
from service.streaming.dispatch import Dispatcher
from service.streaming.hub import Hub
from service.streaming.store import Store

log = logging.getLogger(__name__)
CATCH_UP_PAGE = 5000


class Listener:
    """Receives the broker's callbacks (``on_connected``, ``on_announcement``) for one worker."""

    def __init__(
        self,
        hub: Hub,
        dispatcher: Dispatcher,
        store: Callable[[], Store | None],
        on_connect: Callable[[], Awaitable[None]],
        is_draining: Callable[[], bool],
    ) -> None:
        self.hub = hub
        self.dispatcher = dispatcher
        self.connected = False
        self._store = store
        self._on_connect = on_connect  # runs first on every (re)connect (worker registration)
        self._is_draining = is_draining
        self._catching_up = False
        self._connections = 0
        self._held: list[Announcement] = []
        # Newest id this listener has dispatched per tenant schema, valid only while it stays connected:
        # a first connect starts there without asking the database.
        self._newest: dict[str, int] = {}

    def newest_dispatched(self, schema: str) -> int | None:
        return self._newest.get(schema) if self.connected else None

    async def on_connected(self, connected: bool) -> None:
        if not connected:
            if self.connected:
                log.warning("listener disconnected; streams keep their positions and catch up on reconnect")
            self.connected = False
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
            await self._on_connect()
            await self._catch_up()
        finally:
            held, self._held = self._held, []
            self._catching_up = False
            for announcement in held:
                await self._dispatch(announcement)
        self.connected = True
        metrics.LISTENER_CONNECTED.set(1)
        metrics.READY.set(0 if self._is_draining() else 1)

    async def _catch_up(self) -> None:
        """Send every stream what was committed while the listener was away, from its own position."""
        store = self._store()
        assert store is not None
        for schema in self.hub.schemas():
            subs = self.hub.in_schema(schema)
            if not subs:
                continue
            after = min(sub.position for sub in subs)
            while True:
                rows = await store.after(schema, after, CATCH_UP_PAGE)
                if not rows:
                    break
                await self._dispatch(Announcement(schema, rows))
                after = rows[-1].id
                if len(rows) < CATCH_UP_PAGE:
                    break

    async def on_announcement(self, announcement: Announcement) -> None:
        if self._catching_up:
            self._held.append(announcement)
            return
        await self._dispatch(announcement)

    async def _dispatch(self, announcement: Announcement) -> None:
        schema = announcement.schema
        for recipient, count in announcement.unread.items():
            self.dispatcher.unread(schema, recipient, count)
        rows = announcement.rows
        if announcement.id_range is not None:
            newest = announcement.id_range[1]
            if self.hub.has_schema(schema):
                store = self._store()
                assert store is not None
                rows = await store.range(schema, *announcement.id_range)
        elif rows:
            newest = rows[-1].id
        else:
            newest = 0
        self._newest[schema] = max(self._newest.get(schema, 0), newest)
        self.dispatcher.rows(schema, rows, announcement.sent_at)
