"""Storing notifications: one transaction per request, rows in commit order, one announcement.

The order of a tenant's ids is its commit order: every publishing transaction takes a transaction-scoped
advisory lock on the tenant before it inserts, so a transaction that took smaller ids has committed before
any later one can take larger ids. Replay can then trust ``id > last_event_id`` (see docs/streaming.md).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import math
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from django.conf import settings
from django.db import DatabaseError, OperationalError, connection, transaction
from django.utils import timezone
from django_tenants.utils import schema_context
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from service import jsonbody, pgarray
from service.broker import default_broker
from service.broker.base import Announcement, Row
from service.db import run_db
from service.errors import ApiError
from service.notifications import validation as v
from service.notifications.schemas import PublishIn
from service.observability import metrics
from service.timefmt import rfc3339
from tenants.directory import TenantInfo

RATE_LIMITED_SQLSTATE = "BR429"  # raised by beacon_publish when the tenant is over its publish rate
IDEMPOTENCY_WINDOW = timedelta(hours=24)
IDEMPOTENCY_WAIT = "10s"
MAX_ROWS_PER_REQUEST = 10_000


@dataclass(frozen=True)
class Outcome:
    status: int
    body: dict[str, Any]
    replayed: bool = False

    def to_bytes(self) -> bytes:
        """The response body as both publish routes send it."""
        return json.dumps(self.body).encode()


def request_hash(route: str, body: Any) -> str:
    """Equal JSON after parsing (``jsonbody.parse``) hashes equally: key order, white space and the spelling
    of one stored number (``1e300`` and ``1E+300``, ``-0.0`` and ``0.0``) do not matter. Numbers PostgreSQL
    stores differently differ: ``2`` and ``2.0`` (numeric keeps the scale, and replays print it)."""
    canonical = jsonbody.dumps([route, body], sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def encoded_data(item: PublishIn, tenant: TenantInfo, field: str) -> str:
    """The ``data`` text stored, announced and streamed live: numbers as PostgreSQL prints them on replay
    (``jsonbody.dumps``), so a live event and its replay carry the same number texts."""
    data_json = jsonbody.dumps(item.data)
    if len(data_json.encode()) > tenant.max_payload_bytes:
        raise ApiError(
            413,
            "payload_too_large",
            f"{field}: encoded data is larger than the tenant's limit of {tenant.max_payload_bytes} bytes",
            field=field,
        )
    return data_json


def encoded_items(route: str, items: list[PublishIn], tenant: TenantInfo) -> list[tuple[PublishIn, str]]:
    """Each item with its encoded ``data``; ``413`` naming ``data`` (``notifications[i].data`` in a batch)
    when one is larger than the tenant's limit."""
    prefix = "notifications[{}]." if route == "batch" else ""
    return [(item, encoded_data(item, tenant, prefix.format(i) + "data")) for i, item in enumerate(items)]


@dataclass(frozen=True)
class _Pending:
    recipient: str | None
    topic: str | None
    broadcast: bool
    event: str | None
    data_json: str
    ttl: int


def effective_ttl(requested: int | None, tenant: TenantInfo) -> int:
    """The row's ttl: the request's, else the tenant's default, else 30 days; never above the tenant's
    maximum retention (docs/decisions.md: a longer ttl is shortened, not refused)."""
    ttl = requested or tenant.default_ttl or v.DEFAULT_TTL
    return min(ttl, tenant.max_retention) if tenant.max_retention else ttl


def expand(items: list[tuple[PublishIn, str]], tenant: TenantInfo) -> list[_Pending]:
    """One pending row per stored target (``recipients`` fan out to one row each)."""
    rows: list[_Pending] = []
    for item, data_json in items:
        ttl = effective_ttl(item.ttl, tenant)
        if item.recipients is not None:
            rows.extend(_Pending(r, None, False, item.event, data_json, ttl) for r in item.recipients)
        else:
            rows.append(
                _Pending(item.recipient, item.topic, bool(item.broadcast), item.event, data_json, ttl)
            )
    if len(rows) > MAX_ROWS_PER_REQUEST:
        raise ApiError(
            413,
            "payload_too_large",
            f"a request may store at most {MAX_ROWS_PER_REQUEST} rows",
            field="notifications",
        )
    return rows


