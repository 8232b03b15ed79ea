"""Unread counts after new recipient rows, coalesced into one count query per tenant per burst. (An opening
stream's count is read in its slot's batched statement: ``service/streaming/slots.py``.)"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable

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
