"""The broker interface: announce a transaction's rows once they are committed; listen once per worker process."""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Row:
    """A notification as announced and as delivered (the SSE ``data`` is built from it)."""

    id: int
    recipient: str | None
    topic: str | None
    broadcast: bool
    event: str | None
    created_at: str  # RFC 3339, already formatted once
    data_json: str | None  # the encoded ``data``; None when too big to carry and must be fetched
    # When the row expires (``expires_at``, seconds since the epoch): replay from a worker's memory skips
    # expired rows as the database does. ``None`` from a publisher that predates the field.
    expires_at: float | None = None


@dataclass(frozen=True)
class Announcement:
    """Rows committed by one transaction of one tenant (``schema``), in id order."""

    schema: str
    rows: Sequence[Row] = ()
    id_range: tuple[int, int] | None = None  # set instead of rows when they did not fit the payload
    unread: dict[str, int] = field(default_factory=dict)  # recipient -> unread count after a read change
    sent_at: float = 0.0  # wall-clock seconds when announced (for the commit-to-write latency metric)
    # Set (to a close reason such as "secret_rotated") to end every open stream of the tenant: workers drop
    # their cached tenant first, so reconnects are checked against the new state (tenants/lifecycle.py).
    close: str | None = None

    def span(self) -> tuple[int, int] | None:
        """``(first id, last id)`` of the announced rows, or ``None`` for an unread-only announcement."""
        if self.id_range is not None:
            return self.id_range
        if self.rows:
            return self.rows[0].id, self.rows[-1].id
        return None


OnAnnouncement = Callable[[Announcement], Awaitable[None]]
OnConnected = Callable[[bool], Awaitable[None]]


class Broker(abc.ABC):
    #: A broker that lives in PostgreSQL names its NOTIFY channel here, so the publishing statement itself
    #: can announce (one round trip); other brokers leave it ``None`` and get ``announce`` calls instead.
    database_channel: str | None = None
    #: True when an announcement can be lost or overtaken while the listener stays connected (a broker that
    #: announces after commit): workers then check their tenants' newest ids every ``BROKER_CHECK_SECONDS``.
    after_commit: bool = False
    #: The listener's PostgreSQL backend, which stands for the worker's liveness in the slot tables; brokers
    #: outside PostgreSQL leave it ``None`` and the worker keeps a presence connection instead.
    backend_pid: int | None = None

    @abc.abstractmethod
    def announce(self, cursor: Any, announcement: Announcement) -> None:
        """Announce ``announcement`` once the caller's transaction commits (never before)."""

    @abc.abstractmethod
    async def listen(self, on_announcement: OnAnnouncement, on_connected: OnConnected) -> None:
        """Deliver announcements until cancelled; reconnect on failure, reporting connection state changes.

        ``on_connected(True)`` must be awaited only once the subscription is active, so that everything
        announced after it returns is delivered.
        """
