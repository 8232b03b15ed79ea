"""The broker interface: announce inside the publishing transaction; listen once per worker process."""

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


class Broker(abc.ABC):
    #: A broker that lives in PostgreSQL names its NOTIFY channel here, so the publishing statement itself
    #: can announce (one round trip); other brokers leave it ``None`` and get ``announce`` calls instead.
    database_channel: str | None = None

    @abc.abstractmethod
    def announce(self, cursor: Any, announcement: Announcement) -> None:
        """Queue ``announcement`` inside the caller's open transaction: it is delivered only on commit."""

    @abc.abstractmethod
    async def listen(
        self,
        on_announcement: Callable[[Announcement], Awaitable[None]],
        on_connected: Callable[[bool], Awaitable[None]],
    ) -> None:
        """Deliver announcements until cancelled; reconnect on failure, reporting connection state changes."""
