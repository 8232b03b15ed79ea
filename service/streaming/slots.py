"""Stream slots (tenant and recipient limits, all pods) taken and given back in batches (``beacon_slots``),
with what an opening stream reads of its tenant (newest and oldest ids, its unread count) in the same
statement.

Each connect asks for its slot through a :class:`~service.streaming.batching.Batcher`: the connects of one
worker that arrive while a statement is in flight share the next statement, and releases ride along with it
(or go on their own within ``interval``). A storm of connects thus costs one statement per batch, not one
for the slots and another for the counts (issue 13: a few hundred statements for 10,000 resumes). The
limits stay exact across workers and pods (migration ``streaming/0002``); a worker killed with SIGKILL stops
counting when its liveness backend goes (``service/streaming/presence.py``). A release not yet sent only makes
the count too high for at most one batch interval: never a stream over a limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from service import pgarray
from service.observability import metrics
from service.streaming.batching import Batcher
from service.streaming.store import opening_reads, read_openings

OK = "ok"  # the outcome of a granted slot


class SlotOp(NamedTuple):
    tenant_id: int
    recipient: str
    max_tenant: int  # -1 for a release
    max_recipient: int
    reads_in: str | None = None  # a tenant's schema: also read its ids and the recipient's unread count


class Opening(NamedTuple):
    """A connect's answer: ``outcome`` ``"ok"``, ``"tenant"`` or ``"recipient"`` (the limit that refused it);
    with ``reads_in``, the tenant's newest id (0 when empty), oldest retained id (``None`` when empty) and the
    recipient's unread count, read after the slot was decided, in the same statement."""

    outcome: str
    newest: int = 0
    oldest: int | None = None
    unread: int = 0


_SLOTS = sql.SQL(
    "SELECT NULL::text, NULL::text, NULL::bigint, NULL::bigint, beacon_slots(%s, %s::bigint[], %s::text[], "
    "%s::bigint[], %s::text[], %s::integer[], %s::integer[])"
)


class Slots:
    """``await acquire(...)`` → an :class:`Opening`; ``release(...)`` returns at once."""

    def __init__(self, pool: AsyncConnectionPool, worker_id: str, interval: float) -> None:
        self._pool = pool
        self._worker = worker_id
        self.batcher: Batcher[SlotOp, Opening] = Batcher("slots", self._send, interval)

    async def acquire(
        self, tenant_id: int, recipient: str, max_tenant: int, max_recipient: int, reads_in: str | None = None
    ) -> Opening:
        """The slot, and with ``reads_in`` (the tenant's schema) the opening reads; call it after the stream
        joined the hub, so that nothing committed after the count is missed by both."""
        return await self.batcher.submit(SlotOp(tenant_id, recipient, max_tenant, max_recipient, reads_in))

    def release(self, tenant_id: int, recipient: str) -> None:
        self.batcher.send_later(SlotOp(tenant_id, recipient, -1, -1))

    async def close(self) -> None:
        await self.batcher.flush()

    async def _send(self, ops: list[SlotOp]) -> Sequence[Opening]:
        releases = [op for op in ops if op.max_tenant < 0]
        acquires = [op for op in ops if op.max_tenant >= 0]
        reads: dict[str, list[str]] = {}
        for op in acquires:
            if op.reads_in is not None:
                reads.setdefault(op.reads_in, []).append(op.recipient)
        params = [  # as array literals: psycopg's list dumpers cost four times the rest (service/pgarray.py)
            self._worker,
            pgarray.literal(op.tenant_id for op in releases),
            pgarray.literal(op.recipient for op in releases),
            pgarray.literal(op.tenant_id for op in acquires),
            pgarray.literal(op.recipient for op in acquires),
            pgarray.literal(op.max_tenant for op in acquires),
            pgarray.literal(op.max_recipient for op in acquires),
            *(pgarray.literal(dict.fromkeys(recipients)) for recipients in reads.values()),
        ]
        query = sql.SQL(" UNION ALL ").join([_SLOTS, *(opening_reads(schema) for schema in reads)])
        metrics.STREAM_QUERIES.labels("slots_batch").inc()
        async with self._pool.connection() as conn:
            cur = await conn.execute(query, params)
            rows = await cur.fetchall()
        decided = next((outcome or [] for schema, *_, outcome in rows if schema is None), [])
        bounds, unread = read_openings(row for row in rows if row[0] is not None)
        answers = iter(decided)
        return [
            _answer(op, next(answers), bounds, unread) if op.max_tenant >= 0 else Opening("") for op in ops
        ]


def _answer(
    op: SlotOp, outcome: str, bounds: dict[str, tuple[int, int | None]], unread: dict[tuple[str, str], int]
) -> Opening:
    if op.reads_in is None:
        return Opening(outcome)
    newest, oldest = bounds.get(op.reads_in, (0, None))  # no rows: the tenant's schema is gone
    return Opening(outcome, newest, oldest, unread.get((op.reads_in, op.recipient), 0))
