"""What the benchmark runs on: PostgreSQL, a fresh database, the bench tenant, gunicorn, and /proc readings."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# --------------------------------------------------------------------------------------------------------
# /proc
# --------------------------------------------------------------------------------------------------------
def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of ``pids`` (processes that vanished count as 0)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds used by everything on the machine (all cores; /proc/stat less idle and iowait)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                total += int(f.read().split()[1]) * PAGE
        except OSError:
            continue
    return total


def children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(p) for p in f.read().split()]
    return found


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def processes_named(name: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/comm") as f:
                if f.read().strip() == name:
                    pids.append(int(entry))
    return pids


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "mem_gib": round(mem_kb / 1024 / 1024, 1),
        "python": sys.version.split()[0],
        "kernel": os.uname().release,
        # The kernel's cap on a listen queue (LISTEN_BACKLOG): a storm above it waits on TCP retransmits.
        "somaxconn": somaxconn(),
    }


def somaxconn() -> int | None:
    with contextlib.suppress(OSError, ValueError), open("/proc/sys/net/core/somaxconn") as f:
        return int(f.read())
    return None


def raise_fd_limit() -> int:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------------------
def url_for(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


class Postgres:
    """The embedded server (``pgserver``, deleted at the end) unless ``DATABASE_URL`` names one."""

    def __init__(self, workdir: Path) -> None:
        self.server: Any = None
        external = os.environ.get("DATABASE_URL", "")
        if external:
            self.admin_url = external
        else:
            import logging

            from service import embedded_db

            logging.getLogger("pgserver").setLevel(logging.ERROR)
            self.server = embedded_db.start(workdir / "pg", cleanup_mode="delete")
            self.admin_url = embedded_db.url(self.server)
        self.monitor = psycopg.connect(self.admin_url, autocommit=True)
        self.databases: list[str] = []

    @property
    def version(self) -> str:
        row = self.monitor.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "?"

    def setting(self, name: str) -> str:
        row = self.monitor.execute("SELECT current_setting(%s)", [name]).fetchone()
        return str(row[0]) if row else "?"

    def pids(self) -> list[int]:
        """The postmaster and its children (backends, walwriter, ...), when they run on this machine."""
        if self.server is not None:
            with contextlib.suppress(Exception):
                pm = int(self.server.get_pid())
                return [pm, *children(pm)]
        return processes_named("postgres")

    def create_database(self, prefix: str) -> tuple[str, str]:
        name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.monitor.execute(f'CREATE DATABASE "{name}"')
        self.databases.append(name)
        return name, url_for(self.admin_url, name)

    def db_counters(self, name: str) -> dict[str, int]:
        """Transactions and tuples of one database (pg_stat_database; flushed by backends within ~1-10 s)."""
        row = self.monitor.execute(
            "SELECT xact_commit + xact_rollback, tup_returned, tup_fetched, tup_inserted + tup_updated + tup_deleted "
            "FROM pg_stat_database WHERE datname = %s",
            [name],
        ).fetchone()
        assert row is not None
        return {
            "xacts": int(row[0]),
            "tup_returned": int(row[1]),
            "tup_fetched": int(row[2]),
            "tup_written": int(row[3]),
        }

    def connections(self, name: str) -> int:
        """Client connections open to database ``name``."""
        row = self.monitor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'",
            [name],
        ).fetchone()
        return int(row[0]) if row else 0

    def sampler(self, name: str | None) -> ActivitySampler | None:
        return ActivitySampler(self.admin_url, name) if name else None

    def close(self) -> None:
        for name in self.databases:
            with contextlib.suppress(Exception):
                self.monitor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.monitor.close()
        if self.server is not None:
            with contextlib.suppress(Exception):
                self.server.cleanup()


class ActivitySampler:
    """Samples ``pg_stat_activity`` of one database every ``interval`` seconds, inside ``with`` blocks.

    Lag-free, unlike ``pg_stat_database`` (which backends flush up to 10 s late, and which also counts
    autovacuum): ``statements`` counts distinct (backend, query_start) pairs of client backends that started
    inside the block (a lower bound: statements that start and are replaced between two samples on one
    backend merge; zero is exact). ``waits`` counts what the backends were doing at each sample.
    The connection is opened at construction: create the sampler before a peer uses up max_connections.
    """

    def __init__(self, url: str, database: str, interval: float = 0.1) -> None:
        self.database = database
        self.interval = interval
        self.conn = psycopg.connect(url, autocommit=True)
        self.statements: set[tuple[int, Any]] = set()
        self.waits: Counter[str] = Counter()
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ActivitySampler:
        self.statements, self.waits, self.samples = set(), Counter(), 0
        self._stop.clear()
        row = self.conn.execute("SELECT clock_timestamp()").fetchone()
        assert row is not None
        self._thread = threading.Thread(target=self._run, args=(row[0],), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self, started: Any) -> None:
        while not self._stop.is_set():
            rows = self.conn.execute(
                "SELECT pid, query_start, state, coalesce(wait_event_type || ':' || wait_event, 'running') "
                "FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend' "
                "AND pid <> pg_backend_pid()",
                [self.database],
            ).fetchall()
            self.samples += 1
            for pid, query_start, state, wait in rows:
                if query_start is not None and query_start >= started:
                    self.statements.add((pid, query_start))
                self.waits[f"{state} / {wait}"] += 1
            self._stop.wait(self.interval)

    def top_waits(self, count: int = 5) -> dict[str, float]:
        """What an average sample saw: backends per (state / wait event), the most common first."""
        return {k: round(v / max(self.samples, 1), 2) for k, v in self.waits.most_common(count)}

    def close(self) -> None:
        self.conn.close()


@dataclass
class BeaconTenant:
    database: str
    url: str
    slug: str
    tenant_id: int
    schema: str
    signing_secret: str
    api_key: str


def server_counter(server: Gunicorn, name: str) -> dict[str, float]:
    """A counter summed over the server's workers, by its first label's value, read from the multiprocess
    files its workers write (``PROMETHEUS_MULTIPROC_DIR``): exact, and no request to the server."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(server.prom_dir))
    values: dict[str, float] = {}
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name == name:
                label = next(iter(sample.labels.values()), "")
                values[label] = values.get(label, 0.0) + sample.value
    return values


