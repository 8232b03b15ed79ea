"""gunicorn settings for Beacon: `gunicorn -c deploy/gunicorn.conf.py`.

Everything is read from the environment so the same file serves the container image, Helm and local runs:

    WEB_CONCURRENCY          worker processes (default 2; one per core)
    BIND / PORT              listen address (default 0.0.0.0:8000; PORT alone gives 0.0.0.0:$PORT)
    DRAIN_SECONDS            the stream drain window (default 20); gunicorn's graceful_timeout is 10 s more
    METRICS_PORT             Prometheus port served by the master (default 9464; 0 disables it)
    METRICS_BIND             address of that port (default 0.0.0.0)
    LISTEN_BACKLOG           connections queued before they are accepted (default 16384; the kernel caps it
                             at net.core.somaxconn): a reconnect storm beyond it waits on TCP retransmits
    PROMETHEUS_MULTIPROC_DIR where workers write metric files (default: /tmp/beacon-prometheus-<master pid>,
                             this instance's own, removed at exit; the image sets /tmp/prometheus)
    FORWARDED_ALLOW_IPS      proxies trusted for X-Forwarded-Proto / X-Forwarded-For: comma-separated
                             addresses or networks (default 127.0.0.1,::1; `*` trusts every peer)
    DATABASE_URL             required: the master refuses to start without it (`make run` and the tests
                             start an embedded PostgreSQL and set it)

Metrics run in prometheus-client's multiprocess mode: every worker writes its samples to files in
PROMETHEUS_MULTIPROC_DIR and the master serves their aggregate on METRICS_PORT, never on the public port.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

# Each instance gets its own directory unless told otherwise: the master empties it at start, so a shared
# default would let a second server on the machine wipe the first one's metrics.
DEFAULT_MULTIPROC_DIR = f"/tmp/beacon-prometheus-{os.getpid()}"


def _remove_own_multiproc_dir() -> None:
    """Remove the metrics directory when it is this instance's own default one (not one set by the operator)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR") == DEFAULT_MULTIPROC_DIR:
        shutil.rmtree(DEFAULT_MULTIPROC_DIR, ignore_errors=True)


def _stop_while_loading(signum: int, frame: object) -> None:
    """SIGTERM or SIGINT while the master still imports the app (preload_app; gunicorn sets its own
    handlers only after that): stop at once and cleanly, as gunicorn would with nothing to drain.

    Not by raising SystemExit: it would surface in whatever the import runs at that moment, and a library's
    bare ``except:`` around an optional import swallows it (the master then served on). Nothing has started
    yet that ``os._exit`` would skip: no worker, no metrics server."""
    _remove_own_multiproc_dir()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # the signal may have interrupted a write to this very stream
            stream.flush()
    os._exit(0)


# First thing, so that no part of loading is left uncovered; only while nothing else handles them: a HUP
# re-reads this file, and gunicorn's handlers must stay.
for _signal in (signal.SIGTERM, signal.SIGINT):
    if signal.getsignal(_signal) in (signal.SIG_DFL, signal.default_int_handler):
        signal.signal(_signal, _stop_while_loading)

from service.numbers import ascii_decimal, ascii_int  # noqa: E402 - after the signal handlers

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer


class _Logger(Protocol):
    def info(self, msg: str, *args: object) -> None: ...


class _Arbiter(Protocol):
    """What the hooks use of gunicorn's Arbiter (gunicorn ships no type hints)."""

    log: _Logger


class _Worker(Protocol):
    pid: int


def _env_int(name: str, default: int) -> int:
    """A whole-number setting from the environment in ASCII digits (``service.numbers``); refuses junk
    (``١٢``, ``_8000``, ``+80``) at start-up instead of guessing."""
    raw = os.environ.get(name, "").strip(" \t")
    if not raw:
        return default
    value = ascii_int(raw)
    if value is None:
        raise SystemExit(f"gunicorn.conf.py: {name} must be a whole number in ASCII digits, got {raw!r}")
    return value


def _env_port(name: str, default: int) -> int:
    """A TCP port (0-65535) in ASCII digits: gunicorn itself would read ``PORT=١٢`` as port 12."""
    value = _env_int(name, default)
    if value > 65535:
        raise SystemExit(f"gunicorn.conf.py: {name} must be a port from 0 to 65535, got {value}")
    return value


def _env_seconds(name: str, default: float) -> float:
    """A non-negative number of seconds from the environment (Beacon's settings accept fractions)."""
    raw = os.environ.get(name, "").strip(" \t")
    value = ascii_decimal(raw) if raw else default
    if value is None or not math.isfinite(value) or value < 0:
        raise SystemExit(
            f"gunicorn.conf.py: {name} must be a non-negative number in ASCII digits, got {raw!r}"
        )
    return value


def _default_bind() -> str:
    if bind_env := os.environ.get("BIND", "").strip():
        return bind_env
    if os.environ.get("PORT", "").strip(" \t"):
        return f"0.0.0.0:{_env_port('PORT', 8000)}"
    return "0.0.0.0:8000"


