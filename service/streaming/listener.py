"""The worker's side of the broker: connection state, catch-up, and announcements dispatched in id order.

Per tenant schema the listener keeps ``newest``: every id up to it has been dispatched to this worker's
streams or is known not to exist. Ids are assigned in commit order per tenant (``beacon_publish``'s lock), and
an announcement is sent only after its commit, so when one arrives every smaller id of its tenant is already
committed or rolled back. Hence:

- an announcement whose ids are all ``<= newest`` is late (already filled) or a duplicate: dropped;
- one whose first id is ``newest + 1`` is dispatched as it is;
- one whose first id is larger leaves a hole: the rows of ``(newest, last]`` are read from the database
  (one query; a hole left by a rolled-back transaction reads as nothing) and dispatched in order, so later
  ids wait until the hole is filled.

While it catches up after a (re)connect, live announcements are held and dispatched after it. One lock
serialises dispatch with the periodic check (``check_newest``) that finds trailing announcements that were
never sent. See docs/streaming.md, "Ordering and gaps".

Every move of ``newest`` goes through ``_advance`` with the rows it dispatched, which also feeds the replay
window (``service/streaming/window.py``): the window covers exactly the ranges the listener has completed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from service.broker.base import Announcement, Row
from service.db import is_outage
from service.observability import metrics
from service.streaming.dispatch import Dispatcher, frame_for
from service.streaming.hub import Hub
from service.streaming.store import Store
from service.streaming.window import Replay, ReplayWindow

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
        window: ReplayWindow | None = None,
    ) -> None:
        self.hub = hub
        self.window = window if window is not None else ReplayWindow(0, 0)
        self.dispatcher = dispatcher
        self.connected = False
        self._store = store
        self._on_connect = on_connect  # runs first on every (re)connect (worker registration)
        self._is_draining = is_draining
        self._catching_up = False
        self._connections = 0
        self._held: list[Announcement] = []
        self._lock = asyncio.Lock()
        # Per tenant schema: every id up to this one is dispatched or known absent. Valid only while the
        # listener stays connected; a first connect starts there without asking the database.
        self._newest: dict[str, int] = {}
        # The newest committed id the previous periodic check saw per schema: only a lag that outlives one
        # check interval is filled, so announcements still in flight do not cause reads.
        self._checked: dict[str, int] = {}

    def newest_dispatched(self, schema: str) -> int | None:
        return self._newest.get(schema) if self.connected else None

    def replay(
        self, schema: str, last_id: int, recipient: str, topics: tuple[str, ...], limit: int
    ) -> Replay | None:
        """A resume answered from the replay window, or ``None`` (ask the database). Synchronous: call it right
        after the stream joined the hub, with no ``await`` in between, so that every id above the window's
        ``high`` reaches the stream live."""
        if not self.connected or self._catching_up:
            return None
        return self.window.replay(schema, last_id, recipient, topics, limit)

    def _advance(self, schema: str, rows: Sequence[Row] | None, after: int, sent_at: float = 0.0) -> None:
        """Dispatch ``rows`` (every live row between ``newest`` and ``after``; ``None`` when not at hand and
        no stream here wants them) and move ``newest`` to ``after``."""
        before = self._newest.get(schema)
        frames = [frame_for(row) for row in rows] if rows else None  # once, for the window and the streams
        self.window.advance(schema, before, rows, after, frames)
        if rows:
            self.dispatcher.rows(schema, rows, sent_at, frames)
        self._newest[schema] = after if before is None else max(before, after)

    def tracked(self) -> dict[str, int]:
        """The tenants with open streams and their ``newest`` (for the periodic check)."""
        return {s: n for s, n in self._newest.items() if self.hub.has_schema(s)}

    async def ensure_newest(self, schema: str) -> None:
        """Before a tenant's first stream joins this worker: learn where its ids stand (one index lookup).

        A value read before the stream is in the hub is never above what that stream's own read will see,
        and an announcement dispatched in between was committed before it, so nothing can fall between.
        """
        if not self.connected or schema in self._newest:
            return
        store = self._store()
        assert store is not None
        newest, _ = await store.bounds(schema)
        if self.connected and schema not in self._newest:
            self._advance(schema, None, newest)

    async def on_connected(self, connected: bool) -> None:
        if not connected:
            if self.connected:
                log.warning("listener disconnected; streams keep their positions and catch up on reconnect")
            self.connected = False
            self._newest.clear()
            self.window.clear()
            metrics.LISTENER_CONNECTED.set(0)
            metrics.READY.set(0)
            return
        # Announcements that arrive while we catch up are held, then dispatched in order after it.
        self._catching_up = True
        try:
            if self._connections:
                metrics.LISTENER_RECONNECTS.inc()
            self._connections += 1
            await self._on_connect()
            async with self._lock:
                self._newest.clear()
                self.window.clear()
                gone = await self._close_changed_tenants()
                await self._catch_up(skip=gone)
        finally:
            async with self._lock:
                held, self._held = self._held, []
                self._catching_up = False
                for announcement in held:
                    await self._dispatch(announcement)
        self.connected = True
        metrics.LISTENER_CONNECTED.set(1)
        metrics.READY.set(0 if self._is_draining() else 1)

    async def _close_changed_tenants(self) -> set[str]:
        """End the streams a close announcement sent while the listener was away would have ended.

        Announcements are not replayed, so a rotation, deactivation or deletion committed during a broker
        outage (or between a LISTEN connection's loss and its return) is found here: each tenant with streams
        is compared with its row now. Streams whose token was checked with another secret end
        ``secret_rotated`` (streams opened with the new secret stay); an inactive tenant's end
        ``tenant_inactive``; a deleted one's ``tenant_deleted``. Returns the deleted tenants' schemas.
        """
        schemas = self.hub.schemas()
        if not schemas:
            return set()
        store = self._store()
        assert store is not None
        states = await store.tenant_states(schemas)
        gone = schemas - states.keys()
        for schema in schemas:
            state = states.get(schema)
            if state is None:
                self.dispatcher.close_tenant(schema, "tenant_deleted")
            elif not state[0]:
                self.dispatcher.close_tenant(schema, "tenant_inactive")
            else:
                stale = [sub for sub in self.hub.in_schema(schema) if sub.secret != state[1]]
                if stale:
                    self.dispatcher.close_streams(schema, stale, "secret_rotated")
        return gone

    async def _catch_up(self, skip: set[str]) -> None:
        """Send every stream what was committed while the listener was away, from its own position (but the
        streams of the tenants in ``skip``, deleted: their rows are gone)."""
        for schema in self.hub.schemas() - skip:
            subs = self.hub.in_schema(schema)
            if not subs:
                continue
            after = min(sub.position for sub in subs)
            self._advance(schema, None, after)
            await self._fill(schema, None)

    async def on_announcement(self, announcement: Announcement) -> None:
        """Dispatch one announcement. A database outage propagates: the broker reconnects and the listener
        catches up from the database. Any other error is a bug in dispatching this announcement: it is logged
        (Sentry hears of it) and the listener goes on. Raised into the broker, it was taken for a lost
        connection: the catch-up dispatched the same rows and failed again, 18 reconnects a second, and no
        stream of the tenant got a live event (a stored event name ending in a newline did this)."""
        if self._catching_up:
            self._held.append(announcement)
            return
        async with self._lock:
            try:
                await self._dispatch(announcement)
            except Exception as exc:
                if is_outage(exc):
                    raise
                log.exception(
                    "dispatching an announcement of %s failed; the listener goes on", announcement.schema
                )

    async def check_newest(self, newest_by_schema: dict[str, int]) -> None:
        """Fill tenants whose committed ids stay ahead of what was dispatched (a trailing announcement lost).

        ``newest_by_schema`` is each tracked tenant's newest committed id now. What the previous check saw
        and is still not dispatched is filled: a lost announcement is found within two check intervals.
        """
        previous, self._checked = self._checked, dict(newest_by_schema)
        if self._catching_up or not self.connected:
            return
        async with self._lock:
            for schema, seen in previous.items():
                known = self._newest.get(schema)
                if known is not None and seen > known and self.hub.has_schema(schema):
                    metrics.BROKER_GAP_FILLS.labels("check").inc()
                    await self._fill(schema, seen)

    async def _dispatch(self, announcement: Announcement) -> None:
        schema = announcement.schema
        if announcement.close:
            self.dispatcher.close_tenant(schema, announcement.close)
            self.window.forget(schema)  # a deleted tenant's rows are gone; a rotated one reads them again
            return
        for recipient, count in announcement.unread.items():
            self.dispatcher.unread(schema, recipient, count)
        span = announcement.span()
        if span is None:
            return
        first, last = span
        known = self._newest.get(schema)
        if known is not None and last <= known:
            return  # late or duplicate: these ids were dispatched (or found absent) already
        if not self.hub.has_schema(schema):
            # No stream here: nothing to dispatch or fill (a stream that joins later reads the database);
            # the window keeps inline rows when they continue what it holds.
            contiguous = known is not None and first <= known + 1 and announcement.id_range is None
            kept = [row for row in announcement.rows if known is None or row.id > known]
            self._advance(schema, kept if contiguous else None, last)
            return
        if known is not None and first > known + 1:
            metrics.BROKER_GAP_FILLS.labels("hole").inc()
            await self._fill(schema, last)
            return
        rows = announcement.rows
        if announcement.id_range is not None:
            store = self._store()
            assert store is not None
            rows = await store.range(schema, first, last)
        if known is not None and first <= known:
            rows = [row for row in rows if row.id > known]
        self._advance(schema, rows, last, announcement.sent_at)

    async def _fill(self, schema: str, upto: int | None) -> None:
        """Dispatch the tenant's rows after ``newest`` up to ``upto`` (every committed row when ``None``)."""
        store = self._store()
        assert store is not None
        after = self._newest[schema]
        limit = upto if upto is not None else 2**63 - 1
        while True:
            rows: list[Row] = await store.between(schema, after, limit, CATCH_UP_PAGE)
            if rows:
                after = rows[-1].id
                self._advance(schema, rows, after)
            if len(rows) < CATCH_UP_PAGE:
                break
        if upto is not None and upto > self._newest[schema]:
            self._advance(schema, [], upto)  # no live row in (after, upto]: the page came back short
