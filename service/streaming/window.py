"""The replay window: each tenant's newest notifications in this worker's memory, so a resume needs no query.

Per tenant schema the window holds the rows of an id range ``(low, high]`` **without a hole**: every committed
row of the tenant with an id in that range is in the window, except rows already expired when they were read.
It is fed only from the listener's transitions of ``newest`` (``Listener._advance``), each of which dispatches
*every* row between the old and the new ``newest`` (ids are given in commit order per tenant; a hole in the
ids, e.g. a rolled-back publish's sequence values, is read from the database before the listener moves past
it). So the covered range is known from those transitions, never guessed from id arithmetic: ids do have gaps.

Bounds: at most ``max_events`` rows per tenant and ``max_bytes`` (frames plus a fixed per-row overhead) for the
whole worker; the oldest rows go first (the least recently fed tenant first when the worker is over its bytes),
and ``low`` moves up with them. A transition the window cannot follow (rows not at hand) empties that tenant's
window at the new position; a listener disconnect empties all of them.

The database stays the source of truth: a resume from an id the window does not cover, or whose ``expired``
verdict the window cannot decide, is served by the query as before (``service/streaming/endpoint.py``).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from service.broker.base import Row

ROW_OVERHEAD = 240  # bytes per held row beyond its frame (tuple, ints, strings, index slots): counted


class Entry(NamedTuple):
    id: int
    recipient: str | None
    topic: str | None
    broadcast: bool
    expires_at: float
    frame: bytes


@dataclass
class Replay:
    """What the window answers for a resume: the frames to send (in id order), or a reset."""

    frames: list[tuple[int, bytes]]
    reset: str | None  # ``too_far_behind`` or None
    newest: int  # the window's ``high``: a reset resumes from here


def _keys(entry: Entry) -> list[tuple[str, str]]:
    """What a replay matches an entry by, as the database's query does: recipient, topic, broadcast."""
    keys = []
    if entry.recipient is not None:
        keys.append(("r", entry.recipient))
    if entry.topic is not None:
        keys.append(("t", entry.topic))
    if entry.broadcast:
        keys.append(("b", ""))
    return keys


class _Tenant:
    __slots__ = ("by_key", "entries", "high", "low", "size")

    def __init__(self, at: int) -> None:
        self.low = at  # exclusive
        self.high = at  # inclusive
        self.entries: deque[Entry] = deque()  # id order: the oldest is evicted first
        # The same entries by what selects them (recipient, topic, broadcast), each in id order: a resume
        # reads only the entries of its own keys above its last id, from the newest end.
        self.by_key: dict[tuple[str, str], deque[Entry]] = {}
        self.size = 0


class ReplayWindow:
    def __init__(self, max_events: int, max_bytes: int) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.bytes = 0
        self._tenants: OrderedDict[str, _Tenant] = OrderedDict()

    def __len__(self) -> int:
        return sum(len(t.entries) for t in self._tenants.values())

    def covered(self, schema: str) -> tuple[int, int] | None:
        tenant = self._tenants.get(schema)
        return None if tenant is None else (tenant.low, tenant.high)

    def advance(
        self,
        schema: str,
        before: int | None,
        rows: Sequence[Row] | None,
        after: int,
        frames: Sequence[bytes] | None = None,
    ) -> None:
        """The listener moved ``newest`` from ``before`` to ``after`` having dispatched ``rows``: every live
        committed row in ``(before, after]``, in id order (``None``: the rows are not at hand). ``frames``: the
        rows' encoded frames when the caller has them (encoded once for the window and the streams)."""
        if self.max_events <= 0 or after <= (before if before is not None else after - 1):
            return
        tenant = self._tenants.get(schema)
        if rows is None or before is None or any(row.expires_at is None for row in rows):
            self._reset(schema, after)
            return
        if tenant is None or tenant.high != before:
            self._drop(schema)
            tenant = self._tenants[schema] = _Tenant(before)
        self._tenants.move_to_end(schema)
        from service.streaming.dispatch import frame_for  # dispatch imports nothing from here

        for index, row in enumerate(rows):
            if row.id <= tenant.high:
                continue
            assert row.expires_at is not None
            frame = frames[index] if frames is not None else frame_for(row)
            entry = Entry(row.id, row.recipient, row.topic, row.broadcast, row.expires_at, frame)
            tenant.entries.append(entry)
            for key in _keys(entry):
                selected = tenant.by_key.get(key)
                if selected is None:
                    selected = tenant.by_key[key] = deque()
                selected.append(entry)
            cost = len(entry.frame) + ROW_OVERHEAD
            tenant.size += cost
            self.bytes += cost
        tenant.high = after
        while len(tenant.entries) > self.max_events:
            self._evict_oldest(tenant)
        while self.bytes > self.max_bytes and self._tenants:
            oldest_schema, oldest = next(iter(self._tenants.items()))
            if oldest.entries:
                self._evict_oldest(oldest)
            else:
                self._drop(oldest_schema)

    def forget(self, schema: str) -> None:
        """Drop one tenant's window (its streams were closed: the tenant was deleted or deactivated)."""
        self._drop(schema)

    def clear(self) -> None:
        self._tenants.clear()
        self.bytes = 0

    def replay(
        self,
        schema: str,
        last_id: int,
        recipient: str,
        topics: Sequence[str],
        limit: int,
        now: float | None = None,
    ) -> Replay | None:
        """The subscriber's rows above ``last_id``, or ``None`` when the database must answer (``last_id``
        outside ``[low, high]``). An ``unknown_id`` reset never comes from here (``last_id <= high``); the
        ``expired`` reset needs the tenant's oldest stored id, which the caller reads with the unread count.
        """
        tenant = self._tenants.get(schema)
        if tenant is None or not tenant.low <= last_id <= tenant.high:
            return None
        now = time.time() if now is None else now
        keys = [("r", recipient), ("b", ""), *(("t", topic) for topic in dict.fromkeys(topics))]
        found: dict[int, bytes] = {}  # an entry selected by two keys is sent once
        for key in keys:
            selected = tenant.by_key.get(key)
            if not selected:
                continue
            taken = 0
            for entry in reversed(selected):  # newest first, down to last_id
                if entry.id <= last_id:
                    break
                if entry.expires_at <= now:
                    continue
                found[entry.id] = entry.frame
                taken += 1
                if taken > limit:
                    return Replay([], "too_far_behind", tenant.high)
        if len(found) > limit:
            return Replay([], "too_far_behind", tenant.high)
        return Replay(sorted(found.items()), None, tenant.high)

    # --- bookkeeping ---------------------------------------------------------------------------------------
    def _evict_oldest(self, tenant: _Tenant) -> None:
        entry = tenant.entries.popleft()
        for key in _keys(entry):
            selected = tenant.by_key[key]
            selected.popleft()  # the oldest of its keys too
            if not selected:
                del tenant.by_key[key]
        cost = len(entry.frame) + ROW_OVERHEAD
        tenant.size -= cost
        self.bytes -= cost
        tenant.low = entry.id  # everything up to it is gone; the range stays without a hole

    def _reset(self, schema: str, at: int) -> None:
        self._drop(schema)
        self._tenants[schema] = _Tenant(at)

    def _drop(self, schema: str) -> None:
        tenant = self._tenants.pop(schema, None)
        if tenant is not None:
            self.bytes -= tenant.size
