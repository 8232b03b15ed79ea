"""LISTEN/NOTIFY broker: one ``pg_notify`` per transaction, one LISTEN connection per worker process.

``pg_notify`` runs inside the publishing transaction, so an announcement exists only once its rows are
committed and a crash before commit announces nothing. NOTIFY serialises committing transactions
database-wide, which is why Beacon sends exactly one per transaction (a batch of 1000 rows: one NOTIFY).
Payloads are capped at 8000 bytes by PostgreSQL: bodies ride along while they fit, else the listener
fetches the id range once per process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from service.broker.base import Announcement, Broker, Row

CHANNEL = "beacon"
MAX_PAYLOAD = 7900  # PostgreSQL refuses payloads of 8000 bytes or more

log = logging.getLogger(__name__)


def encode(announcement: Announcement) -> str:
    """The NOTIFY payload: compact JSON, rows inline when they fit, else an id range."""
    head: dict[str, Any] = {"s": announcement.schema, "t": announcement.sent_at or time.time()}
    if announcement.unread:
        head["u"] = announcement.unread
    if announcement.close:
        head["c"] = announcement.close
    if not announcement.rows:
        return json.dumps(head, separators=(",", ":"))
    rows = [
        [r.id, r.recipient, r.topic, int(r.broadcast), r.event, r.created_at, r.data_json]
        for r in announcement.rows
    ]
    payload = json.dumps({**head, "n": rows}, separators=(",", ":"))
    if len(payload.encode()) <= MAX_PAYLOAD:
        return payload
    ids = [r.id for r in announcement.rows]
    head["r"] = [min(ids), max(ids)]
    return json.dumps(head, separators=(",", ":"))


def decode(payload: str) -> Announcement:
    message = json.loads(payload)
    rows = tuple(
        Row(
            id=n[0],
            recipient=n[1],
            topic=n[2],
            broadcast=bool(n[3]),
            event=n[4],
            created_at=n[5],
            data_json=n[6],
        )
        for n in message.get("n", ())
    )
    id_range = tuple(message["r"]) if "r" in message else None
    return Announcement(
        schema=message["s"],
        rows=rows,
        id_range=id_range,
        unread=message.get("u") or {},
        sent_at=float(message.get("t", 0.0)),
        close=message.get("c"),
    )


class PostgresBroker(Broker):
    database_channel = CHANNEL

    def __init__(self, conninfo: str, *, max_backoff: float = 5.0) -> None:
        self._conninfo = conninfo
        self._max_backoff = max_backoff
        self.backend_pid: int | None = None

    def announce(self, cursor: Any, announcement: Announcement) -> None:
        cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, encode(announcement)])

    async def listen(
        self,
        on_announcement: Callable[[Announcement], Awaitable[None]],
        on_connected: Callable[[bool], Awaitable[None]],
    ) -> None:
        backoff = 0.1
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, application_name="beacon-listener"
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
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
