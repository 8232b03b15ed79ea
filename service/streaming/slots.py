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

A worker takes slots only while it is live (migration ``streaming/0006``): a batch decided while its liveness
backend is gone answers ``not_live`` to every connect (the endpoint's ``503 unavailable``), and once this
worker knows it is not live (a ``not_live`` answer, or ``lost()`` when its liveness connection drops) it
answers ``not_live`` without a statement until it registers again. A registration (``register``) goes through
the same batcher, so no slot statement of this worker is in flight while it runs: it rewrites the worker's
rows from the slots this object holds (granted and not released), in one transaction with the batch's
acquisitions, and drops the batch's releases (already left out of what it holds). Releases made after that
go with later statements and apply to the rewritten rows: none is applied twice or lost
(docs/streaming.md, "Slots").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, NamedTuple

from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

from service import pgarray
from service.observability import metrics
from service.streaming.batching import Batcher
from service.streaming.store import opening_reads, read_openings

OK = "ok"  # the outcome of a granted slot
NOT_LIVE = "not_live"  # refused: this worker's liveness backend is gone, its grants would count for no one
RELEASE = -1  # ``SlotOp.max_tenant`` of a release
REGISTER = -2  # ``SlotOp.max_tenant`` of a registration


class SlotOp(NamedTuple):
    tenant_id: int
    recipient: str
    max_tenant: int  # RELEASE, REGISTER, or an acquisition's limit
    max_recipient: int
    reads_in: str | None = None  # a tenant's schema: also read its ids and the recipient's unread count
    pid: int = 0  # a registration's liveness backend


class Opening(NamedTuple):
    """A connect's answer: ``outcome`` ``"ok"``, ``"tenant"`` or ``"recipient"`` (the limit that refused it),
    or ``"not_live"`` (this worker is not live: nothing can be granted);
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
_REGISTER = sql.SQL("SELECT beacon_register_worker(%s, %s, %s::bigint[], %s::text[], %s::integer[])")


class Slots:
    """``await acquire(...)`` → an :class:`Opening`; ``release(...)`` returns at once."""

    def __init__(self, pool: AsyncConnectionPool, worker_id: str, interval: float) -> None:
        self._pool = pool
        self._worker = worker_id
        self.batcher: Batcher[SlotOp, Opening] = Batcher("slots", self._send, interval, self._unclaimed)
        # Slots granted to this worker and not released, per (tenant id, recipient): what a registration
        # writes as the worker's rows. Changed only by ``_send`` (grants) and ``release``, never across an
        # await, so a snapshot in ``_send`` (no other statement in flight) matches the rows plus the releases
        # still pending.
        self.held: Counter[tuple[int, str]] = Counter()
        self.live = False  # registered and not known to be gone: connects may ask the database

    async def acquire(
        self, tenant_id: int, recipient: str, max_tenant: int, max_recipient: int, reads_in: str | None = None
    ) -> Opening:
        """The slot, and with ``reads_in`` (the tenant's schema) the opening reads; call it after the stream
        joined the hub, so that nothing committed after the count is missed by both. ``not_live`` at once,
        without a statement, while this worker knows it is not live."""
        if not self.live:
            return Opening(NOT_LIVE)
        return await self.batcher.submit(SlotOp(tenant_id, recipient, max_tenant, max_recipient, reads_in))

    def release(self, tenant_id: int, recipient: str) -> None:
        self._forget(tenant_id, recipient)
        self.batcher.send_later(SlotOp(tenant_id, recipient, RELEASE, RELEASE))

    async def release_now(self, tenant_id: int, recipient: str) -> None:
        """``release``, returning once the statement that carries it has run: the slot is free for a connect
        on any worker (``HEAD /v1/stream`` gives back the slot it took before it answers). A failed statement
        leaves the release to go again with the next one, as ``release``'s would."""
        self._forget(tenant_id, recipient)
        op = SlotOp(tenant_id, recipient, RELEASE, RELEASE)
        try:
            await self.batcher.submit(op)
        except Exception:
            self.batcher.send_later(op)  # the failed statement released nothing

    def _forget(self, tenant_id: int, recipient: str) -> None:
        key = (tenant_id, recipient)
        if self.held[key] <= 1:
            self.held.pop(key, None)
        else:
            self.held[key] -= 1

    async def register(self, pid: int) -> bool:
        """Register backend ``pid`` as this worker's liveness and rewrite its rows from ``held`` (one
        transaction, in the batcher's order: see the module docstring). Returns whether the worker is live."""
        answer = await self.batcher.submit(SlotOp(0, "", REGISTER, REGISTER, pid=pid))
        return answer.outcome == OK

    def lost(self) -> None:
        """The liveness connection dropped: refuse connects without a statement until ``register``."""
        self.live = False

    async def close(self) -> None:
        await self.batcher.flush()

    async def _send(self, ops: list[SlotOp]) -> Sequence[Opening]:
        registration = next((op for op in reversed(ops) if op.max_tenant == REGISTER), None)
        if registration is not None:
            return await self._send_registering(ops, registration.pid)
        rows = await self._decide(ops, registering=None)
        return self._answers(ops, rows)

    async def _send_registering(self, ops: list[SlotOp], pid: int) -> Sequence[Opening]:
        """Register and rewrite this worker's rows as ``held`` says, then decide the batch's acquisitions, in
        one transaction; the batch's releases are not sent (``held`` already leaves them out)."""
        held = sorted(self.held.items())
        params = [
            self._worker,
            pid,
            pgarray.literal(t for (t, _), _ in held),
            pgarray.literal(r for (_, r), _ in held),
            pgarray.literal(n for _, n in held),
        ]
        metrics.STREAM_QUERIES.labels("slots_register").inc()
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(_REGISTER, params)
            row = await cur.fetchone()
            live = bool(row and row[0])
            rows = await self._decide(ops, registering=conn)
        self.live = live
        answers = self._answers(ops, rows)
        outcome = OK if live else NOT_LIVE
        return [
            Opening(outcome) if op.max_tenant == REGISTER else a for op, a in zip(ops, answers, strict=True)
        ]

    async def _decide(self, ops: list[SlotOp], registering: AsyncConnection[Any] | None) -> list[Any]:
        """The slot statement's rows for ``ops`` (on ``registering``'s connection, without its releases, when
        the batch registers); no statement when a registration's batch has no acquisition."""
        releases = [] if registering is not None else [op for op in ops if op.max_tenant == RELEASE]
        acquires = [op for op in ops if op.max_tenant >= 0]
        if registering is not None and not acquires:
            return []
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
        if registering is not None:
            cur = await registering.execute(query, params)
            return await cur.fetchall()
        async with self._pool.connection() as conn:
            cur = await conn.execute(query, params)
            return await cur.fetchall()

    def _answers(self, ops: list[SlotOp], rows: list[Any]) -> list[Opening]:
        """Each op's answer from the statement's rows; grants are added to ``held``, and a ``not_live``
        answer makes this worker refuse further connects without a statement until it registers."""
        decided = next((outcome or [] for schema, *_, outcome in rows if schema is None), [])
        bounds, unread = read_openings(row for row in rows if row[0] is not None)
        answers = iter(decided)
        result = []
        for op in ops:
            if op.max_tenant < 0:
                result.append(Opening(""))
                continue
            opening = _answer(op, next(answers), bounds, unread)
            if opening.outcome == OK:
                self.held[op.tenant_id, op.recipient] += 1
            elif opening.outcome == NOT_LIVE:
                self.live = False
            result.append(opening)
        return result

    def _unclaimed(self, op: SlotOp, answer: Opening) -> None:
        """A grant whose connect stopped waiting (cancelled) before the answer: no stream will release it."""
        if op.max_tenant >= 0 and answer.outcome == OK:
            self.release(op.tenant_id, op.recipient)


def _answer(
    op: SlotOp, outcome: str, bounds: dict[str, tuple[int, int | None]], unread: dict[tuple[str, str], int]
) -> Opening:
    if op.reads_in is None:
        return Opening(outcome)
    newest, oldest = bounds.get(op.reads_in, (0, None))  # no rows: the tenant's schema is gone
    return Opening(outcome, newest, oldest, unread.get((op.reads_in, op.recipient), 0))
