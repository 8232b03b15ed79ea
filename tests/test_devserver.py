"""``make run`` for a person (service/devserver.py), per-instance metrics, and trusted proxy headers."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest

from tests.support import ROOT, Api, free_port, sse_stream, unique, wait_until


def devserver_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(
        DATABASE_URL=os.environ["BEACON_TEST_DATABASE_URL"],
        EMBEDDED_PG_DIR=str(tmp_path / "pg"),  # the demo key file goes beside it, not into the checkout
        STATIC_ROOT=str(tmp_path / "static"),
        WEB_CONCURRENCY="1",
        METRICS_BIND="127.0.0.1",
        PYTHONUNBUFFERED="1",
        PYTHONFAULTHANDLER="1",  # a stalled start-up prints its Python stacks (Output.diagnosis)
    )
    env.update(extra)
    return env


class Output:
    """A process's merged output, read line by line on a thread (no blocking reads in the test)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float, database: str | None = None) -> str:
        """The output once ``pattern`` appears in it; on timeout, fail with what a stall needs to be diagnosed
        (``diagnosis``)."""

        def seen() -> bool:
            if re.search(pattern, self.text):
                return True
            if self.process.poll() is not None:  # it exited without saying it: fail now, not at the timeout
                self._thread.join(5)  # the rest of its output
                if re.search(pattern, self.text):
                    return True
                raise AssertionError(f"the process exited ({self.process.returncode}) before {pattern!r}")
            return False

        try:
            wait_until(seen, timeout=timeout, message=f"{pattern!r} in output")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.diagnosis(database)}") from None
        return self.text

    def diagnosis(self, database: str | None) -> str:
        """Which step stalls, and on what: the processes of the devserver's session, what its ``database``'s
        sessions wait for (and who blocks them, from any database), then every Python thread's stack (with
        ``PYTHONFAULTHANDLER`` set, SIGABRT makes each of its Python processes print them) and the output."""
        session = subprocess.run(
            ["ps", "-ww", "-s", str(self.process.pid), "-o", "pid,ppid,etime,time,stat,wchan:24,args"],
            capture_output=True,
            text=True,
        ).stdout
        parts = [f"--- its processes ---\n{session}"]
        if database:
            with contextlib.suppress(psycopg.Error), psycopg.connect(os.environ["DATABASE_URL"]) as conn:
                rows = conn.execute(
                    "SELECT pid, datname, application_name, state, wait_event_type, wait_event,"
                    " pg_blocking_pids(pid), now() - query_start, left(query, 300) FROM pg_stat_activity"
                    " WHERE datname = %(db)s OR pid IN (SELECT unnest(pg_blocking_pids(a.pid))"
                    " FROM pg_stat_activity a WHERE a.datname = %(db)s)",
                    {"db": urlsplit(database).path.lstrip("/")},
                ).fetchall()
                parts.append(
                    "--- its database's sessions and their blockers ---\n" + "\n".join(map(str, rows))
                )
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGABRT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        self._thread.join(timeout=5)
        parts.append(f"--- output, then stacks ---\n{self.text}")
        return "\n".join(parts)

    def rest(self) -> str:
        self._thread.join(timeout=10)
        return self.text


