"""The scenarios: idle streams, latency, broadcast fan-out, ingestion and the reconnect storm.

Every scenario returns plain dicts (one per measured configuration); ``bench.run`` prints each as a JSON
line and builds the tables from them. Times are ``time.monotonic()`` (system-wide, so the publisher here and
the client processes share one clock); CPU comes from ``/proc/<pid>/stat`` (utime + stime).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import psycopg

from bench import infra
from bench.client import ClientPool, HttpPool, percentile

Spec = tuple[str, str, list[tuple[str, str]], bool]


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def dist(samples: list[float]) -> dict[str, Any]:
    """p50/p90/p99/max of latency samples (seconds) in milliseconds."""
    return {
        "p50_ms": ms(percentile(samples, 50)),
        "p90_ms": ms(percentile(samples, 90)),
        "p99_ms": ms(percentile(samples, 99)),
        "max_ms": ms(max(samples) if samples else None),
    }


@dataclass
class Config:
    quick: bool = False
    idle_levels: list[int] = field(default_factory=lambda: [1000, 5000, 10000])
    idle_window: float = 10.0
    settle: float = 3.0
    latency_streams: int = 1000
    latency_rate: float = 200.0
    latency_seconds: float = 10.0
    broadcast_reps: int = 3
    storm_streams: int = 5000
    storm_rate: float = 200.0
    ingest_seconds: float = 5.0
    ingest_rounds: int = 2
    ingest_concurrency: int = 32
    batch_size: int = 500
    batch_concurrency: int = 4
    tutorial_cap: int = 1000
    client_procs: int = 2
    connect_inflight: int = 512
    beacon_config: str | None = None
    peers: list[str] = field(default_factory=lambda: ["tutorial", "starlette", "django"])
    scenarios: list[str] = field(default_factory=lambda: ["idle", "broadcast", "latency", "storm", "ingest"])

    @classmethod
    def make(cls, quick: bool) -> Config:
        if not quick:
            return cls()
        return cls(
            quick=True,
            idle_levels=[500],
            idle_window=5.0,
            latency_streams=500,
            latency_rate=100.0,
            latency_seconds=5.0,
            broadcast_reps=2,
            storm_streams=500,
            storm_rate=100.0,
            ingest_seconds=3.0,
            ingest_rounds=1,
            tutorial_cap=500,
        )


# --------------------------------------------------------------------------------------------------------
# measuring
# --------------------------------------------------------------------------------------------------------
class Meter:
    """CPU of the server workers, PostgreSQL and the clients; transactions of one database."""

    def __init__(
        self, pg: infra.Postgres, workers: Callable[[], list[int]], clients: list[int], database: str | None
    ) -> None:
        self.pg = pg
        self.workers = workers
        self.clients = [*clients, os.getpid()]  # the client processes and this one (publisher, ingestion)
        self.database = database

    def snapshot(self) -> dict[str, Any]:
        def per_pid(pids: list[int]) -> dict[int, float]:
            return {pid: infra.cpu_seconds([pid]) for pid in pids}

        return {
            "t": time.monotonic(),
            "machine": infra.machine_busy_seconds(),
            "srv": per_pid(self.workers()),
            "pg": per_pid(self.pg.pids()),
            "cli": per_pid(self.clients),
            "db": self.pg.db_counters(self.database) if self.database else None,
        }

    @staticmethod
    def delta(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        seconds = max(b["t"] - a["t"], 1e-9)

        def pct(kind: str) -> float:
            used = sum(cpu - a[kind].get(pid, 0.0) for pid, cpu in b[kind].items())
            return round(100 * used / seconds, 2)

        out: dict[str, Any] = {
            "seconds": round(seconds, 2),
            "server_cpu_pct": pct("srv"),
            "pg_cpu_pct": pct("pg"),
            "client_cpu_pct": pct("cli"),
        }
        # Everything else on the machine in the same window (other work shares these cores).
        machine = 100 * (b["machine"] - a["machine"]) / seconds
        out["other_cpu_pct"] = round(
            max(0.0, machine - out["server_cpu_pct"] - out["pg_cpu_pct"] - out["client_cpu_pct"]), 1
        )
        if a["db"] is not None and b["db"] is not None:
            for key in a["db"]:
                out[f"db_{key}"] = b["db"][key] - a["db"][key]
            out["db_xacts_per_s"] = round(out["db_xacts"] / seconds, 1)
        return out


@contextlib.contextmanager
def sampled(sampler: infra.ActivitySampler | None) -> Iterator[infra.ActivitySampler | None]:
    if sampler is None:
        yield None
        return
    with sampler:
        yield sampler


# --------------------------------------------------------------------------------------------------------
# targets
# --------------------------------------------------------------------------------------------------------
class Target:
    name = "?"
    database: str | None = None
    server: infra.Gunicorn

    def specs(self, prefix: str, start: int, end: int, track: bool = False) -> list[Spec]:
        raise NotImplementedError

    async def broadcast(self, mark: str) -> dict[str, Any]:
        raise NotImplementedError

    async def publish(self, key: str, mark: str) -> list[tuple[str, int]]:
        raise NotImplementedError

    async def close(self) -> None:
        pass


class BeaconTarget(Target):
    name = "beacon"

    def __init__(self, server: infra.Gunicorn, tenant: infra.BeaconTenant, pool_size: int = 32) -> None:
        self.server = server
        self.tenant = tenant
        self.database = tenant.database
        self.http = HttpPool(
            "127.0.0.1", server.port, pool_size, [("Authorization", f"Bearer {tenant.api_key}")]
        )
        self._exp = int(time.time()) + 4 * 3600

    def token(self, recipient: str) -> str:
        return jwt.encode(
            {"sub": recipient, "tid": self.tenant.slug, "exp": self._exp, "iat": int(time.time())},
            self.tenant.signing_secret,
            algorithm="HS256",
        )

    def specs(self, prefix: str, start: int, end: int, track: bool = False) -> list[Spec]:
        out = []
        for i in range(start, end):
            recipient = f"{prefix}-{i}"
            out.append(
                (recipient, "/v1/stream", [("Authorization", f"Bearer {self.token(recipient)}")], track)
            )
        return out

    async def post(self, body: dict[str, Any] | Callable[[], bytes], batch: bool = False) -> tuple[int, Any]:
        path = "/v1/notifications/batch" if batch else "/v1/notifications"
        status, raw = await self.http.request("POST", path, body if callable(body) else dumps(body))
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw[:200]

    async def broadcast(self, mark: str) -> dict[str, Any]:
        sent: list[float] = []

        def body() -> bytes:
            sent.append(time.monotonic())
            return dumps({"broadcast": True, "data": {"k": mark, "t": sent[0]}})

        status, _ = await self.post(body)
        return {"status": status, "post_ms": ms(time.monotonic() - sent[0])}

    async def publish(self, key: str, mark: str) -> list[tuple[str, int]]:
        def body() -> bytes:
            return dumps({"recipient": key, "data": {"k": mark, "t": time.monotonic()}})

        status, reply = await self.post(body)
        if status != 201:
            raise RuntimeError(f"publish: {status} {reply}")
        return [(n["recipient"], int(n["id"])) for n in reply["notifications"]]

    async def close(self) -> None:
        await self.http.close()


class InProcessPeer(Target):
    """sse-starlette or minimal Django: ``/stream``; broadcast by UDP to every worker (see peers/common)."""

    def __init__(self, name: str, server: infra.Gunicorn, control_dir: Path) -> None:
        self.name = name
        self.server = server
        self.control_dir = control_dir
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def specs(self, prefix: str, start: int, end: int, track: bool = False) -> list[Spec]:
        return [(f"{prefix}-{i}", "/stream", [], track) for i in range(start, end)]

    def ports(self) -> list[int]:
        workers = set(self.server.worker_pids())
        return [
            int(p.read_text())
            for p in self.control_dir.iterdir()
            if p.name.isdigit() and int(p.name) in workers
        ]

    async def broadcast(self, mark: str) -> dict[str, Any]:
        ports = self.ports()
        t0 = time.monotonic()
        payload = dumps({"k": mark, "t": t0})
        for port in ports:
            self.sock.sendto(payload, ("127.0.0.1", port))
        return {"workers_reached": len(ports)}

    async def close(self) -> None:
        self.sock.close()


class TutorialPeer(Target):
    name = "tutorial"

    def __init__(self, server: infra.Gunicorn, database: str, url: str, users: list[tuple[int, str]]) -> None:
        self.server = server
        self.database = database
        self.url = url
        self.users = users
        self.conn: psycopg.AsyncConnection[Any] | None = None
        self.lock = asyncio.Lock()

    async def connect(self) -> None:
        # Opened before any stream: the streams use up max_connections, the publisher must still get in.
        self.conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)

    def specs(self, prefix: str, start: int, end: int, track: bool = False) -> list[Spec]:
        out = []
        for i in range(start, end):
            user_id, session = self.users[i % len(self.users)]
            out.append((str(user_id), "/notifications/", [("Cookie", f"sessionid={session}")], track))
        return out

    async def publish(self, key: str, mark: str) -> list[tuple[str, int]]:
        assert self.conn is not None
        async with self.lock:
            text = dumps({"k": mark, "t": time.monotonic()}).decode()
            await self.conn.execute(
                "INSERT INTO sse_notification (user_id, text, dispatched, created) VALUES (%s, %s, false, now())",
                [int(key), text],
            )
        return []

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()


# --------------------------------------------------------------------------------------------------------
# scenario 1 (+3): idle streams at increasing N, then broadcast to the largest N
# --------------------------------------------------------------------------------------------------------
async def idle_and_broadcast(
    cfg: Config,
    pg: infra.Postgres,
    pool: ClientPool,
    target: Target,
    levels: list[int],
    emit: Callable[[dict[str, Any]], None],
    broadcast: bool,
) -> None:
    await pool.target("127.0.0.1", target.server.port)
    meter = Meter(pg, target.server.worker_pids, pool.pids, target.database)
    db_sampler = pg.sampler(target.database)
    await asyncio.sleep(cfg.settle)
    base_rss = infra.rss_bytes(target.server.worker_pids())
    opened = accepted = 0
    for level in levels:
        m0 = meter.snapshot()
        opened_result = await pool.open(target.specs("idle", opened, level), inflight=cfg.connect_inflight)
        m1 = meter.snapshot()
        connect_s = opened_result["ended"] - opened_result["began"]
        attempted = level - opened
        opened = level
        accepted += opened_result["ok"]
        await asyncio.sleep(cfg.settle)
        workers = target.server.worker_pids()
        rss = infra.rss_bytes(workers)
        with sampled(db_sampler) as sampler:
            w0 = meter.snapshot()
            await asyncio.sleep(cfg.idle_window)
            w1 = meter.snapshot()
        stats = await pool.stats()
        idle = Meter.delta(w0, w1)
        result: dict[str, Any] = {
            "scenario": "idle",
            "target": target.name,
            "streams": level,
            "accepted": accepted,
            "open_at_end": stats["open"],
            "attempted_now": attempted,
            "accepted_now": opened_result["ok"],
            "refused_now": opened_result["failed"],
            "refusals": {k: v for k, v in opened_result["outcomes"].items() if k != "ok"},
            "connect_s": round(connect_s, 3),
            "connect_per_s": round(opened_result["ok"] / connect_s, 1) if connect_s > 0 else None,
            "connect_p50_ms": ms(percentile(opened_result["durations"], 50)),
            "connect_p99_ms": ms(percentile(opened_result["durations"], 99)),
            "connect_cpu": Meter.delta(m0, m1),
            "server_rss_mb": round(rss / 2**20, 1),
            "rss_per_stream_kb": round((rss - base_rss) / accepted / 1024, 2) if accepted else None,
            "worker_fds": [infra.fd_count(pid) for pid in workers],
            "idle_window_s": idle["seconds"],
            "server_cpu_idle_pct": idle["server_cpu_pct"],
            "pg_cpu_idle_pct": idle["pg_cpu_pct"],
            "client_cpu_idle_pct": idle["client_cpu_pct"],
            "unexpected_closes": stats["dropped"] + stats["ended"],
        }
        result["other_cpu_idle_pct"] = idle["other_cpu_pct"]
        if target.database and sampler is not None:
            result.update(
                {
                    "db_statements_idle": len(sampler.statements),
                    "db_statements_per_s_idle": round(len(sampler.statements) / idle["seconds"], 1),
                    "db_xacts_idle": idle["db_xacts"],  # pg_stat_database: flushed late, includes autovacuum
                    "db_connections": pg.connections(target.database),
                }
            )
        emit(result)
    if db_sampler is not None:
        db_sampler.close()
    if broadcast and accepted:
        await broadcast_reps(cfg, pool, target, accepted, emit)
    await pool.close()


async def broadcast_reps(
    cfg: Config, pool: ClientPool, target: Target, subscribers: int, emit: Callable[[dict[str, Any]], None]
) -> None:
    reps = []
    for rep in range(cfg.broadcast_reps):
        mark = f"bc{rep}"
        info = await target.broadcast(mark)
        expected, samples = await pool.wait_mark(mark, wait_s=20.0)
        reps.append(
            {
                "received": len(samples),
                "expected": expected,
                "last_ms": ms(max(samples) if samples else None),
                "p50_ms": ms(percentile(samples, 50)),
                **info,
            }
        )
        await asyncio.sleep(1.0)
    lasts = sorted(r["last_ms"] for r in reps if r["last_ms"] is not None)
    emit(
        {
            "scenario": "broadcast",
            "target": target.name,
            "subscribers": subscribers,
            "last_ms_median": lasts[len(lasts) // 2] if lasts else None,
            "last_ms_max": lasts[-1] if lasts else None,
            "p50_ms_median": sorted(r["p50_ms"] for r in reps if r["p50_ms"] is not None)[len(reps) // 2]
            if reps
            else None,
            "all_received": all(r["received"] >= r["expected"] for r in reps),
            "reps": reps,
        }
    )


# --------------------------------------------------------------------------------------------------------
# scenario 2: publish-to-receive latency at a steady rate
# --------------------------------------------------------------------------------------------------------
async def paced(
    rate: float, seconds: float, fire: Callable[[int], Awaitable[Any]], limit: int = 64
) -> dict[str, Any]:
    """Open-loop: start ``fire(i)`` at ``i / rate`` seconds; at most ``limit`` in flight (late ones queue)."""
    sem = asyncio.Semaphore(limit)
    errors: Counter[str] = Counter()
    done = 0

    async def one(i: int) -> None:
        nonlocal done
        async with sem:
            try:
                await fire(i)
                done += 1
            except Exception as exc:
                errors[type(exc).__name__ + ":" + str(exc)[:80]] += 1

    tasks = []
    start = time.monotonic()
    total = int(rate * seconds)
    for i in range(total):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(i)))
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - start
    return {"sent": total, "ok": done, "errors": dict(errors), "elapsed": elapsed}


async def latency(
    cfg: Config,
    pg: infra.Postgres,
    pool: ClientPool,
    target: Target,
    streams: int,
    emit: Callable[[dict[str, Any]], None],
) -> None:
    await pool.target("127.0.0.1", target.server.port)
    db_sampler = pg.sampler(target.database)
    opened = await pool.open(target.specs("lat", 0, streams), inflight=cfg.connect_inflight)
    keys = opened["ok_keys"]
    result: dict[str, Any] = {
        "scenario": "latency",
        "target": target.name,
        "streams": streams,
        "accepted": opened["ok"],
        "refusals": {k: v for k, v in opened["outcomes"].items() if k != "ok"},
    }
    if not keys:
        emit({**result, "error": "no stream was accepted"})
        if db_sampler is not None:
            db_sampler.close()
        await pool.close()
        return
    await asyncio.sleep(cfg.settle)
    meter = Meter(pg, target.server.worker_pids, pool.pids, target.database)
    rng = random.Random(7)
    with sampled(db_sampler) as sampler:
        m0 = meter.snapshot()
        sent = await paced(
            cfg.latency_rate, cfg.latency_seconds, lambda i: target.publish(rng.choice(keys), "lat")
        )
        m1 = meter.snapshot()
    await asyncio.sleep(2.5 if target.name == "tutorial" else 1.0)
    samples = await pool.samples("lat")
    load = Meter.delta(m0, m1)
    result.update(
        {
            "rate": cfg.latency_rate,
            "published": sent["ok"],
            "publish_errors": sent["errors"],
            "achieved_rate": round(sent["ok"] / sent["elapsed"], 1),
            "received": len(samples),
            **dist(samples),
            "server_cpu_pct": load["server_cpu_pct"],
            "pg_cpu_pct": load["pg_cpu_pct"],
            "client_cpu_pct": load["client_cpu_pct"],
        }
    )
    if sampler is not None:
        result["db_statements_per_s"] = round(len(sampler.statements) / load["seconds"], 1)
        result["db_waits"] = sampler.top_waits()
    result["other_cpu_pct"] = load["other_cpu_pct"]
    emit(result)
    if db_sampler is not None:
        db_sampler.close()
    await pool.close()


# --------------------------------------------------------------------------------------------------------
# scenario 4: ingestion throughput
# --------------------------------------------------------------------------------------------------------
@dataclass
class _Load:
    """One ingestion run: ``concurrency`` clients, each posting its own body in a loop."""

    http: HttpPool
    path: str
    bodies: list[bytes]
    size: int
    rows: int = 0
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    took: list[float] = field(default_factory=list)

    async def client(self, worker: int, until: float, count: bool) -> None:
        while time.monotonic() < until:
            t = time.monotonic()
            try:
                status, _ = await self.http.request("POST", self.path, self.bodies[worker])
            except ConnectionError:
                status = 0
            if count:
                self.statuses[status] += 1
                if status == 201:
                    self.rows += self.size
                    self.requests += 1
                    self.took.append(time.monotonic() - t)

    async def run(self, seconds: float, count: bool) -> None:
        until = time.monotonic() + seconds
        await asyncio.gather(*(self.client(w, until, count) for w in range(len(self.bodies))))


def ingest_bodies(mode: str, concurrency: int, size: int) -> list[bytes]:
    bodies = []
    for worker in range(concurrency):
        items = [
            {"recipient": f"ing-{worker}-{j % 100}", "event": "bench.ingest", "data": {"n": j, "w": worker}}
            for j in range(size)
        ]
        bodies.append(dumps({"notifications": items}) if mode == "batch" else dumps(items[0]))
    return bodies


async def ingest(
    cfg: Config,
    pg: infra.Postgres,
    pool: ClientPool,
    target: BeaconTarget,
    announce: bool,
    emit: Callable[[dict[str, Any]], None],
    round_: int = 0,
    broker: str = "notify",
    modes: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Single and batch publishing for ``ingest_seconds`` each; ``broker`` is ``notify``, ``redis`` or
    ``none`` (``PUBLISH_ANNOUNCE=0``) and is recorded with the result."""
    meter = Meter(pg, target.server.worker_pids, pool.pids, target.database)
    db_sampler = pg.sampler(target.database)
    all_modes = [("single", cfg.ingest_concurrency, 1), ("batch", cfg.batch_concurrency, cfg.batch_size)]
    for mode, concurrency, size in all_modes:
        if modes is not None and mode not in modes:
            continue
        auth = [("Authorization", f"Bearer {target.tenant.api_key}")]
        load = _Load(
            HttpPool("127.0.0.1", target.server.port, concurrency, auth),
            "/v1/notifications/batch" if mode == "batch" else "/v1/notifications",
            ingest_bodies(mode, concurrency, size),
            size,
        )
        await load.run(min(1.0, cfg.ingest_seconds / 3), count=False)  # warm-up: connections, caches
        with sampled(db_sampler) as sampler:
            m0 = meter.snapshot()
            await load.run(cfg.ingest_seconds, count=True)
            m1 = meter.snapshot()
        await load.http.close()
        used = Meter.delta(m0, m1)
        emit(
            {
                "scenario": "ingest",
                "target": "beacon",
                "mode": mode,
                "announce": announce,
                "broker": broker if announce else "none",
                **(extra or {}),
                "round": round_ + 1,
                "concurrency": concurrency,
                "batch_size": size,
                "notifications_per_s": round(load.rows / used["seconds"], 1),
                "requests_per_s": round(load.requests / used["seconds"], 1),
                "statuses": {str(k): v for k, v in load.statuses.items()},
                **{f"request_{k}": v for k, v in dist(load.took).items()},
                "server_cpu_pct": used["server_cpu_pct"],
                "pg_cpu_pct": used["pg_cpu_pct"],
                "client_cpu_pct": used["client_cpu_pct"],
                "other_cpu_pct": used["other_cpu_pct"],
                "db_waits": sampler.top_waits() if sampler else None,
            }
        )
    if db_sampler is not None:
        db_sampler.close()


