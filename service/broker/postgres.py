"""LISTEN/NOTIFY broker: one ``pg_notify`` per transaction, one LISTEN connection per worker process.

``pg_notify`` runs inside the publishing transaction, so an announcement exists only once its rows are
committed and a crash before commit announces nothing. NOTIFY serialises committing transactions
database-wide, which is why Beacon sends exactly one per transaction (a batch of 1000 rows: one NOTIFY).
The payload format is ``service/broker/payload.py`` (capped below PostgreSQL's 8000 bytes: bodies ride along
while they fit, else the listener fetches the id range once per process).
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import psycopg

from service.broker.base import Announcement, Broker, OnAnnouncement, OnConnected
from service.broker.payload import decode, encode

CHANNEL = "beacon"

log = logging.getLogger(__name__)


class PostgresBroker(Broker):
    database_channel: str

    def __init__(self, conninfo: str, channel: str = CHANNEL, *, max_backoff: float = 5.0) -> None:
        if not channel.isidentifier():
            raise ValueError(f"BROKER_CHANNEL must be an identifier, got {channel!r}")
        self.database_channel = channel
        self._conninfo = conninfo
        self._max_backoff = max_backoff
        self.backend_pid = None

    def announce(self, cursor: Any, announcement: Announcement) -> None:
        cursor.execute("SELECT pg_notify(%s, %s)", [self.database_channel, encode(announcement)])

    async def listen(self, on_announcement: OnAnnouncement, on_connected: OnConnected) -> None:
        backoff = 0.1
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, application_name="beacon-listener"
                ) as conn:
                    await conn.execute(f"LISTEN {self.database_channel}")
                    self.backend_pid = conn.info.backend_pid
                    backoff = 0.1
                    await on_connected(True)
                    # The queue is shared by the whole database: never stop reading, hand work off fast.
                    async for notify in conn.notifies():
                        try:
                            announcement = decode(notify.payload)
                        except (ValueError, KeyError, IndexError, TypeError):
                            log.warning(
                                "ignoring malformed announcement", extra={"payload": notify.payload[:200]}
                            )
                            continue
                        await on_announcement(announcement)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any connection failure: report, back off, reconnect
                log.warning("listener connection lost: %s", exc)
            self.backend_pid = None
            await on_connected(False)
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, self._max_backoff)
