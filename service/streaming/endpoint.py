"""``GET /v1/stream``: a lean ASGI handler (no Django request machinery on the stream path).

Order of a stream's life: refuse early (drain, capacity, token, origin, last id) before any byte; register
in the hub; take the slot (or leave the hub and refuse: still before any byte) and, in the same batched
statement, read the starting position and the unread count (or replay from the database); flush headers,
``retry``, the replay and ``beacon.unread``; then live events from the queue, skipping ids already sent.
Cleanup (hub, slot, gauges, tasks) always runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings
from django.http.cookie import parse_cookie

from service import cors
from service.api import report_unexpected
from service.errors import ApiError, unauthenticated, unavailable
from service.http import query_problem
from service.notifications.auth import authenticate_token, bearer
from service.notifications.tokens import Subscriber
from service.numbers import ascii_int
from service.observability import metrics
from service.serving import CYCLE_KEY, ON_DISCONNECT, abort_connection
from service.streaming import delivery_metrics, sse
from service.streaming.hub import Subscription, keys_for
from service.streaming.runtime import Runtime, frame_for
from service.streaming.slots import NOT_LIVE, OK, Opening

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

MAX_COALESCED = 64  # queued frames written in one send...
MAX_COALESCED_BYTES = 64 * 1024  # ...up to about this many bytes
STREAM_HEADERS = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache, no-store"),
    (b"x-accel-buffering", b"no"),
)


class Request:
    """The few things the stream needs from an ASGI scope, read by the rules Django's request uses on the
    other routes, so one request gets the same answer from the stream and from the inbox: a header sent
    twice is its values joined with ``,`` (``Last-Event-ID: 5`` twice is ``5,5``: refused, not the last one
    silently), and cookies are parsed by Django's ``parse_cookie`` (quoted values, spaces around ``=``, the
    last of two ``beacon_token`` cookies wins)."""

    def __init__(self, scope: Scope) -> None:
        self.headers: dict[str, str] = {}
        for raw_name, raw_value in scope.get("headers", ()):
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            self.headers[name] = f"{self.headers[name]},{value}" if name in self.headers else value
        self.query = {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}
        self.host = self.headers.get("host", "")
        self.scheme = scope.get("scheme", "http")

    @functools.cached_property
    def origin(self) -> str:
        """Beacon's own origin, as a browser would send it (only needed for requests with ``Origin``)."""
        return cors.own_origin(self.scheme, self.host)

    def cookie(self, name: str) -> str | None:
        return parse_cookie(self.headers.get("cookie", "")).get(name)


def parse_last_event_id(request: Request) -> int | None:
    """The resume position: the ``Last-Event-ID`` header (optional white space around it, RFC 9110 section
    5.5), else the ``last_event_id`` query parameter (exactly ASCII digits, like every query number: ``+5``
    is `` 5`` in a query and refused, as ``before`` is on the inbox); empty or absent is ``None``, and an
    empty header does not cancel the query's position. A query value that is not a number is refused even
    when the header wins: it was ignored silently."""
    header = request.headers.get("last-event-id")
    query = _last_event_id(request.query.get("last_event_id"))  # checked even when the header wins
    position = _last_event_id(header.strip(" \t")) if header is not None else None
    return query if position is None else position


def _last_event_id(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    value = ascii_int(raw)
    if value is None:
        raise ApiError(400, "invalid_last_event_id", "Last-Event-ID must be a non-negative integer")
    return value


async def cors_for(request: Request) -> list[tuple[bytes, bytes]]:
    """CORS headers for every answer of this request, refusals included (``service.cors``): none without
    ``Origin`` or for an origin no active tenant allows; a cache lookup, no query per connect."""
    origin = request.headers.get("origin")
    if not origin or not await cors.origin_known(origin, request.origin):
        return []
    return cors.actual_headers(origin)


async def refuse(
    send: Send, error: ApiError, reason: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    metrics.CONNECTIONS_REJECTED.labels(reason).inc()
    headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store"), *(extra or [])]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": error.to_bytes()})


