"""Helpers for the observability tests: scraping and parsing metrics, raw SSE streams, PromQL names."""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
from httpx_sse import EventSource, ServerSentEvent
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from sentry_sdk.envelope import Envelope

from tests.support import free_port, manage_process, wait_until

Samples = dict[str, list[tuple[dict[str, str], float]]]


def parse_samples(text: str) -> Samples:
    """Exposition text as ``{sample name: [(labels, value), ...]}`` (``_total``/``_bucket`` names kept)."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return samples


def scrape(metrics_port: int) -> Samples:
    response = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
    response.raise_for_status()
    return parse_samples(response.text)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name`` over the series whose labels include ``labels``."""
    return sum(value for found, value in samples.get(name, ()) if labels.items() <= found.items())


def connections_by_pid(multiproc_dir: Path, tenant: str) -> dict[int, float]:
    """Open streams of ``tenant`` per worker, read from each worker's own live-gauge file."""
    counts: dict[int, float] = {}
    for path in multiproc_dir.glob("gauge_livesum_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        for metric in MultiProcessCollector.merge([str(path)], accumulate=False):
            if metric.name == "beacon_connections":
                counts[pid] = sum(s.value for s in metric.samples if s.labels.get("tenant") == tenant)
    return counts


@dataclass
class RawStream:
    """One open ``/v1/stream`` response: events can be read, and closing never raises."""

    client: httpx.Client
    response: httpx.Response
    events: Iterator[ServerSentEvent]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.response.close()
        with contextlib.suppress(Exception):
            self.client.close()


def open_stream(base_url: str, token: str, *, timeout: float = 15) -> RawStream:
    client = httpx.Client(base_url=base_url, timeout=httpx.Timeout(timeout))
    response = client.send(
        client.build_request("GET", "/v1/stream", headers={"Authorization": f"Bearer {token}"}), stream=True
    )
    assert response.status_code == 200, response.read()
    return RawStream(client, response, EventSource(response).iter_sse())


def next_notification(events: Iterator[ServerSentEvent]) -> ServerSentEvent:
    for event in events:
        if event.id and not event.event.startswith("beacon."):
            return event
    raise AssertionError("the stream ended before a notification arrived")


# --- Databases ----------------------------------------------------------------------------------------


@dataclass
class OwnDatabase:
    """A migrated database used by one test's server only: outages made here touch no other test."""

    name: str
    url: str

    def manage(self, *args: str) -> str:
        """Run ``manage.py`` against this database; returns its standard output."""
        result = manage_process(*args, DATABASE_URL=self.url)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def execute(self, sql: str) -> int:
        """Run ``sql`` (``{db}`` is this database's name) from the administrative database.

        Returns the first column of the first row, or 0 for statements that return none.
        """
        with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
            cursor = conn.execute(sql.replace("{db}", self.name))
            row = cursor.fetchone() if cursor.description else None
            return int(row[0]) if row else 0

    def refuse_connections(self) -> None:
        self.execute('ALTER DATABASE "{db}" ALLOW_CONNECTIONS false')

    def allow_connections(self) -> None:
        self.execute('ALTER DATABASE "{db}" ALLOW_CONNECTIONS true')

    def terminate(self, where: str = "true") -> int:
        """End this database's backends matching ``where`` (SQL over pg_stat_activity); returns how many."""
        return self.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            f"WHERE datname = '{{db}}' AND pid <> pg_backend_pid() AND ({where})"
        )


# --- Sentry -------------------------------------------------------------------------------------------


class SentryInbox:
    """A tiny local HTTP server that records what a Sentry SDK posts to it (decompressed envelopes)."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                inbox.bodies.append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def dsn(self) -> str:
        return f"http://public@127.0.0.1:{self.server.server_address[1]}/1"

    def __enter__(self) -> SentryInbox:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def events(self) -> list[dict[str, Any]]:
        found = []
        for body in list(self.bodies):
            event = Envelope.deserialize(body).get_event()
            if event is not None:
                found.append(dict(event))
        return found


# --- PromQL -------------------------------------------------------------------------------------------


def exported_metric_names() -> set[str]:
    """Every sample name Beacon can export, from the metric objects in ``service.observability.metrics``."""
    from service.observability import metrics

    names: set[str] = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            for family in value.describe():
                base = family.name
                names.update({base, f"{base}_total", f"{base}_bucket", f"{base}_sum", f"{base}_count"})
    return names


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_CLAUSES = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![A-Za-z0-9_:.])[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = frozenset({
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
    "inf", "nan", "start", "end",
})  # fmt: skip
_GRAFANA_VARIABLES = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h"}


def grafana_to_promql(expr: str) -> str:
    """Substitute Grafana's variables: intervals become durations, template variables match anything."""

    def value(match: re.Match[str]) -> str:
        return _GRAFANA_VARIABLES.get(match.group(1) or match.group(2), ".*")

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, expr)


def promql_metric_names(expr: str) -> set[str]:
    """Metric names selected by a (valid) PromQL expression.

    Strings, label matchers, ranges and grouping clauses are removed; what is left is function names
    (followed by ``(``), keywords and metric names.
    """
    text = _STRINGS.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _CLAUSES.sub(" ", text)
    names: set[str] = set()
    for match in _IDENT.finditer(text):
        word = match.group(0)
        if word.lower() in _KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue
        names.add(word)
    return names


# --- Prometheus ---------------------------------------------------------------------------------------


@dataclass
class Prometheus:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=5)
        response.raise_for_status()
        body = response.json()
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@contextlib.contextmanager
def run_prometheus(tmp: Path, targets: list[str], rule_files: tuple[Path, ...] = ()) -> Iterator[Prometheus]:
    """A real Prometheus scraping ``targets`` every second, its data in ``tmp``; stopped afterwards."""
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    port = free_port()
    rules = "".join(f"  - {path}\n" for path in rule_files)
    config = tmp / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        + (f"rule_files:\n{rules}" if rules else "")
        + "scrape_configs:\n  - job_name: beacon\n    static_configs:\n"
        + f"      - targets: [{', '.join(repr(t) for t in targets)}]\n"
    )
    log_path = tmp / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--web.enable-lifecycle",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    prometheus = Prometheus(process, f"http://127.0.0.1:{port}", log_path)

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"prometheus exited: {prometheus.log()}")
        try:
            return httpx.get(f"{prometheus.url}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, timeout=30, interval=0.1, message="prometheus to be ready")
        yield prometheus
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for(predicate: Any, timeout: float = 20.0, message: str = "condition") -> Any:
    """``wait_until`` with a slower poll, for conditions that need a scrape or a reconnect."""
    return wait_until(predicate, timeout=timeout, interval=0.1, message=message)
