"""Worker registration: tie this worker's connection slots to a PostgreSQL backend that lives as long as it.

The slots of ``beacon_acquire_slot`` count only for workers whose registered backend is still in
``pg_stat_activity`` (migration ``streaming/0001``), so a worker killed with SIGKILL stops counting as soon as
PostgreSQL sees its socket close: no heartbeat writes, nothing while idle. With LISTEN/NOTIFY that backend is
the listener's; a broker outside PostgreSQL has none, so the worker keeps one idle connection of its own
(``WorkerPresence``, ``application_name`` ``beacon-worker``, no LISTEN) and runs its periodic newest-id check
on it (``Listener.check_newest``).

The registration itself is ``Slots.register`` (``service/streaming/slots.py``): it goes through the slot
batcher and rewrites the worker's slot rows from its open streams (migration ``streaming/0006``).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from service.streaming.store import newest_ids_query

log = logging.getLogger(__name__)
CHECK_BATCH = 200  # tenants per newest-id statement


async def _idle(conn: psycopg.AsyncConnection[Any], seconds: float) -> None:
    """Wait ``seconds`` on ``conn``'s socket rather than asleep: the connection has nothing to say (no LISTEN),
    so the only thing that can arrive is its end (a terminated backend, a database restart), which raises
    here at once. Without a statement, a worker with no streams, which runs none, never noticed, and stayed
    not live (refusing every stream) for good."""
    async for _ in conn.notifies(timeout=seconds):
        pass


class WorkerPresence:
    """One idle PostgreSQL connection standing for this worker; every ``interval`` seconds, while tenants
    have streams here, one statement reads their newest ids and hands them to ``on_newest``."""

    def __init__(
        self,
        conninfo: str,
        register: Callable[[int], Awaitable[None]],
        tracked: Callable[[], dict[str, int]],
        on_newest: Callable[[dict[str, int]], Awaitable[None]],
        interval: float,
        on_lost: Callable[[], None] = lambda: None,
    ) -> None:
        self._conninfo = conninfo
        self._register = register
        self._tracked = tracked
        self._on_newest = on_newest
        self._interval = interval
        self._on_lost = on_lost  # the connection dropped: this worker is not live until it registers again
        self.backend_pid: int | None = None

    async def run(self) -> None:
        backoff = 0.1
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, application_name="beacon-worker"
                ) as conn:
                    self.backend_pid = conn.info.backend_pid
                    await self._register(self.backend_pid)
                    backoff = 0.1
                    while True:
                        await _idle(conn, self._interval)
                        await self._check(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # reconnect and register again: slots count again from then on
                log.warning("worker presence connection lost: %s", exc)
            self.backend_pid = None
            self._on_lost()
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, 5.0)

    async def _check(self, conn: psycopg.AsyncConnection[Any]) -> None:
        schemas = sorted(self._tracked())
        if not schemas:
            await self._on_newest({})
            return
        newest: dict[str, int] = {}
        for start in range(0, len(schemas), CHECK_BATCH):
            cur = await conn.execute(newest_ids_query(schemas[start : start + CHECK_BATCH]))
            for schema, value in await cur.fetchall():
                newest[str(schema)] = int(value or 0)
        await self._on_newest(newest)