async def stream(
    scope: Scope, receive: Receive, send: Send, runtime: Runtime, body_send: Send | None = None
) -> None:
    """Serve ``GET``/``HEAD /v1/stream``. ``body_send``: the server's own ``send`` when ``send`` wraps it (the
    app's status recorder): the stream's body writes skip the wrapper (one coroutine frame per write)."""
    request = Request(scope)
    headers = await cors_for(request)
    if runtime.draining:
        await refuse(
            send,
            ApiError(
                503, "draining", "this worker is shutting down; reconnect", headers={"Retry-After": "1"}
            ),
            "draining",
            headers,
        )
        return
    if runtime.open_streams >= settings.WORKER_MAX_CONNECTIONS or runtime.store is None:
        await refuse(
            send,
            ApiError(503, "over_capacity", "this worker is full; reconnect", headers={"Retry-After": "2"}),
            "over_capacity",
            headers,
        )
        return
    runtime.open_streams += 1  # reserve capacity before the first await
    try:
        subscriber: Subscriber | None = None
        try:
            explicit = bearer(request.headers.get("authorization")) or request.query.get("token")
            raw = explicit or request.cookie("beacon_token")
            if (problem := query_problem(scope.get("query_string", b""))) is not None:
                raise problem
            if not raw:
                raise unauthenticated("a subscriber token is required (Authorization, token query or cookie)")
            mark = runtime.dispatcher.close_mark()  # before the tenant (and its secret) is looked up
            subscriber = await authenticate_token(raw, request.host)
            origin = request.headers.get("origin")
            if not cors.origin_allowed_for(subscriber.tenant, origin, request.origin, cookie=not explicit):
                raise cors.origin_not_allowed()
            if origin and not headers:  # the tenant lists it, the cached union not yet
                headers = cors.actual_headers(origin)
            last_id = parse_last_event_id(request)
            if scope["method"] == "HEAD":
                # The answer a GET would start with, without the stream (docs/decisions.md): the same
                # refusals (a slot is taken and given back before the answer, so a recipient at its limit
                # is 429 here too, and a GET right after finds the slot free on any worker), then 200 and
                # the stream's headers; no subscription, no body.
                await _take_slot(runtime, subscriber, reads=False)
                assert runtime.slots is not None
                await runtime.slots.release_now(subscriber.tenant.id, subscriber.recipient)
                await send(
                    {"type": "http.response.start", "status": 200, "headers": [*STREAM_HEADERS, *headers]}
                )
                await send({"type": "http.response.body", "body": b""})
                return
        except ApiError as error:
            await refuse(send, error, error.code, headers)
            return
        except Exception as exc:
            await refuse(send, _setup_failed(scope, exc), "unavailable", headers)
            return
        await _serve(scope, receive, send, body_send or send, runtime, headers, subscriber, last_id, mark)
    finally:
        runtime.open_streams -= 1


