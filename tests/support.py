"""Test helpers: a real gunicorn server, API clients and SSE readers (httpx + httpx-sse)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import httpx
from httpx_sse import ServerSentEvent, connect_sse

ROOT = Path(__file__).resolve().parent.parent

#: Debian's chromium, driven by Playwright (``playwright install`` downloads nothing here).
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: No sandbox as root, and no background traffic: this machine reaches no other host.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


#: Under pytest-xdist, the first worker migrates its database and copies it as this run's template; the others
#: copy the template (``CREATE DATABASE ... TEMPLATE``, a fraction of a second) instead of migrating again
#: (seconds of CPU each, while every worker starts at once). Named by the controller, dropped by it at the end.
TEMPLATE_VARIABLE = "BEACON_TEST_TEMPLATE_DATABASE"


def create_database(admin: Any, name: str) -> bool:
    """``CREATE DATABASE name`` over ``admin`` (a psycopg connection in autocommit): a copy of this run's
    migrated template when it exists (returns ``True``), else an empty database for the caller to migrate."""
    template = os.environ.get(TEMPLATE_VARIABLE)
    copied = (
        bool(template)
        and admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [template]).fetchone()
    )
    admin.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if copied else ""))
    return bool(copied)


def launch_chromium(playwright: Any) -> Any:
    """A headless Debian chromium for ``playwright`` (a ``sync_playwright()`` context)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


