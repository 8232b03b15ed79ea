"""Unread counts: after new recipient rows, coalesced into one count query per tenant per burst; and when
streams open, batched (``UnreadCounts``) so a storm of connects costs one query per tenant per batch."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence

from service.streaming.batching import Batcher
from service.streaming.hub import RECIPIENT, Hub
from service.streaming.store import Store

log = logging.getLogger(__name__)
COALESCE_SECONDS = 0.02


class UnreadCoalescer:
    """Collects ``(schema, recipient)`` pairs and sends fresh ``beacon.unread`` counts for them."""

    def __init__(
        self, hub: Hub, store: Callable[[], Store | None], send: Callable[[str, str, int], None]
    ) -> None:
        self._hub = hub
        self._store = store
        self._send = send
        self._pending: dict[str, set[str]] = defaultdict(set)
        self._wake = asyncio.Event()

    def note(self, schema: str, recipient: str) -> None:
        self._pending[schema].add(recipient)
        self._wake.set()

    async def run(self) -> None:
        """After new recipient rows, send ``beacon.unread`` with fresh counts: one query per tenant batch."""
        while True:
            await self._wake.wait()
            await asyncio.sleep(COALESCE_SECONDS)  # coalesce a burst of publishes into one count query
            self._wake.clear()
            pending, self._pending = self._pending, defaultdict(set)
            for schema, recipients in pending.items():
                local = [r for r in recipients if self._hub.has((schema, RECIPIENT, r))]
                store = self._store()
                if not local or store is None:
                    continue
                try:
                    counts = await store.unread_counts(schema, local)
                except Exception:  # counts are advisory; the next change sends fresh ones
                    log.exception("unread count query failed")
                    continue
                for recipient, count in counts.items():
                    self._send(schema, recipient, count)


class UnreadCounts:
    """``await read(schema, recipient)`` → ``(tenant's oldest retained id or None, recipient's unread count)``,
    read with the other opening streams' in one statement per tenant per batch."""

    def __init__(self, store: Callable[[], Store | None], interval: float) -> None:
        self._store = store
        self.batcher: Batcher[tuple[str, str], tuple[int | None, int]] = Batcher(
            "unread-counts", self._send, interval
        )

    async def read(self, schema: str, recipient: str) -> tuple[int | None, int]:
        return await self.batcher.submit((schema, recipient))

    async def _send(self, wanted: list[tuple[str, str]]) -> Sequence[tuple[int | None, int]]:
        store = self._store()
        assert store is not None
        by_schema: dict[str, set[str]] = defaultdict(set)
        for schema, recipient in wanted:
            by_schema[schema].add(recipient)
        answers: dict[tuple[str, str], tuple[int | None, int]] = {}
        for schema, recipients in by_schema.items():
            oldest, counts = await store.oldest_and_unread(schema, recipients)
            for recipient, count in counts.items():
                answers[schema, recipient] = (oldest, count)
        return [answers[pair] for pair in wanted]