def publish(
    tenant: TenantInfo,
    items: list[tuple[PublishIn, str]],
    *,
    idempotency_key: str | None = None,
    body_hash: str | None = None,
) -> Outcome:
    """Store ``items`` (each with its encoded data) for ``tenant`` and announce them: all or nothing.

    Without an ``Idempotency-Key`` this is one statement (``beacon_publish``) in its own transaction; with
    one, the key is claimed and answered in the same transaction.
    """
    pending = expand(items, tenant)
    now = timezone.now()
    with schema_context(tenant.schema):
        if idempotency_key is None:
            stored = _store(connection.cursor(), tenant, pending, now)
            body = _body_of(stored)
        else:
            with transaction.atomic():
                cursor = connection.cursor()
                replay = _claim_idempotency_key(cursor, idempotency_key, body_hash or "", now)
                if replay is not None:
                    return replay
                stored = _store(cursor, tenant, pending, now)
                body = _body_of(stored)
                cursor.execute(
                    "UPDATE beacon_idempotency SET response = %s::jsonb WHERE key = %s",
                    [json.dumps(body), idempotency_key],
                )
    metrics.NOTIFICATIONS_INGESTED.labels(metrics.tenant_label(tenant.slug)).inc(len(stored))
    return Outcome(201, body)


_PUBLISH_CALL = (
    "beacon_publish(%s, %s, %s, %s, %s, %s::text[], %s::text[], %s::boolean[], %s::text[], "
    "%s::text[], %s::integer[], %s, %s, %s, %s::integer)"
)


@dataclass(frozen=True)
class _Call:
    """The arguments of one ``beacon_publish`` call, and what it needs to build the stored rows."""

    args: list[Any]
    created: str
    sent_at: float
    window: int
    channel: str | None


def _call(tenant: TenantInfo, pending: list[_Pending], now: datetime, requests: int = 1) -> _Call:
    """``requests``: how many API requests the rows come from (each counts once in the rate window)."""
    broker = default_broker()
    channel = broker.database_channel if settings.PUBLISH_ANNOUNCE else None
    created = rfc3339(now)
    sent_at = time.time()
    window = int(sent_at)
    args = [
        tenant.id,
        tenant.publish_rate_per_second,
        window,
        now,
        created,
        # the rows' columns as array literals: psycopg's list dumpers cost more than the call (service/pgarray)
        pgarray.literal(p.recipient for p in pending),
        pgarray.literal(p.topic for p in pending),
        pgarray.literal(p.broadcast for p in pending),
        pgarray.literal(p.event for p in pending),
        pgarray.literal(p.data_json for p in pending),
        pgarray.literal(p.ttl for p in pending),
        channel,
        tenant.schema,
        sent_at,
        requests,
    ]
    return _Call(args, created, sent_at, window, channel)


def _rate_limited(tenant: TenantInfo, window: int) -> ApiError:
    return ApiError(
        429,
        "rate_limited",
        f"over the tenant's publish rate of {tenant.publish_rate_per_second} requests per second",
        headers={"Retry-After": str(max(1, math.ceil(window + 1 - time.time())))},
    )


def _rows(ids: list[int], pending: list[_Pending], call: _Call, now: datetime) -> list[Row]:
    epoch = now.timestamp()
    return [
        Row(i, p.recipient, p.topic, p.broadcast, p.event, call.created, p.data_json, epoch + p.ttl)
        for i, p in zip(ids, pending, strict=True)
    ]


def _store(cursor: Any, tenant: TenantInfo, pending: list[_Pending], now: datetime) -> list[Row]:
    """Lock, count, insert and announce in one round trip (see migration 0002)."""
    call = _call(tenant, pending, now)
    try:
        cursor.execute("SELECT " + _PUBLISH_CALL, call.args)
    except DatabaseError as exc:
        if getattr(exc.__cause__, "sqlstate", None) == RATE_LIMITED_SQLSTATE:
            raise _rate_limited(tenant, call.window) from None
        raise
    (ids,) = cursor.fetchone()
    stored = _rows(ids, pending, call, now)
    if settings.PUBLISH_ANNOUNCE and call.channel is None:  # a broker outside PostgreSQL: announce from here
        default_broker().announce(cursor, Announcement(tenant.schema, stored, sent_at=call.sent_at))
    return stored


# --- the common case without a thread: no Idempotency-Key; NOTIFY from the statement, Redis from the loop --
_direct: tuple[asyncio.AbstractEventLoop, AsyncConnectionPool] | None = None


def use_direct_pool(pool: AsyncConnectionPool | None) -> None:
    """Publish on ``pool`` (an async pool on the running event loop: the worker's lifespan opens it) when
    :func:`publish_direct` applies; ``None`` turns it off (shutdown)."""
    global _direct
    _direct = None if pool is None else (asyncio.get_running_loop(), pool)


def direct_pool() -> AsyncConnectionPool | None:
    """The pool for :func:`publish_direct`, or ``None``: outside the worker's own loop (tests calling views
    through Django's client), or when announcing needs Python after the commit (a broker outside PostgreSQL:
    Redis announces from the thread path's ``on_commit``; announcing from the loop lost announcements in the
    Redis ledger test, see docs/decisions.md)."""
    if _direct is None:
        return None
    if default_broker().database_channel is None and settings.PUBLISH_ANNOUNCE:
        return None
    loop, pool = _direct
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        return None
    return pool if running is loop else None