async def notify_listeners(
    cfg: Config,
    pg: infra.Postgres,
    pool: ClientPool,
    target: BeaconTarget,
    emit: Callable[[dict[str, Any]], None],
    levels: tuple[int, ...] = (2, 4, 8, 16, 32, 64),
) -> None:
    """NOTIFY's cost as listening processes grow: single-row publishes through Beacon (NOTIFY on) while
    ``n`` extra backends LISTEN on Beacon's channel and read every notification (as idle workers would).

    Before PostgreSQL 19 every listener slows every NOTIFY; this shows where the default broker stops
    being enough (docs/deploy.md, "Scaling out").
    """
    for n in levels:
        connections = [
            await psycopg.AsyncConnection.connect(
                target.tenant.url, autocommit=True, application_name="bench-listen"
            )
            for _ in range(n)
        ]

        async def drain(conn: psycopg.AsyncConnection[Any]) -> None:
            await conn.execute("LISTEN beacon")
            async for _ in conn.notifies():
                pass

        readers = [asyncio.create_task(drain(conn)) for conn in connections]
        try:
            await ingest(
                cfg, pg, pool, target, True, emit, broker="notify", modes=["single"], extra={"listeners": n}
            )
        finally:
            for task in readers:
                task.cancel()
            for task in readers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            for conn in connections:
                await conn.close()