class PortTaken(Exception):
    """Another process took the port ``free_port`` gave before gunicorn could bind it."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unique(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_until(
    predicate: Any, timeout: float = 10.0, interval: float = 0.02, message: str = "condition"
) -> Any:
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def manage(*args: str) -> subprocess.CompletedProcess[str]:
    """``manage.py *args`` run in this process as Django's command line runs a command (``run_from_argv``: the
    same parsing, ``CommandError`` printed to stderr, the exit status), on the test database, with stdout and
    stderr captured. A subprocess costs 1-2 s of CPU to import Django again; the tests of manage.py itself
    (its embedded database, its venv re-run, where its logs go) still start one.

    Not ``ManagementUtility.execute``: it runs ``django.setup()`` again, which would configure this process's
    logging onto the captured stderr."""
    from django.core.management import ManagementUtility

    argv = ["manage.py", *args]
    out, err = io.StringIO(), io.StringIO()
    code: int | str | None = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            ManagementUtility(argv).fetch_command(args[0]).run_from_argv(argv)
        except SystemExit as exit_:
            code = exit_.code
    if not isinstance(code, int):  # sys.exit("message") prints it and exits 1, as Python does
        if code is not None:
            err.write(f"{code}\n")
        code = 0 if code is None else 1
    return subprocess.CompletedProcess(["manage.py", *args], code, out.getvalue(), err.getvalue())


def manage_process(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``manage.py *args`` in a process of its own, on the test database unless ``env`` names another, with
    ``env`` over this process's environment: for what only a fresh process shows (where its logs go, a broker
    chosen from its environment, a database of a test's own)."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": os.environ["BEACON_TEST_DATABASE_URL"], **env},
        capture_output=True,
        text=True,
        timeout=180,
    )


def server_errors(lines: list[str]) -> list[str]:
    """Log lines that show a server bug: an access-log ``500`` or an ``ERROR`` record with a traceback."""
    found = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            if line.startswith("Traceback") or (" 500" in line and "HTTP/1.1" in line):
                found.append(line)  # a line not written by Beacon's JSON formatter (uvicorn before set-up)
            continue
        if not isinstance(entry, dict):
            continue
        if entry.get("status") == 500 or (
            entry.get("level") in {"ERROR", "CRITICAL"} and "exc_info" in entry
        ):
            found.append(line[:2000])
    return found


@dataclass
class Server:
    """A gunicorn + uvicorn-worker process tree serving Beacon on a loopback port.

    Every server ever started is kept in ``Server.started``: an autouse fixture (conftest) reads what each
    wrote to its log during a test and fails the test on a ``500`` or a logged traceback.
    """

    started: ClassVar[list[Server]] = []

    env: dict[str, str]
    port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    _database_url: str = ""
    _workers: int = 1

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, tmp: Path, workers: int = 2) -> Server:
        """Start gunicorn and wait until it is ready. ``free_port`` only found ports free a moment ago: when
        another test's server took one meanwhile (gunicorn logs ``Connection in use`` and retries, while the
        other server answers our readiness checks), start again on new ports."""
        for _attempt in range(3):
            try:
                return self._start(tmp, workers)
            except PortTaken:
                self.stop(timeout=5)
                Server.started.remove(self)
                self.port, self.metrics_port = free_port(), free_port()
        raise AssertionError(f"no free port for gunicorn after 3 attempts: {self.log_tail()}")

    def _start(self, tmp: Path, workers: int) -> Server:
        multiproc = tmp / f"prom-{self.port}"
        multiproc.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "WEB_CONCURRENCY": str(workers),
            "BIND": f"127.0.0.1:{self.port}",
            "METRICS_PORT": str(self.metrics_port),
            "METRICS_BIND": "127.0.0.1",
            "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }
        self._database_url = env.get("DATABASE_URL", "")
        self._workers = workers
        self.log_path = tmp / f"gunicorn-{self.port}.log"
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "deploy" / "gunicorn.conf.py")],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        Server.started.append(self)
        wait_until(self._ready, timeout=60, message=f"gunicorn on {self.port} to be ready ({self.log_path})")
        return self

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path is not None and self.log_path.exists() else 0

    def log_text(self, offset: int = 0) -> str:
        """What the server wrote to its log after byte ``offset`` (``log_size`` earlier)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def errors_since(self, offset: int) -> list[str]:
        """``server_errors`` among the log lines written after byte ``offset``."""
        return server_errors(self.log_text(offset).splitlines())

    def _ready(self) -> bool:
        assert self.process is not None
        log = self.log_text()
        if "Connection in use" in log or "Address already in use" in log:
            raise PortTaken(self.port)
        if self.process.poll() is not None:
            raise AssertionError(f"gunicorn exited: {self.log_tail()}")
        if f"Listening at: {self.url} " not in log:
            return False  # not bound yet: whatever answers on this port now is not this server
        try:
            # Both workers must be ready: ask a few times (each request may land on either worker).
            if not all(httpx.get(self.url + "/readyz", timeout=2).status_code == 200 for _ in range(4)):
                return False
        except httpx.HTTPError:
            return False
        return self._workers_live()

    def _workers_live(self) -> bool:
        """Every worker is registered and live (``beacon_live_workers``): the readiness probe may have landed
        on the same worker each time, and a worker not yet live refuses streams (``503``, streaming/0006)."""
        import psycopg

        pids = set(self.worker_pids())
        if len(pids) < self._workers or not self._database_url:
            return not self._database_url and len(pids) >= self._workers
        try:
            with psycopg.connect(self._database_url, autocommit=True, connect_timeout=2) as conn:
                return pids <= live_worker_pids(conn)
        except psycopg.Error:
            return False

    def log_tail(self, lines: int = 60) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def worker_pids(self) -> list[int]:
        assert self.process is not None
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]

    def stop(self, timeout: float = 30) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


class Api:
    """A tenant backend's view of the API (API key) plus subscriber helpers."""

    def __init__(self, base_url: str, key: str) -> None:
        self.base_url = base_url
        self.key = key
        self.client = httpx.Client(base_url=base_url, timeout=30)

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", **extra}

    def publish(self, body: Any, *, batch: bool = False, **headers: str) -> httpx.Response:
        path = "/v1/notifications/batch" if batch else "/v1/notifications"
        return self.client.post(path, json=body, headers=self.headers(**headers))

    def publish_ok(self, body: Any) -> list[dict[str, Any]]:
        response = self.publish(body)
        assert response.status_code == 201, response.text
        return list(response.json()["notifications"])

    def token(self, recipient: str, topics: list[str] | None = None, ttl: int = 3600) -> str:
        response = self.client.post(
            "/v1/tokens",
            json={"recipient": recipient, "topics": topics or [], "ttl": ttl},
            headers=self.headers(),
        )
        assert response.status_code == 201, response.text
        return str(response.json()["token"])