async def _serve(
    scope: Scope,
    receive: Receive,
    send: Send,
    body_send: Send,
    runtime: Runtime,
    cors_headers: list[tuple[bytes, bytes]],
    subscriber: Subscriber,
    last_id: int | None,
    mark: int,
) -> None:
    tenant = subscriber.tenant
    label = metrics.tenant_label(tenant.slug)
    sub = Subscription(
        tenant.schema,
        subscriber.recipient,
        keys_for(tenant.schema, subscriber.recipient, subscriber.topics),
        settings.STREAM_QUEUE_SIZE,
        secret=tenant.signing_secret,
    )
    sub.label = label
    try:
        await runtime.listener.ensure_newest(tenant.schema)  # before joining the hub: see listener.py
        runtime.hub.add(sub)  # subscribe first, then replay: nothing can fall between the two
        if (reason := runtime.dispatcher.closed_since(tenant.schema, mark)) is not None:
            # The tenant's streams were closed (secret rotated, tenant deactivated) after this token was
            # checked and before the stream joined the hub: the close missed it. It ends like the others.
            sub.close(reason)
        # The position is fixed before the 200 goes out: whatever is committed after the client sees the
        # headers has a larger id and is delivered live.
        prelude = await _prepare(runtime, sub, subscriber, last_id, label)  # takes the slot, or raises
    except ApiError as refusal:
        runtime.hub.remove(sub)
        await refuse(send, refusal, refusal.code, cors_headers)
        return
    except Exception as exc:
        runtime.hub.remove(sub)
        await refuse(send, _setup_failed(scope, exc), "unavailable", cors_headers)
        return
    metrics.CONNECTIONS.labels(label).inc()
    metrics.CONNECTIONS_OPENED.labels(label).inc()
    cycle = scope.get(CYCLE_KEY)
    watcher: asyncio.Future[None] | None = None
    if cycle is not None:  # httptools: the protocol reports the disconnect (no task per stream for it)
        setattr(cycle, ON_DISCONNECT, functools.partial(sub.close, "client"))
        if cycle.disconnected:
            sub.close("client")
    else:  # h11: a task waits for ``http.disconnect``
        watcher = asyncio.ensure_future(_watch_disconnect(receive, sub))
    try:
        await _send_checked(
            send,
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*STREAM_HEADERS, *cors_headers],
            },
        )
        sub.task = asyncio.current_task()
        for chunk in _grouped([sse.retry(random.randint(1000, 5000)), *prelude]):  # one write for most
            await _write(body_send, chunk, sub)
        # Live: a fan-out may now write this stream's frames itself while its task is parked (hub.py).
        sub.cycle = cycle
        await _live(body_send, sub, subscriber, label)
    except ClientGone:
        sub.close("client")
    except (TimeoutError, OSError):
        sub.close("slow_consumer")
        metrics.SLOW_CONSUMER_DISCONNECTS.inc()
    finally:
        _release_slot(runtime, subscriber)
        sub.cycle = None
        if cycle is not None:
            setattr(cycle, ON_DISCONNECT, None)  # also breaks cycle -> hook -> sub -> cycle
        scope.pop(CYCLE_KEY, None)
        runtime.hub.remove(sub)
        if watcher is not None:
            watcher.cancel()
        metrics.CONNECTIONS.labels(label).dec()
        metrics.CONNECTIONS_CLOSED.labels(sub.closed or "server").inc()
        ended = sub.closed == "client"
        if sub.closed not in {"client", "slow_consumer"}:
            # End the body cleanly so the client reconnects; a client that stopped reading gets no more waits.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                ended = True
        if not ended and cycle is not None:
            # A client that stopped reading: uvicorn would close the connection only once the bytes it holds
            # had gone out, that is never, and its shutdown waits for every connection. A reset drops them
            # (the client resumes with Last-Event-ID). The yield lets uvicorn see the connection lost before
            # this returns, so that an unfinished response is not logged as an error.
            abort_connection(cycle)
            await asyncio.sleep(0)


def _setup_failed(scope: Scope, exc: Exception) -> ApiError:
    """``503 unavailable`` with ``Retry-After`` for a stream whose set-up failed: the client reconnects. A
    database outage is logged as a warning, as on the API's routes (``service.api.report_unexpected``: a
    restart logged "stream replay failed" at ERROR with a traceback per connect); anything else with its
    traceback. Sentry hears of both."""
    report_unexpected(scope["method"], scope["path"], exc)
    return unavailable("try again shortly")


async def _watch_disconnect(receive: Receive, sub: Subscription) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            sub.close("client")
            return


class ClientGone(ConnectionResetError):
    """A write found the client's connection already closed (reset, or closed before uvicorn noticed)."""


async def _send_checked(send: Send, message: MutableMapping[str, Any]) -> None:
    """``send``, raising ``ClientGone`` when the connection is already closed.

    uvicorn skips a send once it has seen the connection lost, but between the transport closing (a client's
    reset: ``ECONNRESET``/``EPIPE`` on a write or read) and that ``connection_lost`` callback, uvloop's
    ``transport.write`` raises ``RuntimeError("unable to perform operation on <TCPTransport closed=True>")``.
    A client going away is no server error: the stream ends as a client disconnect, without a traceback
    (the ASGI spec asks servers to raise an ``OSError`` subclass here). The messages sent through this have
    fixed, valid headers, so the other ``RuntimeError`` uvicorn raises (invalid headers, a body past
    ``Content-Length``) cannot come from them.
    """
    try:
        await send(message)
    except RuntimeError as exc:
        raise ClientGone(str(exc)) from None


