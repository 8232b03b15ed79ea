"""The in-process hub: which open streams of this worker want which notifications.

Keys always carry the tenant's schema: recipient ``u1`` of tenant A and ``u1`` of tenant B are different
keys. A frame is encoded once per notification and the same bytes are queued to every matching stream.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from service.serving import write_nowait

RECIPIENT, TOPIC, BROADCAST = "r", "t", "b"
Key = tuple[str, str, str]  # (schema, kind, id)


class Item(NamedTuple):
    """A queued frame: notification frames carry their id (for dedupe) and announce time (for latency)."""

    id: int | None
    frame: bytes
    sent_at: float = 0.0


def keys_for(schema: str, recipient: str, topics: Iterable[str]) -> tuple[Key, ...]:
    return ((schema, RECIPIENT, recipient), (schema, BROADCAST, ""), *((schema, TOPIC, t) for t in topics))


class Subscription:
    """One open stream's mailbox: a bounded queue, a wake-up future and the last id it has sent.

    Kept deliberately small (slots, one deque, one future at a time): ten thousand of them per worker.
    """

    __slots__ = (
        "_items",
        "_limit",
        "_waiter",
        "closed",
        "cycle",
        "deadline",
        "keys",
        "label",
        "last_write",
        "position",
        "recipient",
        "schema",
        "secret",
        "task",
        "write_deadline",
        "write_timed_out",
    )

    def __init__(
        self, schema: str, recipient: str, keys: tuple[Key, ...], limit: int, secret: str = ""
    ) -> None:
        self.schema = schema
        self.recipient = recipient
        self.keys = keys
        # The tenant's signing secret the token was checked with (a reference to the cached tenant's string):
        # after the broker reconnects, streams opened under a secret rotated meanwhile are ended (listener.py).
        self.secret = secret
        self.position = (
            0  # the newest id this stream has sent (or chose to skip); live items <= it are dropped
        )
        self.closed: str | None = None  # why the stream must end, once it must
        self.last_write = time.monotonic()  # of the last write (or queued heartbeat): the ticker's clock
        # Loop time of the token's expiry or the maximum age: the ticker wakes the stream once it has passed.
        self.deadline = float("inf")
        # While a write is in progress: the loop time by which it must finish, else the ticker cancels
        # ``task`` (the stream's) and the write raises TimeoutError; no timer is armed per write.
        self.write_deadline = float("inf")
        self.write_timed_out = False
        self.task: asyncio.Task[Any] | None = None
        # The server's cycle of this stream's response once it is live (``service.serving.write_nowait``),
        # and the tenant's metrics label: what a fan-out needs to write here without waking the task.
        self.cycle: Any = None
        self.label = ""
        self._items: deque[Item] = deque()
        self._limit = limit
        self._waiter: asyncio.Future[None] | None = None

    def push(self, item: Item) -> bool:
        """Queue ``item``; ``False`` (and the stream is closed as slow) when the queue is full."""
        if self.closed is not None:
            return True
        if len(self._items) >= self._limit:
            self.close("slow_consumer")
            return False
        self._items.append(item)
        self._wake()
        return True

    def write_now(self, frame: bytes) -> bool:
        """Write ``frame`` on the socket now, from the caller (a fan-out, the heartbeat ticker), when the
        stream's task is parked in ``wait`` with nothing queued: nothing is in flight on this connection, so
        the frame goes out in order. ``False`` (nothing written) otherwise, or when the socket cannot take it
        at once (``write_nowait``): the caller queues it for the task as before. Waking ten thousand tasks
        for one frame each was most of a broadcast's time."""
        if self._waiter is None or self._items or self.closed is not None or self.cycle is None:
            return False
        return write_nowait(self.cycle, frame)

    def close(self, reason: str) -> None:
        if self.closed is None:
            self.closed = reason
        self._wake()

    def time_out_write(self) -> None:
        """The write in progress took too long: interrupt it (it raises ``TimeoutError`` in the stream)."""
        if self.task is not None and not self.write_timed_out:
            self.write_timed_out = True
            self.task.cancel()

    def wake(self) -> None:
        """Make ``wait`` return (the ticker, once ``deadline`` has passed)."""
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def pop(self) -> Item | None:
        return self._items.popleft() if self._items else None

    async def wait(self) -> None:
        """Return when an item is queued, the stream is closed, or ``wake`` is called. No timer of its own:
        a timer armed and cancelled per wait cost two heap operations per stream per event (and per stream
        while idle); the worker's ticker (``heartbeats.py``) wakes streams whose ``deadline`` has passed."""
        if self._items or self.closed is not None:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None


class Hub:
    def __init__(self) -> None:
        self._by_key: dict[Key, set[Subscription]] = {}
        self._all: set[Subscription] = set()
        self._by_schema: dict[str, set[Subscription]] = {}

    def add(self, sub: Subscription) -> None:
        self._all.add(sub)
        self._by_schema.setdefault(sub.schema, set()).add(sub)
        for key in sub.keys:
            self._by_key.setdefault(key, set()).add(sub)

    def remove(self, sub: Subscription) -> None:
        self._all.discard(sub)
        tenant_subs = self._by_schema.get(sub.schema)
        if tenant_subs is not None:
            tenant_subs.discard(sub)
            if not tenant_subs:
                del self._by_schema[sub.schema]
        for key in sub.keys:
            subs = self._by_key.get(key)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._by_key[key]

    def matching(self, key: Key) -> set[Subscription]:
        return self._by_key.get(key, set())

    def has(self, key: Key) -> bool:
        return key in self._by_key

    def __len__(self) -> int:
        return len(self._all)

    def subscriptions(self) -> Iterator[Subscription]:
        """The open subscriptions, without copying: callers must not add or remove while iterating."""
        return iter(self._all)

    def key_count(self) -> int:
        return len(self._by_key)

    def schemas(self) -> set[str]:
        return set(self._by_schema)

    def in_schema(self, schema: str) -> list[Subscription]:
        return list(self._by_schema.get(schema, ()))

    def has_schema(self, schema: str) -> bool:
        """Whether any open stream belongs to this tenant schema (no scan of every stream)."""
        return schema in self._by_schema