@contextlib.contextmanager
def sse_stream(
    base_url: str,
    token: str,
    *,
    last_event_id: str | None = None,
    timeout: float = 15,
    headers: dict[str, str] | None = None,
) -> Iterator[Iterator[ServerSentEvent]]:
    """Open ``/v1/stream`` and yield an iterator of parsed events (comments are not events)."""
    request_headers = {"Authorization": f"Bearer {token}", **(headers or {})}
    if last_event_id is not None:
        request_headers["Last-Event-ID"] = last_event_id
    with (
        httpx.Client(base_url=base_url, timeout=httpx.Timeout(timeout)) as client,
        connect_sse(client, "GET", "/v1/stream", headers=request_headers) as source,
    ):
        assert source.response.status_code == 200, source.response.read()
        yield source.iter_sse()


def take(
    events: Iterator[ServerSentEvent], count: int, *, skip_control: bool = True
) -> list[ServerSentEvent]:
    """The next ``count`` notification events (control events skipped unless asked for)."""
    found: list[ServerSentEvent] = []
    for event in events:
        if not event.data:
            # The SSE spec dispatches nothing when the data buffer is empty (a retry-only block, or the blank
            # line after a ``: ping``); httpx-sse still yields one, carrying the previous id.
            continue
        if skip_control and event.event.startswith("beacon."):
            continue
        found.append(event)
        if len(found) == count:
            break
    return found


def open_stream_socket(port: int, token: str) -> tuple[int, socket.socket]:
    """A stream request on a raw socket kept open: its status and the socket (closing it ends the stream)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(f"GET /v1/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
    return int(sock.recv(12).split(b" ")[1]), sock


def raw_exchange(port: int, request: bytes) -> bytes:
    """``request`` sent as is on a new connection to ``127.0.0.1:port``: all the server sent until it closed
    the connection (the request asks for ``Connection: close``, or the server closes after a refusal)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while part := sock.recv(65536):
            answer += part
    return answer


def read_response(sock: socket.socket, buffered: bytes = b"") -> tuple[int, dict[str, str], bytes, bytes]:
    """One HTTP/1.1 response read from a raw ``sock`` (``buffered``: bytes of it already read): its status,
    headers (lower-case names) and body, and the bytes read past it (a pipelined response's). Bodies are
    framed by ``Content-Length`` or chunked (Django's answers)."""
    data = buffered

    def until(marker: bytes) -> bytes:
        nonlocal data
        while marker not in data:
            part = sock.recv(65536)
            assert part, data
            data += part
        found, _, data = data.partition(marker)
        return found

    def exactly(size: int) -> bytes:
        nonlocal data
        while len(data) < size:
            part = sock.recv(65536)
            assert part, data
            data += part
        found, data = data[:size], data[size:]
        return found

    lines = until(b"\r\n\r\n").decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while size := int(until(b"\r\n"), 16):
            body += exactly(size)
            until(b"\r\n")
        until(b"\r\n")
    else:
        body = exactly(int(headers.get("content-length", "0")))
    return int(lines[0].split(" ")[1]), headers, body, data


def worker_pid(worker_id: str) -> int | None:
    """The OS pid in a streaming worker's id (``host:pid:suffix``, as ``beacon_stream_worker`` has it)."""
    parts = worker_id.split(":")
    return int(parts[-2]) if len(parts) >= 3 and parts[-2].isdigit() else None


def live_worker_pids(conn: Any) -> set[int]:
    """The OS pids of the workers registered and live (``beacon_live_workers()``) on ``conn`` (psycopg)."""
    return {
        pid
        for (worker,) in conn.execute("SELECT id FROM beacon_live_workers()").fetchall()
        if (pid := worker_pid(worker)) is not None
    }


