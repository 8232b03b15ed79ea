"""Stream slots (tenant and recipient limits, all pods) taken and given back in batches (``beacon_slots``).

Each connect asks for its slot through a :class:`~service.streaming.batching.Batcher`: the connects of one
worker that arrive while a statement is in flight share the next statement, and releases ride along with it
(or go on their own within ``interval``). The limits stay exact across workers and pods (migration
``streaming/0002``); a worker killed with SIGKILL stops counting when its liveness backend goes
(``service/streaming/presence.py``). A release not yet sent only makes the count too high for at most one
batch interval: never a stream over a limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from psycopg_pool import AsyncConnectionPool

from service import pgarray
from service.observability import metrics
from service.streaming.batching import Batcher

OK = "ok"


class SlotOp(NamedTuple):
    tenant_id: int
    recipient: str
    max_tenant: int  # -1 for a release
    max_recipient: int


class Slots:
    """``await acquire(...)`` → ``"ok"``, ``"tenant"`` or ``"recipient"``; ``release(...)`` returns at once."""

    def __init__(self, pool: AsyncConnectionPool, worker_id: str, interval: float) -> None:
        self._pool = pool
        self._worker = worker_id
        self.batcher: Batcher[SlotOp, str] = Batcher("slots", self._send, interval)

    async def acquire(self, tenant_id: int, recipient: str, max_tenant: int, max_recipient: int) -> str:
        return await self.batcher.submit(SlotOp(tenant_id, recipient, max_tenant, max_recipient))

    def release(self, tenant_id: int, recipient: str) -> None:
        self.batcher.send_later(SlotOp(tenant_id, recipient, -1, -1))

    async def close(self) -> None:
        await self.batcher.flush()

    async def _send(self, ops: list[SlotOp]) -> Sequence[str]:
        releases = [op for op in ops if op.max_tenant < 0]
        acquires = [op for op in ops if op.max_tenant >= 0]
        metrics.STREAM_QUERIES.labels("slots_batch").inc()
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT beacon_slots(%s, %s::bigint[], %s::text[], %s::bigint[], %s::text[], %s::integer[], "
                "%s::integer[])",
                [  # as array literals: psycopg's list dumpers cost four times the rest (service/pgarray.py)
                    self._worker,
                    pgarray.literal(op.tenant_id for op in releases),
                    pgarray.literal(op.recipient for op in releases),
                    pgarray.literal(op.tenant_id for op in acquires),
                    pgarray.literal(op.recipient for op in acquires),
                    pgarray.literal(op.max_tenant for op in acquires),
                    pgarray.literal(op.max_recipient for op in acquires),
                ],
            )
            row = await cur.fetchone()
        decided = iter(list(row[0]) if row and row[0] is not None else [])
        return [("" if op.max_tenant < 0 else next(decided)) for op in ops]