def manage(args: list[str], database_url: str) -> str:
    env = {**os.environ, "DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "service.settings"}
    out = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if out.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


def setup_beacon(pg: Postgres, slug: str = "bench") -> BeaconTenant:
    """A fresh database, shared migrations, the bench tenant (high limits) and an API key."""
    name, url = pg.create_database("beacon_bench")
    manage(["migrate_schemas", "--shared", "-v", "0"], url)
    manage(["create_tenant", slug, "--name", "Benchmark"], url)
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "UPDATE tenants_tenant SET max_connections = 100000, max_connections_per_recipient = 100000, "
            "publish_rate_per_second = 1000000 WHERE slug = %s RETURNING id, schema_name, signing_secret",
            [slug],
        ).fetchone()
    assert row is not None
    key = manage(["create_api_key", slug, "--name", "bench"], url).strip().splitlines()[-1].strip()
    if not re.match(r"^bk_", key):
        raise RuntimeError(f"create_api_key printed no key: {key!r}")
    return BeaconTenant(name, url, slug, int(row[0]), str(row[1]), str(row[2]), key)


# --------------------------------------------------------------------------------------------------------
# gunicorn
# --------------------------------------------------------------------------------------------------------
@dataclass
class Gunicorn:
    """``gunicorn -c deploy/gunicorn.conf.py [APP]`` on a loopback port: Beacon's deployment settings."""

    name: str
    workdir: Path
    env: dict[str, str]
    app: str | None = None  # None: the config's own (Beacon); peers name theirs
    ready_path: str = "/healthz"
    workers: int = 2
    config: Path = ROOT / "deploy" / "gunicorn.conf.py"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}-{self.port}.log"

    @property
    def prom_dir(self) -> Path:
        return self.workdir / f"prom-{self.name}-{self.port}"

    def start(self, timeout: float = 90.0) -> Gunicorn:
        prom = self.prom_dir
        prom.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "WEB_CONCURRENCY": str(self.workers),
            "BIND": f"127.0.0.1:{self.port}",
            "METRICS_PORT": "0",
            "PROMETHEUS_MULTIPROC_DIR": str(prom),
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }
        cmd = [sys.executable, "-m", "gunicorn", "-c", str(self.config)]
        if self.app:
            cmd.append(self.app)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name}: gunicorn exited\n{self.log_tail()}")
            if len(self.worker_pids()) >= self.workers and all(
                self._get(self.ready_path) == 200 for _ in range(6)
            ):
                return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: not ready after {timeout}s\n{self.log_tail()}")
            time.sleep(0.2)

    def _get(self, path: str) -> int:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=3)
            conn.request("GET", path)
            status = conn.getresponse().status
            conn.close()
            return status
        except OSError:
            return 0

    def worker_pids(self) -> list[int]:
        return children(self.process.pid) if self.process is not None else []

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 40.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


class RedisServer:
    """A private ``redis-server`` (Debian's package) on a free port, no persistence: the bench's Redis broker.

    Never the machine's Redis: the bench must not disturb (or be disturbed by) anything else using it.
    """

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return self
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
