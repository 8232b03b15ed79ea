"""Lean load clients on raw asyncio protocols: SSE streams (many, in worker processes) and keep-alive HTTP/1.1.

The client must not be the bottleneck, so there is no HTTP library on the hot path: a stream sends its GET
once, ``httptools`` (the C parser uvicorn uses) de-chunks the response, and a minimal SSE parser splits
frames. Events whose ``data`` carries a benchmark mark ``"k":"<key>","t":<monotonic seconds>`` are timed on
arrival (``time.monotonic`` is the system-wide CLOCK_MONOTONIC, so a publisher in another process can stamp
them); every ``id:`` is remembered per stream key for resume and loss checks.

Streams live in ``ClientPool`` worker processes (``spawn``ed, one event loop each, uvloop when installed);
the benchmark process drives them with small commands over pipes.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httptools

MARK = re.compile(rb'"k":"([^"]*)","t":([0-9.eE+-]+)')
CODE = re.compile(rb'"code":\s*"([a-z_]+)"')
REASON = re.compile(rb'"reason":\s*"([a-z_]+)"')
SOURCE_ADDRESSES = 16  # 127.0.0.2 .. 127.0.0.17: each source address has its own ephemeral port range


def _install_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def request_bytes(
    method: str, path: str, host: str, headers: Iterable[tuple[str, str]] = (), body: bytes | None = None
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


# --------------------------------------------------------------------------------------------------------
# SSE streams (worker side)
# --------------------------------------------------------------------------------------------------------
@dataclass(slots=True)
class KeyState:
    """What survives a reconnect of one logical client: its request, last id and every id it received."""

    key: str
    path: str
    headers: list[tuple[str, str]]
    track: bool
    last_id: int | None = None
    ids: list[int] = field(default_factory=list)
    dropped_at_index: int = -1  # len(ids) when the storm dropped this stream (debugging losses)
    conn: Stream | None = None


class Stream(asyncio.Protocol):
    __slots__ = (
        "body",
        "buf",
        "closing",
        "crlf",
        "opened",
        "owner",
        "parser",
        "ready",
        "state",
        "status",
        "transport",
    )

    def __init__(self, owner: Worker, state: KeyState) -> None:
        self.owner = owner
        self.state = state
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.status = 0
        self.buf = b""
        self.body = b""  # a refusal's body (to name its error code)
        self.crlf = False
        self.opened = False
        self.closing = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        headers = [("Accept", "text/event-stream"), ("Cache-Control", "no-cache"), *self.state.headers]
        if self.state.last_id is not None:
            headers.append(("Last-Event-ID", str(self.state.last_id)))
        self.transport.write(request_bytes("GET", self.state.path, self.owner.host_header, headers))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail("bad_http")
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before response"))
        if self.opened and not self.closing:
            self.owner.dropped += 1
        self.opened = False
        if self.state.conn is self:
            self.state.conn = None

    # httptools callbacks
    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if self.status == 200:
            self.opened = True
            if not self.ready.done():
                self.ready.set_result(200)

    def on_body(self, body: bytes) -> None:
        if self.status != 200:
            self.body += body[:2000]
            return
        buf = self.buf + body if self.buf else body
        if self.crlf or b"\r" in body:
            self.crlf = True
            buf = buf.replace(b"\r\n", b"\n")
        start = 0
        find = buf.find
        while (end := find(b"\n\n", start)) >= 0:
            self.owner.frame(self, buf[start:end])
            start = end + 2
        self.buf = buf[start:]

    def on_message_complete(self) -> None:
        if not self.ready.done():
            self.ready.set_result(self.status)
        elif self.opened and not self.closing:
            self.owner.ended += 1  # the server finished a 200 stream

    def _fail(self, reason: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(reason))

    def close(self, abort: bool = False) -> None:
        self.closing = True
        if self.transport is not None:
            if abort:
                self.transport.abort()
            else:
                self.transport.close()


class Worker:
    """One client process: its streams, counters and timed samples."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.host = "127.0.0.1"
        self.port = 0
        self.host_header = ""
        self.states: dict[str, KeyState] = {}
        self.samples: dict[bytes, list[float]] = defaultdict(list)
        self.events = 0
        self.controls = 0
        self.comments = 0
        self.dropped = 0
        self.ended = 0
        self.control_names: Counter[str] = Counter()  # beacon.reset:<reason>, beacon.token-expired, ...
        self._source = 0

    # parsing ------------------------------------------------------------------------------------------
    def frame(self, stream: Stream, block: bytes) -> None:
        event_id = name = data = None
        for line in block.split(b"\n"):
            if not line:
                continue
            if line[0] == 58:  # ":" comment (heartbeat)
                self.comments += 1
                continue
            fname, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if fname == b"data":
                data = value if data is None else data + b"\n" + value
            elif fname == b"id":
                event_id = value
            elif fname == b"event":
                name = value
        if data is None:
            return  # retry-only or comment-only block: no event is dispatched
        self.events += 1
        if event_id is not None:
            state = stream.state
            number = int(event_id)
            state.last_id = number
            if state.track:
                state.ids.append(number)
        if name is not None and name.startswith(b"beacon."):
            self.controls += 1
            if name != b"beacon.unread":
                reason = REASON.search(data)
                self.control_names[(name + b":" + (reason.group(1) if reason else b"")).decode()] += 1
            return
        mark = MARK.search(data)
        if mark is not None:
            self.samples[mark.group(1)].append(time.monotonic() - float(mark.group(2)))

    # connecting ---------------------------------------------------------------------------------------
    def _next_source(self) -> str:
        self._source += 1
        return f"127.0.0.{2 + (self.index * 7 + self._source) % SOURCE_ADDRESSES}"

    async def _connect(self, state: KeyState, wait_s: float) -> tuple[str, float]:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        stream: Stream | None = None
        try:
            async with asyncio.timeout(wait_s):
                _, stream = await loop.create_connection(
                    lambda: Stream(self, state), self.host, self.port, local_addr=(self._next_source(), 0)
                )
                status = await stream.ready
                if status != 200:
                    code = CODE.search(stream.body)
                    stream.close()
                    return (
                        f"{status}:{code.group(1).decode() if code else 'error'}",
                        time.monotonic() - started,
                    )
        except TimeoutError:
            if stream is not None:
                stream.close(abort=True)
            return "timeout", time.monotonic() - started
        except OSError as exc:
            return f"os:{exc.errno or type(exc).__name__}", time.monotonic() - started
        except ConnectionError as exc:
            return f"conn:{exc}", time.monotonic() - started
        state.conn = stream
        return "ok", time.monotonic() - started

    async def _open_many(self, states: Sequence[KeyState], inflight: int, wait_s: float) -> dict[str, Any]:
        sem = asyncio.Semaphore(max(1, inflight))
        outcomes: Counter[str] = Counter()
        durations: list[float] = []
        ok_keys: list[str] = []

        async def one(state: KeyState) -> None:
            async with sem:
                outcome, took = await self._connect(state, wait_s)
            outcomes[outcome] += 1
            if outcome == "ok":
                durations.append(took)
                ok_keys.append(state.key)

        began = time.monotonic()
        await asyncio.gather(*(one(s) for s in states))
        return {
            "began": began,
            "ended": time.monotonic(),
            "outcomes": dict(outcomes),
            "durations": durations,
            "ok_keys": ok_keys,
        }

    # commands -------------------------------------------------------------------------------------------
    async def cmd_target(self, host: str, port: int) -> dict[str, Any]:
        self.host, self.port, self.host_header = host, port, f"{host}:{port}"
        return {}

    async def cmd_open(
        self, specs: list[tuple[str, str, list[tuple[str, str]], bool]], inflight: int, wait_s: float
    ) -> dict[str, Any]:
        states = []
        for key, path, headers, track in specs:
            state = self.states.get(key) or KeyState(key, path, list(headers), track)
            self.states[key] = state
            states.append(state)
        return await self._open_many(states, inflight, wait_s)

    async def cmd_close(self) -> dict[str, Any]:
        closed = 0
        for state in self.states.values():
            if state.conn is not None:
                state.conn.close()
                closed += 1
        self.states.clear()
        self.samples.clear()
        await asyncio.sleep(0.05)
        self.events = self.controls = self.comments = self.dropped = self.ended = 0
        self.control_names.clear()
        return {"closed": closed}

    async def cmd_stats(self) -> dict[str, Any]:
        open_ = sum(1 for s in self.states.values() if s.conn is not None and s.conn.opened)
        with_id = sum(1 for s in self.states.values() if s.last_id is not None)
        return {
            "open": open_,
            "with_id": with_id,
            "events": self.events,
            "controls": self.controls,
            "comments": self.comments,
            "dropped": self.dropped,
            "ended": self.ended,
            "samples": {k.decode(): len(v) for k, v in self.samples.items()},
            "control_names": dict(self.control_names),
        }

    async def cmd_wait_mark(self, mark: str, wait_s: float) -> dict[str, Any]:
        """Wait until every open stream has received the event marked ``mark`` (or ``wait_s``)."""
        key = mark.encode()
        expected = sum(1 for s in self.states.values() if s.conn is not None and s.conn.opened)
        deadline = time.monotonic() + wait_s
        while len(self.samples[key]) < expected and time.monotonic() < deadline:  # noqa: ASYNC110 (polls)
            await asyncio.sleep(0.005)
        return {"expected": expected, "samples": list(self.samples[key])}

    async def cmd_samples(self, mark: str) -> dict[str, Any]:
        return {"samples": list(self.samples.pop(mark.encode(), []))}

    async def cmd_ids(self) -> dict[str, Any]:
        return {
            "ids": {k: list(s.ids) for k, s in self.states.items() if s.track},
            "dropped_at_index": {k: s.dropped_at_index for k, s in self.states.items() if s.track},
        }

    async def cmd_storm(self, inflight: int, wait_s: float) -> dict[str, Any]:
        """Drop every stream at once, then resume each with its ``Last-Event-ID``."""
        states = list(self.states.values())
        dropped = time.monotonic()
        for state in states:
            state.dropped_at_index = len(state.ids)
            if state.conn is not None:
                state.conn.close(abort=True)
                state.conn = None
        result = await self._open_many(states, inflight, wait_s)
        result["dropped_at"] = dropped
        return result