# --------------------------------------------------------------------------------------------------------
# scenario 5: reconnect storm with Last-Event-ID, while publishing
# --------------------------------------------------------------------------------------------------------
async def storm(
    cfg: Config,
    pg: infra.Postgres,
    pool: ClientPool,
    target: BeaconTarget,
    emit: Callable[[dict[str, Any]], None],
) -> None:
    n = cfg.storm_streams
    await pool.target("127.0.0.1", target.server.port)
    first = await pool.open(target.specs("storm", 0, n, track=True), inflight=cfg.connect_inflight)
    keys = sorted(first["ok_keys"])
    expected: dict[str, list[int]] = {k: [] for k in keys}
    result: dict[str, Any] = {"scenario": "storm", "target": "beacon", "streams": n, "connected": first["ok"]}

    # Every client first receives one notification, so that each has a Last-Event-ID to resume from. A
    # notification published just after a first connect's 200 can be skipped by the server (the stream
    # positions itself after flushing the headers; see docs/benchmarks.md): such streams are counted as
    # first_connect_lost, sent another one, and the warm-up ids are left out of the loss check below.
    pending = list(keys)
    first_connect_lost = -1
    for _attempt in range(4):
        for start in range(0, len(pending), 1000):
            status, reply = await target.post(
                {"recipients": pending[start : start + 1000], "data": {"k": "warm", "t": 0}}
            )
            if status != 201:
                raise RuntimeError(f"storm warm-up publish: {status} {reply}")
        deadline = time.monotonic() + 5
        while True:
            got_ids, _ = await pool.ids()
            pending = [k for k in keys if not got_ids.get(k)]
            if not pending or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        if first_connect_lost < 0:
            first_connect_lost = len(pending)
        if not pending:
            break
    result["first_connect_lost"] = first_connect_lost
    result["without_id_at_storm"] = len(pending)

    rng = random.Random(11)
    published_at: dict[int, tuple[float, float]] = {}
    stop = asyncio.Event()
    published = errors = 0

    async def publisher() -> None:
        nonlocal published, errors
        sem = asyncio.Semaphore(32)
        tasks: list[asyncio.Task[None]] = []

        async def one() -> None:
            nonlocal published, errors
            async with sem:
                try:
                    sent_at = time.monotonic()
                    for recipient, nid in await target.publish(rng.choice(keys), "storm"):
                        expected[recipient].append(nid)
                        published_at[nid] = (sent_at, time.monotonic())
                    published += 1
                except Exception:
                    errors += 1

        start = time.monotonic()
        i = 0
        while not stop.is_set():
            delay = start + i / cfg.storm_rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one()))
            i += 1
        await asyncio.gather(*tasks)

    meter = Meter(pg, target.server.worker_pids, pool.pids, target.database)
    db_sampler = pg.sampler(target.database)
    pub = asyncio.ensure_future(publisher())
    await asyncio.sleep(2.0)
    with sampled(db_sampler) as sampler:
        m0 = meter.snapshot()
        resumed = await pool.storm(inflight=max(n, 1))  # all at once: no client-side pacing
        m1 = meter.snapshot()
    await asyncio.sleep(3.0)
    stop.set()
    await pub
    await asyncio.sleep(3.0)
    received, at_drop = await pool.ids()
    lost = duplicates = disorder = 0
    lost_when: Counter[str] = Counter()
    debug: list[dict[str, Any]] = []
    for key in keys:
        got = received.get(key, [])
        duplicates += len(got) - len(set(got))
        disorder += sum(1 for a, b in itertools.pairwise(got) if b <= a)
        missing = set(expected[key]) - set(got)
        lost += len(missing)
        newest = max(got, default=0)
        resumed_from = max(got[: at_drop.get(key, 0)], default=0)  # its Last-Event-ID at the drop
        if missing and len(debug) < 3:
            debug.append(
                {"key": key, "missing": sorted(missing), "resumed_from": resumed_from, "got": got[-20:]}
            )
        for nid in missing:
            sent, acked = published_at.get(nid, (0.0, 0.0))
            if acked < resumed["dropped_at"]:
                phase = "acked-before-drop"
            elif sent <= resumed["ended"]:
                phase = "sent-during-storm"
            else:
                phase = "sent-after-all-live"
            where = "below-resume-point" if nid <= resumed_from else "above-resume-point"
            lost_when[f"{phase}/{where}/{'gap' if nid < newest else 'tail'}"] += 1
    live_s = resumed["ended"] - resumed["dropped_at"]
    load = Meter.delta(m0, m1)
    stats = await pool.stats()
    result.update(
        {
            "resumed": resumed["ok"],
            "resume_failures": {k: v for k, v in resumed["outcomes"].items() if k != "ok"},
            "all_live_s": round(live_s, 3),
            "accept_per_s": round(resumed["ok"] / live_s, 1) if live_s > 0 else None,
            "resume_p50_ms": ms(percentile(resumed["durations"], 50)),
            "resume_p99_ms": ms(percentile(resumed["durations"], 99)),
            "published_during": published,
            "publish_errors": errors,
            "expected_events": sum(len(v) for v in expected.values()),
            "lost": lost,
            "duplicates": duplicates,
            "out_of_order": disorder,
            "lost_by_phase": dict(lost_when),
            "lost_examples": debug,
            "control_events": dict(stats.get("control_names", {})),
            "unexpected_closes": stats["dropped"] + stats["ended"],
            "server_cpu_pct": load["server_cpu_pct"],
            "pg_cpu_pct": load["pg_cpu_pct"],
            "client_cpu_pct": load["client_cpu_pct"],
            "other_cpu_pct": load["other_cpu_pct"],
            "db_waits": sampler.top_waits() if sampler else None,
        }
    )
    emit(result)
    if db_sampler is not None:
        db_sampler.close()
    await pool.close()