async def _write(send: Send, body: bytes, sub: Subscription) -> None:
    """One socket write. A client that stops reading fills the socket buffer and ``send`` blocks (uvicorn's
    flow control): the worker's ticker interrupts a write still blocked after ``STREAM_SEND_TIMEOUT_SECONDS``
    (``TimeoutError`` here), so no timer is armed and cancelled per write of a broadcast."""
    sub.write_deadline = asyncio.get_running_loop().time() + settings.STREAM_SEND_TIMEOUT_SECONDS
    try:
        await _send_checked(send, {"type": "http.response.body", "body": body, "more_body": True})
    except asyncio.CancelledError:
        task = sub.task
        if sub.write_timed_out and task is not None and task.uncancel() == 0:
            raise TimeoutError("socket write timed out") from None
        raise
    finally:
        sub.write_deadline = float("inf")


async def _prepare(
    runtime: Runtime, sub: Subscription, subscriber: Subscriber, last_id: int | None, label: str
) -> list[bytes]:
    """Take the stream's slot, set its starting position and return the frames to send before live events:
    the replay (or a reset), then ``beacon.unread`` with the recipient's current count, so a badge is right at
    once. Raises ``429 too_many_connections`` when a limit refuses the slot (nothing is then held).

    A first connect starts at the newest id: the one this worker's listener last dispatched for the tenant
    when it knows it, else the table's newest. A resume within the replay window is answered from memory. In
    both, the ids and the count are read in the slot's statement, batched with other connects'
    (``service/streaming/slots.py``): one statement per batch. Any other resume replays from the database
    (or resets), the count coming in the replay's statement, beside the slot's.
    Called right after ``hub.add(sub)``: nothing before the window lookup may ``await``.
    """
    assert runtime.store is not None
    schema = subscriber.tenant.schema
    recipient = subscriber.recipient
    limit = settings.REPLAY_LIMIT
    if last_id is None:
        known = runtime.newest_dispatched(schema)
        opening = await _take_slot(runtime, subscriber)
        with _given_back_on_error(runtime, subscriber):
            sub.position = opening.newest if known is None else known
            return [sse.unread(opening.unread)]
    window = runtime.listener.replay(schema, last_id, recipient, subscriber.topics, limit)
    if window is not None:
        metrics.WINDOW_RESUMES.labels("window").inc()
        # Fix the position now (live items above the window's newest are queued from here on), then read the
        # oldest stored id with the unread count (batched): rows purged past the client reset as below.
        sub.position = window.frames[-1][0] if window.frames else last_id
        opening = await _take_slot(runtime, subscriber)
        with _given_back_on_error(runtime, subscriber):
            reason = window.reset
            if last_id > 0 and opening.oldest is not None and last_id + 1 < opening.oldest:
                reason = "expired"
            if reason is not None:
                metrics.RESETS.labels(reason).inc()
                sub.position = window.newest
                reset = {"reason": reason, "resume_from": str(window.newest)}
                return [sse.control("beacon.reset", reset), sse.unread(opening.unread)]
            if window.frames:
                metrics.REPLAYED_EVENTS.labels(label).inc(len(window.frames))
            return [*(frame for _, frame in window.frames), sse.unread(opening.unread)]
    metrics.WINDOW_RESUMES.labels("database").inc()
    replay = asyncio.ensure_future(
        runtime.store.replay(schema, last_id, recipient, subscriber.topics, limit + 1)
    )
    try:
        await _take_slot(runtime, subscriber, reads=False)  # beside the replay: one round trip, not two
    except BaseException:
        with contextlib.suppress(Exception):  # its connection goes back to the pool in a clean state
            await replay
        raise
    with _given_back_on_error(runtime, subscriber):
        newest, oldest, unread, rows = await replay
        reason = None
        if last_id > newest:
            reason = "unknown_id"
        elif last_id > 0 and oldest is not None and last_id + 1 < oldest:
            reason = "expired"
        elif len(rows) > limit:
            reason = "too_far_behind"
        if reason is not None:
            metrics.RESETS.labels(reason).inc()
            sub.position = newest
            return [
                sse.control("beacon.reset", {"reason": reason, "resume_from": str(newest)}),
                sse.unread(unread),
            ]
        sub.position = rows[-1].id if rows else last_id
        if rows:
            metrics.REPLAYED_EVENTS.labels(label).inc(len(rows))
        return [*(frame_for(row) for row in rows), sse.unread(unread)]


@contextlib.contextmanager
def _given_back_on_error(runtime: Runtime, subscriber: Subscriber) -> Iterator[None]:
    """The slot just taken is given back if what follows fails before the stream starts: a replay that
    raised kept it, so each failed resume of a recipient took one more until its limit refused them all."""
    try:
        yield
    except BaseException:
        _release_slot(runtime, subscriber)
        raise


