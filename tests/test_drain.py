"""The drain's signal hooks, in-process with real signals: SIGTERM spreads the closes over the window, SIGINT
(Ctrl-C, and the master's SIGQUIT turned into SIGINT by the worker) closes every stream at once, and both then
hand SIGTERM to the server's own handler (uvicorn's in production). End to end: tests/test_lifecycle.py."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Iterator

import pytest

from service.streaming.drain import Drainer
from service.streaming.hub import Hub, Subscription, keys_for

WINDOW = 600.0  # seconds: a spread drain would not close its second stream within any test's wait


class Server:
    """Stands in for uvicorn's handlers: records the signals the drain hands over."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self.changed = asyncio.Event()

    def handle_exit(self, signum: int, frame: object) -> None:
        self.received.append(signum)
        self.changed.set()

    async def handed(self, count: int) -> None:
        while len(self.received) < count:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 10)


@pytest.fixture(autouse=True)
def _signal_handlers_kept() -> Iterator[None]:
    kept = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    yield
    for signum, handler in kept.items():
        signal.signal(signum, handler)


def _run(
    scenario: Callable[[Drainer, list[Subscription], Server], Awaitable[None]],
    streams: int = 5,
    *,
    stuck: int = 0,
) -> None:
    """Run ``scenario`` with ``streams`` open streams, each a task that ends (and leaves the hub) once its
    stream is closed, as the endpoint's do; the first ``stuck`` of them are blocked in a write instead, as
    on a client that stopped reading, and end only when that write is interrupted."""

    async def main() -> None:
        hub = Hub()
        subs = [Subscription("s", f"u{i}", keys_for("s", f"u{i}", ()), 10) for i in range(streams)]

        async def stream(sub: Subscription, blocked: bool) -> None:
            try:
                if blocked:
                    sub.write_deadline = asyncio.get_running_loop().time() + 3600
                    await asyncio.Event().wait()  # the socket never drains
                while sub.closed is None:
                    await sub.wait()
            finally:
                hub.remove(sub)

        for index, sub in enumerate(subs):
            hub.add(sub)
            sub.task = asyncio.ensure_future(stream(sub, index < stuck))
        server = Server()
        for signum in (signal.SIGTERM, signal.SIGINT):  # what uvicorn installs before the lifespan starts
            signal.signal(signum, server.handle_exit)
        drainer = Drainer(hub, lambda: len(hub), WINDOW)
        drainer.install_signal_hooks()
        await asyncio.sleep(0)  # the streams are parked
        await scenario(drainer, subs, server)

    asyncio.run(main())


async def _until(condition: Callable[[], bool]) -> None:
    async def poll() -> None:
        while not condition():  # noqa: ASYNC110 - a plain attribute, nothing to wait on
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), 10)


def test_sigint_closes_every_stream_at_once_then_hands_sigterm_to_the_server() -> None:
    async def scenario(drainer: Drainer, subs: list[Subscription], server: Server) -> None:
        signal.raise_signal(signal.SIGINT)
        assert drainer.draining  # new streams are refused from the signal on
        await server.handed(1)
        assert [sub.closed for sub in subs] == ["drain"] * len(subs)
        assert server.received == [signal.SIGTERM]  # the worker ends as after a drain (gunicorn: normal)

    _run(scenario)


def test_sigterm_spreads_the_closes_and_a_ctrl_c_closes_the_rest_at_once() -> None:
    async def scenario(drainer: Drainer, subs: list[Subscription], server: Server) -> None:
        signal.raise_signal(signal.SIGTERM)
        await _until(lambda: any(sub.closed for sub in subs))  # the first is due at once
        await asyncio.sleep(0.1)
        assert sum(sub.closed is not None for sub in subs) == 1  # the next is due after WINDOW * 0.9 / 5
        assert server.received == []
        signal.raise_signal(signal.SIGINT)
        await server.handed(1)
        assert [sub.closed for sub in subs] == ["drain"] * len(subs)
        assert server.received == [signal.SIGTERM]

    _run(scenario)


@pytest.mark.parametrize("streams", [0, 5])
def test_a_ctrl_c_after_the_hand_over_is_not_a_force_exit(streams: int) -> None:
    """A terminal's Ctrl-C reaches the worker directly and again through the master's SIGQUIT, the second
    often after a drain of no streams is already over: neither is uvicorn's force exit, which would skip
    the lifespan shutdown (slots released, pools closed)."""

    async def scenario(drainer: Drainer, subs: list[Subscription], server: Server) -> None:
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)
        await server.handed(1)
        signal.raise_signal(signal.SIGINT)  # the master's, late
        await asyncio.sleep(0.1)
        assert server.received == [signal.SIGTERM]

    _run(scenario, streams)


def test_a_write_blocked_on_a_client_that_stopped_reading_is_cut() -> None:
    """A closed stream whose task is stuck in a write (a client that stopped reading) cannot see its close:
    once the others have ended, its write is interrupted (the endpoint then aborts its connection) instead
    of holding up the shutdown until STREAM_SEND_TIMEOUT_SECONDS or for good."""

    async def scenario(drainer: Drainer, subs: list[Subscription], server: Server) -> None:
        signal.raise_signal(signal.SIGINT)
        await server.handed(1)
        assert subs[0].write_timed_out and subs[0].task is not None and subs[0].task.cancelled()
        assert [sub.write_timed_out for sub in subs[1:]] == [False] * (len(subs) - 1)
        assert [sub.closed for sub in subs] == ["drain"] * len(subs)
        assert len(drainer.hub) == 0

    _run(scenario, stuck=1)


def test_a_second_sigterm_during_a_drain_stops_the_server_at_once() -> None:
    async def scenario(drainer: Drainer, subs: list[Subscription], server: Server) -> None:
        signal.raise_signal(signal.SIGTERM)
        await _until(lambda: any(sub.closed for sub in subs))
        signal.raise_signal(signal.SIGTERM)
        await server.handed(1)
        assert server.received == [signal.SIGTERM]
        assert sum(sub.closed is not None for sub in subs) == 1  # the drain goes on meanwhile

    _run(scenario)
