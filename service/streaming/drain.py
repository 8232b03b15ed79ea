"""Drain before the server stops: refuse new streams, close open ones, then let uvicorn shut down.

SIGTERM (Kubernetes, a rolling update, gunicorn's graceful stop) spreads the closes over ``DRAIN_SECONDS`` so
that clients do not all reconnect to the other pods at once. SIGINT (Ctrl-C, and gunicorn's quick shutdown:
the master's SIGQUIT, which ``service.serving.BeaconWorker`` turns into SIGINT) closes them all at once. Either
way each client resumes elsewhere with ``Last-Event-ID``, nothing is lost, and uvicorn then runs the lifespan
shutdown (slots released, pools closed) before the worker exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import signal
import time
from collections.abc import Callable
from typing import Any

from service.observability import metrics
from service.streaming.hub import Hub

log = logging.getLogger(__name__)
# Seconds a quick shutdown waits for closed streams to end (milliseconds, unless blocked): gunicorn gives a
# worker 2 s after a Ctrl-C that follows its SIGTERM.
QUICK_WAIT = 0.5


class Drainer:
    """Owns the worker's ``draining`` flag and the SIGTERM and SIGINT hooks installed in front of uvicorn's."""

    def __init__(self, hub: Hub, open_streams: Callable[[], int], window: float) -> None:
        self.hub = hub
        self.window = window
        self.draining = False
        self._open_streams = open_streams
        self._server_stop: Any = None  # uvicorn's SIGTERM handler, which stops the server after a drain
        self._quick = asyncio.Event()  # set: close the rest now (binds to a loop at its first wait)
        self._handed_over = False
        self._task: asyncio.Task[None] | None = None  # kept: the event loop holds its tasks only weakly

    def install_signal_hooks(self) -> None:
        """Call from the event loop's thread once the server runs (the ASGI lifespan startup), after uvicorn
        installed its own handlers: its SIGTERM one is called when the drain is done."""
        try:
            server_stop = signal.getsignal(signal.SIGTERM)
            for signum in (signal.SIGTERM, signal.SIGINT):  # uvicorn's SIGINT handler is not called again
                signal.signal(signum, self._on_signal)
            self._server_stop = server_stop
        except ValueError:  # not the main thread (tests embedding the app): no signal hook
            self._server_stop = None

    def _on_signal(self, signum: int, frame: Any) -> None:
        # A signal handler runs between two steps of the event loop's own code: only call_soon_threadsafe
        # (which also wakes the loop) is safe to touch the loop with.
        loop = asyncio.get_event_loop()
        quick = signum == signal.SIGINT
        if not self.draining:
            self.draining = True  # at once: a second signal before the task runs is a second signal
            loop.call_soon_threadsafe(self._start, quick, frame)
        elif not quick:
            self._stop_server(frame)  # a second SIGTERM stops the server now, as before the hook
        elif not self._handed_over:
            loop.call_soon_threadsafe(self._quick.set)  # Ctrl-C during a SIGTERM drain: the rest close now
        # A SIGINT after the hand-over is not uvicorn's force exit (which skips the lifespan shutdown: slots
        # not released, pools not closed): a terminal's Ctrl-C reaches the worker both directly and through
        # the master's SIGQUIT, the second often after a drain of no streams is over. The shutdown is bounded
        # anyway (blocked writes are cut below), and the master kills what outlives graceful_timeout.

    def _start(self, quick: bool, frame: Any) -> None:
        # uvicorn stops on SIGTERM as it would have without the hook (gunicorn logs a worker ended by SIGTERM
        # as a normal exit, by SIGINT as unexpected).
        self._task = asyncio.ensure_future(self.drain(lambda: self._stop_server(frame), quick=quick))

    def _stop_server(self, frame: Any) -> None:
        if callable(self._server_stop):
            self._server_stop(signal.SIGTERM, frame)

    async def drain(self, then: Callable[[], None] | None = None, *, quick: bool = False) -> None:
        """Refuse new streams, close open ones (evenly over the window, or all at once when ``quick``),
        wait up to a second (a tenth of the window if longer; ``QUICK_WAIT`` when quick) for them to end, cut
        the writes still blocked on clients that stopped reading, then call ``then``."""
        self.draining = True
        if quick:
            self._quick.set()
        window = self.window
        metrics.READY.set(0)
        subs = list(self.hub.subscriptions())
        random.shuffle(subs)  # spread over the window so clients do not all reconnect at once
        if quick:
            log.info("closing %d streams at once (quick shutdown)", len(subs))
        else:
            log.info("draining %d streams over %.1fs", len(subs), window)
        started = time.monotonic()
        for index, sub in enumerate(subs):
            delay = started + window * 0.9 * index / len(subs) - time.monotonic()
            if delay > 0 and not self._quick.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._quick.wait(), delay)
            sub.close("drain")
        await self._until_streams_end(QUICK_WAIT if self._quick.is_set() else max(window * 0.1, 1.0))
        # A stream still open is one blocked writing to a client that stopped reading (its close cannot reach
        # it until STREAM_SEND_TIMEOUT_SECONDS): its write ends now, as a slow consumer's, and the endpoint
        # aborts its connection, which uvicorn's shutdown would otherwise wait on for good.
        for sub in list(self.hub.subscriptions()):
            if sub.write_deadline < math.inf:
                sub.time_out_write()
        await self._until_streams_end(QUICK_WAIT)
        self._handed_over = True
        if then is not None:
            then()

    async def _until_streams_end(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self._open_streams() and time.monotonic() < deadline:  # noqa: ASYNC110 - bounded, 20 polls/s
            await asyncio.sleep(0.05)