# Checked here, before the master imports the app (preload_app) whose settings would fail less clearly.
if not os.environ.get("DATABASE_URL"):
    raise SystemExit(
        "DATABASE_URL is not set: set it to postgresql://user:password@host:5432/dbname "
        "(`make run` starts an embedded PostgreSQL for development)"
    )

# prometheus-client decides between single- and multi-process mode when it is first imported, and
# workers fork from this master: the variable must be set before anything imports prometheus_client.
# That is why it is set here, at config load, and why the hooks import prometheus_client lazily.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", DEFAULT_MULTIPROC_DIR)
# The master imports the app (preload_app, below), and the app's metrics open their files in this directory.
Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)


DRAIN_SECONDS = _env_seconds("DRAIN_SECONDS", 20)
METRICS_PORT = _env_port("METRICS_PORT", 9464)
METRICS_BIND = os.environ.get("METRICS_BIND", "").strip() or "0.0.0.0"

# --- gunicorn settings (names are gunicorn's) ---------------------------------------------------------
wsgi_app = "service.asgi:application"  # an ASGI app: the uvicorn worker serves it
worker_class = "service.serving.BeaconWorker"  # uvicorn_worker.UvicornWorker, errors in the JSON shape
# The master imports the app once and forks every worker from it: a worker starts without importing Django
# again (two workers: 2.0 -> 1.2 s of CPU to start, docs/benchmarks.md), a killed worker is back at once, and
# the workers share the master's memory pages (pre_fork freezes the heap so that their collections leave those
# pages alone). A HUP then restarts workers on the code already loaded: deploy new code with a new process.
preload_app = True
workers = _env_int("WEB_CONCURRENCY", 2)
bind = [_default_bind()]
# uvicorn applies X-Forwarded-Proto / X-Forwarded-For (scheme and client address of the request, used by
# the same-origin check and the access log) only from these peers; anyone else could forge them.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "").strip() or "127.0.0.1,::1"
# Streams are closed spread over DRAIN_SECONDS after SIGTERM; 10 s more lets cleanup finish before
# gunicorn kills the worker. Kubernetes' terminationGracePeriodSeconds must exceed preStop + this.
graceful_timeout = math.ceil(DRAIN_SECONDS) + 10
timeout = 60  # worker heartbeat timeout (the uvicorn worker beats from its event loop, not per request)
keepalive = 5
# The kernel's queue of connections not yet accepted. When a pod drains, thousands of clients reconnect at
# once; past this queue the kernel drops their handshakes and they retry only after 1 s, 3 s, 7 s (TCP's
# retransmission timer), so a reconnect storm waits instead of computing. The kernel caps it at
# net.core.somaxconn (the chart can raise that per pod: values.yaml `sysctls`).
backlog = _env_int("LISTEN_BACKLOG", 16384)
# No max_requests: recycling a worker would cut every open stream it holds.
accesslog = "-"
errorlog = "-"
# gunicorn >= 25.1 opens a control socket under $HOME by default; one container, one process: not needed.
control_socket_disable = True

# The master's metrics server, kept so that forked workers can close their copy of its socket.
_metrics_server: WSGIServer | None = None


def _multiproc_dir() -> Path:
    return Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or DEFAULT_MULTIPROC_DIR)


def on_starting(server: _Arbiter) -> None:
    """Master, before workers exist: drop a previous run's files from PROMETHEUS_MULTIPROC_DIR (made at load).

    Only prometheus-client's own files (`*.db`) are removed, so a directory shared by mistake survives. The
    master's own, opened while it imported the app, go too: the master serves metrics but records none, and
    each forked worker opens files of its own (prometheus-client notices the new pid).
    """
    path = _multiproc_dir()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)


def when_ready(server: _Arbiter) -> None:
    """Master, once listening: serve the aggregate of all workers' metrics on METRICS_PORT."""
    global _metrics_server
    if METRICS_PORT == 0 or _metrics_server is not None:
        return
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    try:
        _metrics_server, _thread = start_http_server(METRICS_PORT, METRICS_BIND, registry)
    except OSError as exc:
        raise SystemExit(
            f"metrics port {METRICS_BIND}:{METRICS_PORT} is unavailable ({exc.strerror}): "
            "set METRICS_PORT to a free port (0 turns metrics off)"
        ) from None
    server.log.info("Prometheus metrics on http://%s:%s/metrics", METRICS_BIND, METRICS_PORT)


def pre_fork(server: _Arbiter, worker: _Worker) -> None:
    """Master, before each fork: move everything allocated so far (the preloaded app) out of the cyclic
    collector's reach. Without it, a child's first collections touch every inherited object, copying the
    pages they sit on (Python's ``gc.freeze`` documentation); a one-worker start cost 0.25 s more CPU."""
    gc.freeze()


def post_fork(server: _Arbiter, worker: _Worker) -> None:
    """Worker, just forked: close the inherited copy of the metrics socket (only the master serves it)."""
    if _metrics_server is not None:
        _metrics_server.socket.close()


def on_exit(server: _Arbiter) -> None:
    """Master, exiting: remove the metrics directory when it is this instance's own default one."""
    _remove_own_multiproc_dir()


def child_exit(server: _Arbiter, worker: _Worker) -> None:
    """Master, a worker exited: drop its live-mode gauge files so `livesum` gauges stop counting it."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
