"""The group commit of per-connect statements (``service/streaming/batching.py``), in-process: what a failed
statement does to its waiters and to the requests nobody waits for (slot releases)."""

from __future__ import annotations

import asyncio

import pytest

from service.streaming import batching
from service.streaming.batching import Batcher


def test_a_failed_statement_fails_its_waiters_and_sends_its_releases_again(monkeypatch) -> None:
    monkeypatch.setattr(batching, "RETRY_SECONDS", 0.0)
    sent: list[list[str]] = []

    async def handle(queries: list[str]) -> list[str]:
        sent.append(queries)
        if len(sent) == 1:
            raise ConnectionError("the pooled connection was terminated")
        return [f"answer {q}" for q in queries]

    async def scenario() -> tuple[BaseException | None, str]:
        batcher: Batcher[str, str] = Batcher("test", handle, interval=0.0)
        waiter = asyncio.ensure_future(batcher.submit("acquire 1"))
        await asyncio.sleep(0)  # queued; the statement task has not run yet
        batcher.send_later("release 1")  # rides in the same statement
        failed = None
        try:
            await waiter
        except ConnectionError as exc:
            failed = exc
        answer = await batcher.submit("acquire 2")
        await batcher.flush()
        return failed, answer

    failed, answer = asyncio.run(scenario())
    assert isinstance(failed, ConnectionError)  # the connect is refused (503), its slot was not taken
    assert answer == "answer acquire 2"
    assert sent[0] == ["acquire 1", "release 1"]
    later = [query for batch in sent[1:] for query in batch]  # in the order the database got them
    assert later.index("release 1") < later.index("acquire 2"), sent
    assert sum(batch.count("release 1") for batch in sent[1:]) == 1  # sent again once it went through


def test_a_statement_without_waiters_that_fails_is_sent_again_on_its_own(monkeypatch) -> None:
    """Releases alone (no connect comes after them) are retried too, not left until the next connect."""
    monkeypatch.setattr(batching, "RETRY_SECONDS", 0.0)
    sent: list[list[str]] = []

    async def scenario() -> None:
        through = asyncio.Event()

        async def handle(queries: list[str]) -> list[str]:
            sent.append(queries)
            if len(sent) < 3:
                raise ConnectionError("database restarting")
            through.set()
            return [""] * len(queries)

        batcher: Batcher[str, str] = Batcher("test", handle, interval=0.0)
        batcher.send_later("release 1")
        await asyncio.wait_for(through.wait(), 5)
        await batcher.flush()

    asyncio.run(scenario())
    assert sent == [["release 1"]] * 3


@pytest.mark.parametrize("interval", [0.0, 0.01])
def test_requests_that_arrive_while_a_statement_is_in_flight_share_the_next(interval: float) -> None:
    sent: list[list[int]] = []

    async def scenario() -> list[int]:
        gate = asyncio.Event()

        async def handle(queries: list[int]) -> list[int]:
            sent.append(queries)
            if len(sent) == 1:
                await gate.wait()
            return [q * 10 for q in queries]

        batcher: Batcher[int, int] = Batcher("test", handle, interval)
        first = asyncio.ensure_future(batcher.submit(1))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        rest = [asyncio.ensure_future(batcher.submit(n)) for n in (2, 3, 4)]
        await asyncio.sleep(0)
        gate.set()
        answers = await asyncio.gather(first, *rest)
        await batcher.flush()
        return answers

    assert asyncio.run(scenario()) == [10, 20, 30, 40]
    assert sent == [[1], [2, 3, 4]]
