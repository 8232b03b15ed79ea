"""Redis pub/sub broker: the announcement goes to Redis after commit; one subscription per worker process.

PostgreSQL stays the store and the replay source; Redis only carries announcements (no persistence needed).
The publishing transaction does not NOTIFY: ``announce`` registers the publish with Django's ``on_commit``,
so nothing is announced before it is committed. Two publishers' announcements can reach Redis out of
commit order and a process can die between commit and announcement; workers detect both from the ids
(``service/streaming/listener.py``, docs/streaming.md "Redis as the broker"). A failed publish is logged and
counted, never an error for the client: the rows are stored and the listeners' checks pick them up.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis
from django.db import transaction
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from service.broker.base import Announcement, Broker, OnAnnouncement, OnConnected
from service.broker.payload import decode, encode
from service.observability import metrics

log = logging.getLogger(__name__)
CLIENT_NAME = "beacon"  # CLIENT LIST shows Beacon's connections as beacon-listener / beacon-publisher
PUBLISH_TIMEOUT = 1.0  # seconds; a publish never holds a request longer than this
PAUSE_AFTER_FAILURE = 1.0  # seconds without publish attempts after one failed (Redis is down)
HEALTH_SECONDS = 5.0  # a silent subscription is pinged after this long, and dropped after three times it


class RedisBroker(Broker):
    after_commit = True

    def __init__(self, url: str, channel: str, *, crash_file: str = "", max_backoff: float = 5.0) -> None:
        self._url = url
        self.channel = channel
        self._crash_file = crash_file
        self._max_backoff = max_backoff
        self._publisher: redis.Redis | None = None
        self._publisher_lock = threading.Lock()
        self._paused_until = 0.0

    # --- publishing side (Django's threads) ----------------------------------------------------------
    def announce(self, cursor: Any, announcement: Announcement) -> None:
        transaction.on_commit(lambda: self.publish(announcement))

    def publish(self, announcement: Announcement) -> None:
        """Send a committed transaction's announcement; failures are logged and counted, not raised."""
        self._crash_if_asked()
        if time.monotonic() < self._paused_until:
            metrics.BROKER_PUBLISH_FAILURES.inc()
            return
        try:
            self._client().publish(self.channel, encode(announcement))
        except redis.RedisError as exc:
            self._paused_until = time.monotonic() + PAUSE_AFTER_FAILURE
            metrics.BROKER_PUBLISH_FAILURES.inc()
            log.warning("could not announce to Redis (stored; streams catch up): %s", exc)

    def _client(self) -> redis.Redis:
        with self._publisher_lock:
            if self._publisher is None:
                self._publisher = redis.Redis.from_url(
                    self._url,
                    client_name=f"{CLIENT_NAME}-publisher",
                    socket_timeout=PUBLISH_TIMEOUT,
                    socket_connect_timeout=PUBLISH_TIMEOUT,
                    socket_keepalive=True,
                    health_check_interval=30,
                )
            return self._publisher

    def _crash_if_asked(self) -> None:
        """Tests only (``TEST_CRASH_AFTER_COMMIT``): die between commit and announcement, once per file."""
        if self._crash_file:
            try:
                Path(self._crash_file).unlink()
            except FileNotFoundError:
                return
            os._exit(9)

    # --- listening side (the worker's event loop) -------------------------------------------------------
    async def listen(self, on_announcement: OnAnnouncement, on_connected: OnConnected) -> None:
        backoff = 0.1
        while True:
            client = aioredis.Redis.from_url(
                self._url,
                client_name=f"{CLIENT_NAME}-listener",
                socket_connect_timeout=2,
                socket_keepalive=True,
                # Never retried by redis-py: a retry reconnects and resubscribes silently, so the listener
                # would miss the loss and skip the catch-up and close check each reconnect runs.
                retry=Retry(NoBackoff(), 0),
            )
            connected = False
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    # Wait for the confirmation: only then is every later announcement sure to reach us.
                    confirmation = await pubsub.get_message(timeout=HEALTH_SECONDS)
                    if confirmation is None or confirmation["type"] != "subscribe":
                        raise ConnectionError("no subscription confirmation from Redis")
                    connected = True
                    backoff = 0.1
                    await on_connected(True)
                    await self._read(pubsub, on_announcement)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any connection failure: report, back off, reconnect
                log.warning("Redis subscription lost: %s", exc)
            finally:
                await client.aclose()
            if connected:
                await on_connected(False)
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, self._max_backoff)

    @staticmethod
    async def _read(pubsub: Any, on_announcement: OnAnnouncement) -> None:
        """Hand announcements over until the connection fails or stays silent through three pings."""
        silent_since = time.monotonic()
        while True:
            message = await pubsub.get_message(timeout=HEALTH_SECONDS)
            if message is None:
                if time.monotonic() - silent_since > 3 * HEALTH_SECONDS:
                    raise ConnectionError("Redis did not answer pings")
                await pubsub.ping()
                continue
            silent_since = time.monotonic()
            if message["type"] != "message":
                continue  # pong
            try:
                announcement = decode(message["data"])
            except (ValueError, KeyError, IndexError, TypeError):
                log.warning("ignoring malformed announcement", extra={"payload": str(message["data"])[:200]})
                continue
            await on_announcement(announcement)
