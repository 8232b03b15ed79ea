"""Drain on SIGTERM: refuse new streams, close open ones spread over ``DRAIN_SECONDS``, then let the server stop."""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import time
from collections.abc import Callable
from typing import Any

from service.observability import metrics
from service.streaming.hub import Hub

log = logging.getLogger(__name__)


class Drainer:
    """Owns the worker's ``draining`` flag and the SIGTERM hook installed in front of uvicorn's handler."""

    def __init__(self, hub: Hub, open_streams: Callable[[], int], window: float) -> None:
        self.hub = hub
        self.window = window
        self.draining = False
        self._open_streams = open_streams
        self._previous_sigterm: Any = None

    def install_sigterm_hook(self) -> None:
        """Drain before the server's own shutdown: gunicorn sends SIGTERM, we close streams spread over
        ``DRAIN_SECONDS`` while refusing new ones, then hand the signal to uvicorn's handler."""
        try:
            previous = signal.getsignal(signal.SIGTERM)
            signal.signal(signal.SIGTERM, self._on_sigterm)
            self._previous_sigterm = previous
        except ValueError:  # not the main thread (tests embedding the app): no signal hook
            self._previous_sigterm = None

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        loop = asyncio.get_event_loop()
        if self.draining:
            self._forward_sigterm(signum, frame)
            return
        loop.call_soon_threadsafe(
            lambda: asyncio.ensure_future(self.drain(lambda: self._forward_sigterm(signum, frame)))
        )

    def _forward_sigterm(self, signum: int, frame: Any) -> None:
        previous = self._previous_sigterm
        if callable(previous):
            previous(signum, frame)

    async def drain(self, then: Callable[[], None] | None = None) -> None:
        """Refuse new streams, close open ones evenly over the window, then call ``then``."""
        self.draining = True
        window = self.window
        metrics.READY.set(0)
        subs = list(self.hub.subscriptions())
        random.shuffle(subs)  # spread over the window so clients do not all reconnect at once
        log.info("draining %d streams over %.1fs", len(subs), window)
        started = time.monotonic()
        for index, sub in enumerate(subs):
            due = started + window * 0.9 * index / max(len(subs), 1)
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            sub.close("drain")
        deadline = time.monotonic() + max(window * 0.1, 1.0)
        while self._open_streams() and time.monotonic() < deadline:  # noqa: ASYNC110 - bounded, 20 polls/s
            await asyncio.sleep(0.05)
        if then is not None:
            then()
