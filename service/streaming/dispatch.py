"""Dispatch: committed rows and unread counts to the matching local streams, one encoded frame per row."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from service.broker.base import Row
from service.observability import metrics
from service.streaming import delivery_metrics, sse
from service.streaming.hub import BROADCAST, RECIPIENT, TOPIC, Hub, Item, Subscription

log = logging.getLogger(__name__)


def frame_for(row: Row) -> bytes:
    return sse.notification(
        row.id, row.event, row.data_json or "null", row.recipient, row.topic, row.created_at
    )


def push(sub: Subscription, item: Item) -> None:
    """Queue ``item`` on one stream; a full queue closes it as a slow consumer (counted)."""
    if not sub.push(item):
        metrics.SLOW_CONSUMER_DISCONNECTS.inc()


def deliver(sub: Subscription, item: Item, now: float) -> bool:
    """Write ``item`` on the stream's socket at once when its task is parked (``Subscription.write_now``),
    marking ``now`` (``time.monotonic()``) as its last write, else queue it (``push``). ``True`` when written:
    the caller then records what the task would have (position, delivery tallies)."""
    if sub.write_now(item.frame):
        sub.last_write = now
        return True
    push(sub, item)
    return False


class Dispatcher:
    """Queues frames on the hub's streams; ``on_recipient_row(schema, recipient)`` hears of recipient rows."""

    def __init__(self, hub: Hub, on_recipient_row: Callable[[str, str], None]) -> None:
        # Closes of tenants' streams (a close announcement, or the check after a broker outage), numbered on
        # this worker, with each tenant's last: a stream that authenticated before a close but joins the hub
        # after it would be missed by it (``close_mark``/``closed_since``).
        self._close_seq = 0
        self._last_close: dict[str, tuple[int, str]] = {}
        self.hub = hub
        self._on_recipient_row = on_recipient_row

    def rows(
        self, schema: str, rows: Sequence[Row], sent_at: float, frames: Sequence[bytes] | None = None
    ) -> None:
        """Write or queue each row (in the given order, which must be id order) to every stream that wants
        it; ``frames``, when given, are the rows' frames already encoded. A stream whose task is parked
        with nothing queued gets the frame written at once (``Subscription.write_now``), others queue it."""
        hub = self.hub
        for index, row in enumerate(rows):
            if row.broadcast:
                key = (schema, BROADCAST, "")
            elif row.topic is not None:
                key = (schema, TOPIC, row.topic)
            else:
                key = (schema, RECIPIENT, row.recipient or "")
            subs = hub.matching(key)
            if not subs:
                continue
            item = Item(row.id, frames[index] if frames is not None else frame_for(row), sent_at)
            written = 0
            label = ""
            now = time.monotonic()
            for sub in list(subs):
                if row.id <= sub.position:
                    continue  # sent already (a catch-up repeats rows): what the task would skip
                if deliver(sub, item, now):
                    sub.position = row.id
                    written += 1
                    label = sub.label
            if written:
                latency = max(time.time() - sent_at, 0.0) if sent_at else None
                delivery_metrics.delivered(label, written, [latency] * written if latency is not None else [])
            if row.recipient is not None:
                self._on_recipient_row(schema, row.recipient)

    def unread(self, schema: str, recipient: str, count: int) -> None:
        """Write or queue ``beacon.unread`` to every local stream of one recipient of one tenant."""
        item = Item(None, sse.control("beacon.unread", {"unread": count}))
        now = time.monotonic()
        for sub in list(self.hub.matching((schema, RECIPIENT, recipient))):
            deliver(sub, item, now)

    def close_tenant(self, schema: str, reason: str) -> None:
        """End every local stream of one tenant (secret rotated, tenant deactivated or deleted). The cached
        tenant is forgotten first, so reconnects are checked against its new secret and state."""
        self.close_streams(schema, self.hub.in_schema(schema), reason)

    def close_streams(self, schema: str, subs: list[Subscription], reason: str) -> None:
        """End ``subs`` (streams of ``schema``) with ``reason``, after forgetting the cached tenants."""
        from tenants.directory import forget_tenants

        forget_tenants()
        self._close_seq += 1
        self._last_close[schema] = (self._close_seq, reason)
        for sub in subs:
            sub.close(reason)
        log.info("closed %d streams of %s: %s", len(subs), schema, reason)

    def close_mark(self) -> int:
        """The number of the last close on this worker: read before a stream's token is checked."""
        return self._close_seq

    def closed_since(self, schema: str, mark: int) -> str | None:
        """The reason ``schema``'s streams were last closed, when that was after ``close_mark`` gave ``mark``."""
        seq, reason = self._last_close.get(schema, (0, ""))
        return reason if seq > mark else None