async def _take_slot(runtime: Runtime, subscriber: Subscriber, reads: bool = True) -> Opening:
    """The subscriber's slot (with ``reads``, also its tenant's ids and its unread count: ``Opening``);
    ``429 too_many_connections`` with ``Retry-After`` when the tenant's or the recipient's limit refuses it;
    ``503 unavailable`` with ``Retry-After`` while this worker is not live (its liveness connection is being
    re-established: a grant would count for no worker, migration ``streaming/0006``, docs/errors.md)."""
    assert runtime.slots is not None
    tenant = subscriber.tenant
    opening = await runtime.slots.acquire(
        tenant.id,
        subscriber.recipient,
        tenant.max_connections,
        tenant.max_connections_per_recipient,
        tenant.schema if reads else None,
    )
    if opening.outcome == NOT_LIVE:
        raise unavailable("this worker's database connection is being re-established; try again shortly")
    if opening.outcome != OK:
        scope_name = "tenant" if opening.outcome == "tenant" else "recipient"
        raise ApiError(
            429,
            "too_many_connections",
            f"too many open streams for this {scope_name}",
            headers={"Retry-After": "5"},
        )
    return opening


def _release_slot(runtime: Runtime, subscriber: Subscriber) -> None:
    assert runtime.slots is not None
    runtime.slots.release(subscriber.tenant.id, subscriber.recipient)  # rides on the next slot statement


def _grouped(frames: list[bytes]) -> list[bytes]:
    """Consecutive frames joined into writes of at most ``MAX_COALESCED`` frames and about
    ``MAX_COALESCED_BYTES`` (the bounds of a live write; a larger frame goes alone). A resume's ``retry``,
    replay and ``beacon.unread`` are usually one write: in a storm each write is a system call per stream."""
    writes: list[bytes] = []
    group: list[bytes] = []
    size = 0
    for frame in frames:
        if group and (len(group) == MAX_COALESCED or size + len(frame) > MAX_COALESCED_BYTES):
            writes.append(b"".join(group))
            group, size = [], 0
        group.append(frame)
        size += len(frame)
    if group:
        writes.append(b"".join(group))
    return writes


async def _live(send: Send, sub: Subscription, subscriber: Subscriber, label: str) -> None:
    """Write queued frames until the stream must end. Heartbeats arrive as queued frames too: one ticker per
    worker (``Runtime._heartbeats``) queues a ping for every stream silent for ``HEARTBEAT_SECONDS``, so an
    idle stream has no timer of its own to re-arm, only its token expiry and maximum age far ahead."""
    loop = asyncio.get_running_loop()
    expires = loop.time() + (subscriber.exp - time.time())
    max_age = loop.time() + settings.MAX_CONNECTION_AGE_SECONDS * random.uniform(0.8, 1.0)
    while sub.closed is None:
        frames: list[bytes] = []
        sent_at: list[float] = []
        size = 0
        pings = 0
        while len(frames) < MAX_COALESCED and size < MAX_COALESCED_BYTES and (item := sub.pop()) is not None:
            if item.id is not None:
                if item.id <= sub.position:
                    continue  # already sent by the replay
                sub.position = item.id
                sent_at.append(item.sent_at)
            elif item.frame is sse.PING:
                if frames or pings:
                    continue  # something else is being written: that is the sign of life
                pings += 1
            frames.append(item.frame)
            size += len(item.frame)
        if frames:
            await _write(send, b"".join(frames), sub)
            sub.last_write = time.monotonic()
            if pings and len(frames) == 1:
                delivery_metrics.heartbeat()
            if sent_at:
                now = time.time()
                latencies = [max(now - moment, 0.0) for moment in sent_at if moment]
                delivery_metrics.delivered(label, len(sent_at), latencies)
            continue
        now = loop.time()
        if now >= expires:
            await _write(send, sse.control("beacon.token-expired", {"exp": subscriber.exp}), sub)
            sub.close("token_expired")
            break
        if now >= max_age:
            sub.close("max_age")
            break
        sub.deadline = min(expires, max_age)  # the heartbeat ticker wakes the stream once it has passed
        await sub.wait()