@functools.lru_cache(maxsize=1024)
def _publish_query(schema: str) -> sql.Composed:
    """``SELECT "schema".beacon_publish(...)``, composed once per tenant schema."""
    return sql.SQL("SELECT {}." + _PUBLISH_CALL).format(sql.Identifier(schema))


async def publish_direct(
    pool: AsyncConnectionPool, tenant: TenantInfo, items: list[tuple[PublishIn, str]]
) -> Outcome:
    """:func:`publish` without ``Idempotency-Key``, on the worker's event loop: the same statement
    (schema-qualified, so no ``search_path`` round trip) on an async connection, no thread hop, shared with
    the tenant's other publishes in flight on this worker (:class:`Coalescer`). Errors are those of
    :func:`publish`; a lost connection surfaces as ``psycopg.OperationalError`` (``503``)."""
    pending = expand(items, tenant)
    ids, call, now = await _coalescer(pool).store(tenant, pending)
    stored = _rows(ids, pending, call, now)
    metrics.NOTIFICATIONS_INGESTED.labels(metrics.tenant_label(tenant.slug)).inc(len(stored))
    return Outcome(201, _body_of(stored))


MAX_COALESCED_ROWS = 1000  # rows of one shared call; a larger request is stored on its own


@dataclass
class _Waiting:
    """One request waiting for its tenant's next shared call: its rows, and the future its ids arrive on."""

    pending: list[_Pending]
    done: asyncio.Future[tuple[list[int], _Call, datetime]]


class Coalescer:
    """Group commit for one worker: a tenant's publishes in flight together share one ``beacon_publish`` call.

    Each tenant's publishes serialise on its ordering lock, held through the commit (module docstring), so
    one statement at a time per tenant is all the database can run anyway. While a tenant's call runs, its
    new requests queue; when it ends, every queued request goes in the next call (one lock, one rate-window
    update, one NOTIFY, one commit and one announcement for all of them). A lone request waits for nothing:
    it starts at once. Ids stay in commit order (one transaction takes them in request order), each request
    counts once in the rate window (``p_requests``, migration 0004), and a refusal of the shared call that
    may concern only some of its requests (``429``, a data error) is retried request by request, so every
    request gets the answer it would have had alone.
    """

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool
        self._queues: dict[str, deque[_Waiting]] = {}  # tenant schema -> requests for its next call
        self._running: set[asyncio.Task[None]] = set()  # the loop keeps only weak references to tasks

    async def store(self, tenant: TenantInfo, pending: list[_Pending]) -> tuple[list[int], _Call, datetime]:
        """Store one request's rows: ``(ids, the call, its now)``; raises as :func:`publish` would."""
        done: asyncio.Future[tuple[list[int], _Call, datetime]] = asyncio.get_running_loop().create_future()
        queue = self._queues.get(tenant.schema)
        if queue is None:  # no call of this tenant running here: start one, this request first
            self._queues[tenant.schema] = queue = deque()
            task = asyncio.get_running_loop().create_task(self._run(tenant, [_Waiting(pending, done)]))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        else:
            queue.append(_Waiting(pending, done))
        return await done  # a cancelled request (client gone) before its call starts is left out of it

    async def _run(self, tenant: TenantInfo, first: list[_Waiting]) -> None:
        """Run calls for ``tenant`` until no request waits, then let the next request start anew."""
        batch = first
        try:
            while batch:
                await self._call(tenant, batch)
                batch = self._next(tenant.schema)
        finally:
            for waiting in self._queues.pop(tenant.schema, ()):  # only if a call raised past _call
                if not waiting.done.done():
                    waiting.done.set_exception(RuntimeError("publish queue stopped"))

    def _next(self, schema: str) -> list[_Waiting]:
        queue = self._queues[schema]
        batch: list[_Waiting] = []
        rows = 0
        while queue and (not batch or rows + len(queue[0].pending) <= MAX_COALESCED_ROWS):
            waiting = queue.popleft()
            if not waiting.done.done():  # cancelled while queued: nothing stored for it
                batch.append(waiting)
                rows += len(waiting.pending)
        return batch

    async def _call(self, tenant: TenantInfo, batch: list[_Waiting]) -> None:
        live = [waiting for waiting in batch if not waiting.done.done()]
        if not live:
            return
        try:
            ids, call, now = await self._statement(
                tenant, [row for w in live for row in w.pending], len(live)
            )
        except (ApiError, psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError) as exc:
            if len(live) == 1:
                _settle(live[0], exc)
                return
            for waiting in live:  # the refusal may concern only some of them: each on its own
                await self._call(tenant, [waiting])
            return
        except Exception as exc:  # an outage or a bug: every request of the call gets it (503 / 500)
            for waiting in live:
                _settle(waiting, exc)
            return
        start = 0
        for waiting in live:
            end = start + len(waiting.pending)
            _settle(waiting, (ids[start:end], call, now))
            start = end

    async def _statement(
        self, tenant: TenantInfo, pending: list[_Pending], requests: int
    ) -> tuple[list[int], _Call, datetime]:
        now = timezone.now()
        call = _call(tenant, pending, now, requests)
        try:
            async with self.pool.connection() as conn:
                cur = await conn.execute(_publish_query(tenant.schema), call.args)
                row = await cur.fetchone()
        except psycopg.Error as exc:
            if exc.sqlstate == RATE_LIMITED_SQLSTATE:
                raise _rate_limited(tenant, call.window) from None
            raise
        assert row is not None
        return row[0], call, now


