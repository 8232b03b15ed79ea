"""Streams arm no timers: the worker's ticker ends blocked writes and wakes streams past their deadline."""

from __future__ import annotations

import asyncio
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.streaming import endpoint
from service.streaming.heartbeats import run_heartbeats
from service.streaming.hub import Hub, Subscription, keys_for


def _sub(hub: Hub) -> Subscription:
    sub = Subscription("s", "u", keys_for("s", "u", ()), 10)
    hub.add(sub)
    return sub


def test_a_blocked_write_times_out_and_a_passed_deadline_wakes_the_stream(settings: Any) -> None:
    settings.STREAM_SEND_TIMEOUT_SECONDS = 0.2

    async def main() -> None:
        hub = Hub()
        ticker = asyncio.create_task(run_heartbeats(hub, 0.2))  # ticks every 50 ms
        blocked, fast = _sub(hub), _sub(hub)
        written: list[bytes] = []

        async def blocked_send(message: Any) -> None:
            await asyncio.Event().wait()  # a client that stopped reading

        async def fast_send(message: Any) -> None:
            written.append(message["body"])

        async def stream(sub: Subscription, send: Any) -> None:
            sub.task = asyncio.current_task()
            await endpoint._write(send, b"x", sub)

        with pytest.raises(TimeoutError):
            await asyncio.wait_for(stream(blocked, blocked_send), 5)
        await stream(fast, fast_send)
        assert written == [b"x"] and fast.write_deadline == float("inf")
        # A stream waiting on its queue with a deadline in the past is woken by the ticker, not by a timer.
        fast.deadline = asyncio.get_running_loop().time() + 0.1
        await asyncio.wait_for(fast.wait(), 5)
        ticker.cancel()

    asyncio.run(main())


@given(st.lists(st.binary(min_size=1, max_size=3000), max_size=200), st.integers(1, 8), st.integers(1, 9000))
def test_a_prelude_is_grouped_into_bounded_writes_in_order(
    frames: list[bytes], most: int, most_bytes: int
) -> None:
    """``_grouped`` keeps every byte in order and each write within the live writes' bounds (a frame
    larger than the byte bound goes alone); the common resume (retry, a few frames, unread) is one write."""
    with (
        patch.object(endpoint, "MAX_COALESCED", most),
        patch.object(endpoint, "MAX_COALESCED_BYTES", most_bytes),
    ):
        writes = endpoint._grouped(frames)
    assert b"".join(writes) == b"".join(frames)
    assert len(writes) <= len(frames)
    sizes = iter(frames)
    for write in writes:
        group: list[bytes] = []
        while b"".join(group) != write:
            group.append(next(sizes))
        assert len(group) <= most
        assert len(group) == 1 or len(write) <= most_bytes
    assert len(endpoint._grouped([b"retry: 3000\n\n", b"id: 1\ndata: {}\n\n", b"event: u\n\n"])) == 1