@pytest.fixture
def empty_database() -> Iterator[str]:
    """A database of this test's own, as on a first ``make run``: the devserver migrates every tenant schema,
    and the suite's database holds hundreds of them by the time this test runs."""
    name = f"beacon_devserver_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(os.environ["BEACON_TEST_DATABASE_URL"])._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_make_run_honours_port_and_stops_quickly_on_ctrl_c_with_a_stream_open(tmp_path, empty_database):
    port, metrics_port = free_port(), free_port()
    env = devserver_env(tmp_path, PORT=str(port), METRICS_PORT=str(metrics_port), DATABASE_URL=empty_database)
    process = subprocess.Popen(
        [sys.executable, "-m", "service.devserver"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, like a terminal's foreground job
    )
    try:
        out = Output(process)
        output = out.wait_for(r"Ctrl-C stops it", timeout=240, database=empty_database)
        assert "==> migrating the database" in output and "==> collecting static files" in output
        assert f"http://localhost:{port}/" in output
        assert f"localhost:{port}/v1/notifications" in output
        assert "localhost:8000" not in output
        key = re.search(r"Demo API key: (bk_\S+)", output).group(1)
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: _ready(base), timeout=60, message="devserver ready")
        metrics_dir = Path(_child_environ(process.pid, "gunicorn")["PROMETHEUS_MULTIPROC_DIR"])
        assert metrics_dir.is_dir() and metrics_dir.name.startswith("beacon-prometheus-")  # this run's own
        api = Api(base, key)
        with contextlib.ExitStack() as streams:
            opened = []  # kept referenced: a dropped event iterator closes its response
            for _ in range(3):  # streams open: the drain spreads their closes over DRAIN_SECONDS
                opened.append(streams.enter_context(sse_stream(base, api.token(unique()), timeout=30)))
                next(opened[-1])  # the stream is open (the retry block)
            started = time.monotonic()
            os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does: SIGINT to the foreground group
            process.wait(timeout=30)
            stopped = time.monotonic() - started
        rest = out.rest()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, rest[-2000:]
    assert "SIGKILL" not in rest and "Traceback" not in rest, rest[-2000:]
    # The bound: a 0.5 s drain in development (the production one spreads closes over 20 s).
    assert stopped < 3, f"make run took {stopped:.2f}s to stop after Ctrl-C with streams open"
    assert not metrics_dir.exists()  # removed at exit


def _child_environ(parent: int, name: str) -> dict[str, str]:
    """The environment of ``parent``'s child process whose command line mentions ``name``."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and name.encode() in cmdline:
            raw = (stat.parent / "environ").read_bytes()
            return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)
    raise AssertionError(f"no child {name!r} of {parent}")


def _ready(base: str) -> bool:
    try:
        return httpx.get(base + "/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _devserver_refusal(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``make run`` on free ports with ``env`` over them, expected to stop by itself; its output captured."""
    ports = {"PORT": str(free_port()), "METRICS_PORT": str(free_port()), **env}
    return subprocess.run(
        [sys.executable, "-m", "service.devserver"],
        cwd=ROOT,
        env=devserver_env(tmp_path, **ports),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("variable", ["PORT", "METRICS_PORT"])
def test_make_run_busy_port_is_one_line_naming_the_variable(tmp_path, variable):
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        done = _devserver_refusal(tmp_path, **{variable: str(taken)})
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"set {variable} to a free port" in lines[0], done.stderr


@pytest.mark.parametrize(
    ("database", "failed"),
    [
        ("missing", "migrate_schemas: "),  # the server is there, the database is not
        ("refused", "migrate_schemas: "),  # nothing listens: psycopg's message spans lines
        ("garbage", "settings: DATABASE_URL: "),  # the settings refuse it before any step
    ],
)
def test_make_run_a_failing_step_is_one_line_naming_it(tmp_path, database, failed):
    """The steps run in the devserver's own process (one Django start-up); a step that fails ends ``make run``
    with one line naming it, not a traceback."""
    database_url = {
        "missing": urlunsplit(
            urlsplit(os.environ["BEACON_TEST_DATABASE_URL"])._replace(path="/beacon_no_such_db")
        ),
        "refused": f"postgresql://beacon@127.0.0.1:{free_port()}/beacon",
        "garbage": "garbage",
    }[database]
    done = _devserver_refusal(tmp_path, DATABASE_URL=database_url)
    assert done.returncode == 1
    assert "==> collecting" not in done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"make run: step failed ({failed}"), done.stderr
    assert "Traceback" not in done.stderr