def _settle(waiting: _Waiting, outcome: tuple[list[int], _Call, datetime] | BaseException) -> None:
    if waiting.done.done():  # its request was cancelled while the call ran: the rows are stored all the same
        return
    if isinstance(outcome, BaseException):
        waiting.done.set_exception(outcome)
    else:
        waiting.done.set_result(outcome)


_coalescers: dict[int, Coalescer] = {}


def _coalescer(pool: AsyncConnectionPool) -> Coalescer:
    """The worker's coalescer for ``pool`` (one per pool: the pool belongs to one event loop)."""
    found = _coalescers.get(id(pool))
    if found is None or found.pool is not pool:
        found = _coalescers[id(pool)] = Coalescer(pool)
    return found


async def store(
    tenant: TenantInfo,
    items: list[tuple[PublishIn, str]],
    *,
    idempotency_key: str | None = None,
    body_hash: str | None = None,
) -> Outcome:
    """Publish from async code: :func:`publish_direct` on the worker's loop when it applies, else
    :func:`publish` in a pool thread (an ``Idempotency-Key``, a test's loop, a broker outside PostgreSQL)."""
    pool = direct_pool() if idempotency_key is None else None
    if pool is not None:  # one statement on the worker's loop: no thread hop, no search_path round trip
        return await publish_direct(pool, tenant, items)
    return await run_db(publish, tenant, items, idempotency_key=idempotency_key, body_hash=body_hash)


def _body_of(stored: list[Row]) -> dict[str, Any]:
    return _response_body(
        {
            "id": str(r.id),
            "recipient": r.recipient,
            "topic": r.topic,
            "broadcast": r.broadcast,
            "created_at": r.created_at,
        }
        for r in stored
    )


def _claim_idempotency_key(cursor: Any, key: str, body_hash: str, now: Any) -> Outcome | None:
    """Own ``key`` for this transaction, or return the first answer given for it.

    The unique index makes a concurrent request with the same key wait until the first one commits or
    rolls back, so concurrent retries store one set of rows. ``lock_timeout`` bounds that wait.
    """
    cursor.execute(f"SET LOCAL lock_timeout = '{IDEMPOTENCY_WAIT}'")
    try:
        cursor.execute(
            "INSERT INTO beacon_idempotency (key, request_hash, status, created_at) VALUES (%s, %s, 201, %s) "
            "ON CONFLICT (key) DO NOTHING RETURNING id",
            [key, body_hash, now],
        )
    except OperationalError as exc:
        raise ApiError(
            409,
            "idempotency_in_progress",
            "a request with this Idempotency-Key is still being processed",
            headers={"Retry-After": "1"},
        ) from exc
    if cursor.fetchone() is not None:
        cursor.execute("SET LOCAL lock_timeout = 0")
        return None
    cursor.execute(
        "SELECT request_hash, status, response, created_at FROM beacon_idempotency WHERE key = %s FOR UPDATE",
        [key],
    )
    stored_hash, status, response, created_at = cursor.fetchone()
    cursor.execute("SET LOCAL lock_timeout = 0")
    if created_at < now - IDEMPOTENCY_WINDOW:
        cursor.execute(
            "UPDATE beacon_idempotency SET request_hash = %s, response = NULL, created_at = %s WHERE key = %s",
            [body_hash, now, key],
        )
        return None
    if stored_hash != body_hash:
        raise ApiError(409, "idempotency_conflict", "this Idempotency-Key was used with a different body")
    stored = response if isinstance(response, dict) else json.loads(response)
    # jsonb reorders keys: rebuild the first answer in its original field order, byte for byte.
    return Outcome(status, _response_body(stored["notifications"]), replayed=True)


_FIELDS = ("id", "recipient", "topic", "broadcast", "created_at")


def _response_body(entries: Iterable[dict[str, Any]]) -> dict[str, Any]:
    return {"notifications": [{name: entry[name] for name in _FIELDS} for entry in entries]}