def _worker_main(pipe: Any, index: int) -> None:
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    _install_uvloop()

    async def serve() -> None:
        worker = Worker(index)
        loop = asyncio.get_running_loop()
        while True:
            message = await loop.run_in_executor(None, pipe.recv)
            name, kwargs = message
            if name == "quit":
                pipe.send({})
                return
            try:
                reply = await getattr(worker, f"cmd_{name}")(**kwargs)
            except Exception as exc:  # report, never die: the parent decides
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            pipe.send(reply)

    asyncio.run(serve())


class ClientPool:
    """``procs`` client processes; streams are spread over them round-robin."""

    def __init__(self, procs: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipes = []
        self.processes = []
        for index in range(procs):
            parent, child = ctx.Pipe()
            process = ctx.Process(
                target=_worker_main, args=(child, index), daemon=True, name=f"bench-client-{index}"
            )
            process.start()
            self.pipes.append(parent)
            self.processes.append(process)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]

    async def call(
        self, name: str, per_proc: Sequence[dict[str, Any]] | None = None, **kwargs: Any
    ) -> list[Any]:
        for index, pipe in enumerate(self.pipes):
            pipe.send((name, per_proc[index] if per_proc is not None else kwargs))
        replies = await asyncio.gather(*(asyncio.to_thread(pipe.recv) for pipe in self.pipes))
        for reply in replies:
            if isinstance(reply, dict) and "error" in reply:
                raise RuntimeError(f"client {name}: {reply['error']}")
        return list(replies)

    async def target(self, host: str, port: int) -> None:
        await self.call("target", host=host, port=port)

    async def open(
        self,
        specs: Sequence[tuple[str, str, list[tuple[str, str]], bool]],
        inflight: int = 512,
        wait_s: float = 30.0,
    ) -> dict[str, Any]:
        procs = len(self.pipes)
        per = [
            {"specs": list(specs[i::procs]), "inflight": max(1, inflight // procs), "wait_s": wait_s}
            for i in range(procs)
        ]
        return merge_open(await self.call("open", per))

    async def storm(self, inflight: int, wait_s: float = 60.0) -> dict[str, Any]:
        procs = len(self.pipes)
        replies = await self.call("storm", inflight=max(1, inflight // procs), wait_s=wait_s)
        merged = merge_open(replies)
        merged["dropped_at"] = min(r["dropped_at"] for r in replies)
        return merged

    async def close(self) -> int:
        return sum(r["closed"] for r in await self.call("close"))

    async def stats(self) -> dict[str, Any]:
        total: dict[str, Any] = {}
        for reply in await self.call("stats"):
            for key, value in reply.items():
                if isinstance(value, dict):
                    bucket = total.setdefault(key, Counter())
                    bucket.update(value)
                else:
                    total[key] = total.get(key, 0) + value
        return total

    async def wait_mark(self, mark: str, wait_s: float) -> tuple[int, list[float]]:
        replies = await self.call("wait_mark", mark=mark, wait_s=wait_s)
        return sum(r["expected"] for r in replies), [s for r in replies for s in r["samples"]]

    async def samples(self, mark: str) -> list[float]:
        return [s for r in await self.call("samples", mark=mark) for s in r["samples"]]

    async def ids(self) -> tuple[dict[str, list[int]], dict[str, int]]:
        """Every id each tracked stream received, and how many of them it had when the storm dropped it."""
        ids: dict[str, list[int]] = {}
        at_drop: dict[str, int] = {}
        for reply in await self.call("ids"):
            ids.update(reply["ids"])
            at_drop.update(reply["dropped_at_index"])
        return ids, at_drop

    def shutdown(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(Exception):
                pipe.send(("quit", {}))
        for process in self.processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()


def merge_open(replies: Sequence[dict[str, Any]]) -> dict[str, Any]:
    outcomes: Counter[str] = Counter()
    for reply in replies:
        outcomes.update(reply["outcomes"])
    return {
        "began": min(r["began"] for r in replies),
        "ended": max(r["ended"] for r in replies),
        "outcomes": dict(outcomes),
        "ok": outcomes.get("ok", 0),
        "failed": sum(v for k, v in outcomes.items() if k != "ok"),
        "durations": sorted(d for r in replies for d in r["durations"]),
        "ok_keys": [k for r in replies for k in r["ok_keys"]],
    }


# --------------------------------------------------------------------------------------------------------
# Keep-alive HTTP/1.1 (publisher side)
# --------------------------------------------------------------------------------------------------------
class HttpConnection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.body: list[bytes] = []
        self.lost = False
        self.last_used = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._finish_error(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._finish_error(exc or ConnectionError("connection closed"))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((self.parser.get_status_code(), b"".join(self.body)))
        self.body = []

    def _finish_error(self, exc: BaseException) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionError(str(exc)))

    async def request(self, data: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        try:
            return await self.waiter
        finally:
            self.last_used = time.monotonic()


class HttpPool:
    """``size`` keep-alive connections; a connection idle for more than ``max_idle`` is replaced first
    (gunicorn's ``keepalive`` closes idle connections after 5 s)."""

    def __init__(
        self, host: str, port: int, size: int, headers: Sequence[tuple[str, str]] = (), max_idle: float = 3.0
    ) -> None:
        self.host, self.port = host, port
        self.host_header = f"{host}:{port}"
        self.headers = list(headers)
        self.max_idle = max_idle
        self.idle: asyncio.Queue[HttpConnection | None] = asyncio.Queue()
        for _ in range(size):
            self.idle.put_nowait(None)

    async def _connect(self) -> HttpConnection:
        _, conn = await asyncio.get_running_loop().create_connection(HttpConnection, self.host, self.port)
        return conn

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | Callable[[], bytes] | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> tuple[int, bytes]:
        """One request on an idle connection. ``body`` may be a function: it is called just before the
        request is written (so a timestamp inside it excludes the wait for a free connection)."""
        conn = await self.idle.get()
        try:
            if conn is None or conn.lost or time.monotonic() - conn.last_used > self.max_idle:
                if conn is not None and conn.transport is not None:
                    conn.transport.close()
                conn = await self._connect()
            if callable(body):
                body = body()
            extra = [("Content-Type", "application/json")] if body is not None else []
            data = request_bytes(method, path, self.host_header, [*self.headers, *extra, *headers], body)
            try:
                return await conn.request(data)
            except ConnectionError:
                conn = None
                raise
        finally:
            self.idle.put_nowait(conn)

    async def close(self) -> None:
        while not self.idle.empty():
            conn = self.idle.get_nowait()
            if conn is not None and conn.transport is not None:
                conn.transport.close()


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of ``values`` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]