def test_busy_metrics_port_under_gunicorn_is_one_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        env = {
            **os.environ,
            "DATABASE_URL": os.environ["BEACON_TEST_DATABASE_URL"],
            "BIND": f"127.0.0.1:{free_port()}",
            "METRICS_PORT": str(busy.getsockname()[1]),
            "METRICS_BIND": "127.0.0.1",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        }
        done = subprocess.run(
            [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode != 0
    assert "set METRICS_PORT to a free port" in done.stderr and "Traceback" not in done.stderr


def _gunicorn(port: int, metrics_port: int, *app: str, **extra: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(
        DATABASE_URL=os.environ["BEACON_TEST_DATABASE_URL"],
        BIND=f"127.0.0.1:{port}",
        METRICS_PORT=str(metrics_port),
        METRICS_BIND="127.0.0.1",
        WEB_CONCURRENCY="1",
        **extra,
    )
    with _sigint_as_in_a_terminal():
        return subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", *app],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )


@contextlib.contextmanager
def _sigint_as_in_a_terminal() -> Iterator[None]:
    """Children started inside get SIGINT at its default action, as a terminal's foreground process has it.
    A shell's background job (``make test &``) starts with SIGINT ignored, which every child inherits, and
    gunicorn rightly leaves an ignored SIGINT ignored while the master imports the app."""
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)  # caught here: the child's is reset to default
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_while_the_master_imports_the_app_is_clean(signum, tmp_path):
    """gunicorn sets its signal handlers only after the master has imported the app (preload_app, about a
    second): a Ctrl-C or a SIGTERM in that window still exits 0 and removes the metrics directory. The app
    here is one whose import waits (tests/import_gate.py), so the signal lands in that window on any machine;
    tests/test_lifecycle.py covers the same signals once the workers serve."""
    gate = tmp_path / "importing"
    process = _gunicorn(
        free_port(), free_port(), "tests.import_gate:application", BEACON_TEST_IMPORT_GATE=str(gate)
    )
    own = Path(f"/tmp/beacon-prometheus-{process.pid}")
    try:
        wait_until(gate.exists, timeout=30, interval=0.01, message="the master to import the app")
        assert own.is_dir()
        process.send_signal(signum)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert not own.exists()


def _healthz_count(metrics_port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    found = re.search(r'beacon_http_requests_total\{method="GET",route="/healthz",status="200"\} (\S+)', text)
    return float(found.group(1)) if found else 0.0


def test_two_servers_keep_separate_metrics_without_configuration():
    """No PROMETHEUS_MULTIPROC_DIR: each server gets its own directory; the second never wipes the first."""
    first_ports, second_ports = (free_port(), free_port()), (free_port(), free_port())
    first = _gunicorn(*first_ports)
    second = None
    try:
        wait_until(lambda: _ready(f"http://127.0.0.1:{first_ports[0]}"), timeout=60, message="first server")
        for _ in range(5):
            httpx.get(f"http://127.0.0.1:{first_ports[0]}/healthz", timeout=5)
        assert _healthz_count(first_ports[1]) == 5
        second = _gunicorn(*second_ports)
        wait_until(lambda: _ready(f"http://127.0.0.1:{second_ports[0]}"), timeout=60, message="second server")
        httpx.get(f"http://127.0.0.1:{second_ports[0]}/healthz", timeout=5)
        assert _healthz_count(first_ports[1]) == 5  # not wiped by the second server's start
        assert _healthz_count(second_ports[1]) == 1
        own = Path(f"/tmp/beacon-prometheus-{first.pid}")
        assert own.is_dir()
    finally:
        for process in (first, second):
            if process is not None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
    assert not own.exists()  # removed at exit


# --- behind a proxy: FORWARDED_ALLOW_IPS ------------------------------------------------------------------


def _stream_status(base: str, token: str, port: int) -> int:
    headers = {
        "Authorization": f"Bearer {token}",
        "Origin": f"https://127.0.0.1:{port}",  # the page's origin behind a TLS-terminating proxy
        "X-Forwarded-Proto": "https",
        "X-Forwarded-For": "203.0.113.7",
    }
    with httpx.stream("GET", base + "/v1/stream", headers=headers, timeout=10) as response:
        return response.status_code


@pytest.mark.parametrize(("trusted", "expected"), [("127.0.0.1", 200), ("10.9.8.7", 403)])
def test_forwarded_proto_is_trusted_only_from_configured_proxies(
    start_server, make_tenant, trusted, expected
):
    """Same-origin https page behind a proxy: allowed only when the proxy (here: loopback) is trusted."""
    server = start_server(workers=1, FORWARDED_ALLOW_IPS=trusted)
    _, key = make_tenant()  # no allowed origins: only a same-origin page may open a stream
    token = Api(server.url, key).token(unique())
    assert _stream_status(server.url, token, server.port) == expected
    if trusted == "127.0.0.1":
        wait_until(
            lambda: "203.0.113.7" in server.log_tail(200), timeout=10, message="forwarded client logged"
        )
    else:
        assert "203.0.113.7" not in server.log_tail(200)