def stalled_stream(port: int, api: Api) -> socket.socket:
    """A stream whose client stopped reading: a tiny receive buffer, then far more published to it than the
    buffers hold, so the server's write to it blocks (the tenant of ``api`` must take 60 KB payloads)."""
    user = unique("stalled")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        f"GET /v1/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {api.token(user)}\r\n\r\n".encode()
    )
    assert sock.recv(15).startswith(b"HTTP/1.1 200")
    for _ in range(10):
        api.publish({"notifications": [{"recipient": user, "data": "x" * 60_000}] * 20}, batch=True)
    return sock


def connection_reset(sock: socket.socket) -> bool:
    """Whether the peer reset ``sock``'s connection: the kernel's TCP state (``tcp_info.tcpi_state``) is
    closed (7), where a connection the server merely closed with bytes still unsent stays established (1)."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == 7


class CheckedThread(threading.Thread):
    """A thread whose failure fails the test: an ``assert`` in a plain thread only prints a warning.

    ``join()`` re-raises whatever the target raised, in the test's thread.
    """

    def __init__(self, target: Callable[[], None]) -> None:
        super().__init__(target=self._run_checked, daemon=True)
        self._checked_target = target
        self.error: BaseException | None = None

    def _run_checked(self) -> None:
        try:
            self._checked_target()
        except BaseException as exc:  # kept for join()
            self.error = exc

    def join(self, timeout: float | None = 60) -> None:
        super().join(timeout)
        if self.is_alive():
            raise AssertionError(f"thread {self.name} did not finish within {timeout} s")
        if self.error is not None:
            raise AssertionError(f"thread {self.name} failed: {self.error!r}") from self.error


def commit_unannounced(
    tenant: Any, recipient: str, count: int, *, rollback: bool = False, url: str | None = None
) -> list[int]:
    """Commit ``count`` rows for ``recipient`` through ``beacon_publish`` with no announcement at all (a
    publisher that died between commit and announce), or roll them back (a hole that stays empty); return
    the ids the rows took. ``url`` defaults to the suite's database."""
    import psycopg

    with psycopg.connect(url or os.environ["BEACON_TEST_DATABASE_URL"]) as conn:
        (ids,) = conn.execute(
            f'SELECT "{tenant.schema_name}".beacon_publish(%s, %s, %s, now(), %s, %s::text[], %s::text[], '
            "%s::boolean[], %s::text[], %s::text[], %s::integer[], NULL, %s, %s)",
            [
                tenant.id,
                1_000_000,
                int(time.time()),
                "2026-11-30T12:00:00.000000Z",
                [recipient] * count,
                [None] * count,
                [False] * count,
                [None] * count,
                [str(i) for i in range(count)],
                [3600] * count,
                tenant.schema_name,
                time.time(),
            ],
        ).fetchone()
        if rollback:
            conn.rollback()
        else:
            conn.commit()
    return list(ids)


def ends_within(events: Any, seconds: float) -> bool:
    """Whether the server ends the stream ``events`` within ``seconds`` (heartbeats keep an open one from
    timing out), drained on a thread of its own."""
    done = threading.Event()

    def drain() -> None:
        try:
            for _ in events:
                pass
        finally:
            done.set()

    threading.Thread(target=drain, daemon=True).start()
    return done.wait(seconds)


def read_stream(url: str, token: str, until: bytes, last_event_id: str | None = None) -> bytes:
    """Raw bytes of ``/v1/stream`` until ``until`` has been seen (or 10 s)."""
    headers = {"Authorization": f"Bearer {token}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    got = b""
    with httpx.Client(timeout=10) as client, client.stream("GET", url + "/v1/stream", headers=headers) as r:
        assert r.status_code == 200, r.read()
        deadline = time.monotonic() + 10
        for chunk in r.iter_raw():
            got += chunk
            if until in got or time.monotonic() > deadline:
                break
    return got
