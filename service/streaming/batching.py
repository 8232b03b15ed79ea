"""Group commit for per-connect queries: the requests of many connects answered by one statement.

A request waits for the batch being built; when no statement is in flight the batch goes at once, else it goes
when the one in flight is answered and at least ``interval`` seconds after it was sent. When a statement fails
(a dropped connection, a database restart) its waiters get the error, and the requests nobody waits for (slot
releases) go again with the next statement, at most ``RETRY_SECONDS`` later: they are never lost. A lone connect
therefore waits for one round trip, and a storm of connects costs one statement per ``interval`` per worker
instead of one (or two) per connect, without serialising anything per connect. An answer whose waiter stopped
waiting (cancelled) goes to ``unclaimed``, so that what it took (a slot) can be given back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from service.observability import metrics

log = logging.getLogger(__name__)
RETRY_SECONDS = 1.0  # after a failed statement, before its waiter-less requests are sent again
Q = TypeVar("Q")
A = TypeVar("A")


class Batcher(Generic[Q, A]):
    """Answers ``await submit(q)`` with ``handle([q, …])[i]``; a failed statement fails its whole batch."""

    def __init__(
        self,
        name: str,
        handle: Callable[[list[Q]], Awaitable[Sequence[A]]],
        interval: float,
        unclaimed: Callable[[Q, A], None] | None = None,
    ) -> None:
        self.name = name
        self._unclaimed = unclaimed
        self.statements = 0  # batches sent (tests and the benchmark read it)
        self._handle = handle
        self._interval = interval
        self._pending: list[tuple[Q, asyncio.Future[A] | None]] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    async def submit(self, query: Q) -> A:
        future: asyncio.Future[A] = asyncio.get_running_loop().create_future()
        self._enqueue(query, future)
        return await future

    def send_later(self, query: Q) -> None:
        """Queue ``query`` with no one waiting for the answer (a release): it rides on the next batch."""
        self._enqueue(query, None)

    def _enqueue(self, query: Q, future: asyncio.Future[A] | None) -> None:
        self._pending.append((query, future))
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = asyncio.ensure_future(self._run())
        assert self._wake is not None
        self._wake.set()

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            self.statements += 1
            metrics.BATCH_STATEMENTS.labels(self.name).inc()
            metrics.BATCHED_REQUESTS.labels(self.name).inc(len(batch))
            try:
                answers = await self._handle([query for query, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if future is not None and not future.done():
                        future.set_exception(exc)
                again = [(query, None) for query, future in batch if future is None]
                if again:
                    log.warning(
                        "%s: a statement failed, %d requests go again: %s", self.name, len(again), exc
                    )
                    self._pending[:0] = again  # first: a release goes before the acquisitions after it
                    await asyncio.sleep(RETRY_SECONDS)
                    self._wake.set()
                    continue
            else:
                self._answer(batch, answers)
            await asyncio.sleep(self._interval)  # what arrives meanwhile goes in the next statement

    def _answer(self, batch: list[tuple[Q, asyncio.Future[A] | None]], answers: Sequence[A]) -> None:
        for (query, future), answer in zip(batch, answers, strict=True):
            if future is None:
                continue
            if not future.done():
                future.set_result(answer)
            elif future.cancelled() and self._unclaimed is not None:
                self._unclaimed(query, answer)

    async def flush(self) -> None:
        """Send what is pending now (shutdown), then stop the loop."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        batch, self._pending = self._pending, []
        if batch:
            with contextlib.suppress(Exception):
                await self._handle([query for query, _ in batch])
            for _, future in batch:
                if future is not None and not future.done():
                    future.cancel()
