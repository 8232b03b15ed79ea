"""``make run``: Beacon for a person at a terminal.

Embedded PostgreSQL (unless ``DATABASE_URL`` is set), migrations, static files, the demo tenant and key, then
gunicorn with uvicorn workers on ``PORT`` (default 8000). Each step says what it does. A busy port ends in
one line naming the variable to change. Each run has its own Prometheus directory. ``Ctrl-C`` drains streams
for ``DRAIN_SECONDS`` (0.5 s here) and stops everything within a few seconds.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from service.numbers import ascii_int

ROOT = Path(__file__).resolve().parent.parent

DEV_DEFAULTS = {
    "DEMO": "1",
    "DEBUG": "0",
    "DRAIN_SECONDS": "0.5",  # a short drain: Ctrl-C should not wait 20 s for open streams
    "LOG_FORMAT": "text",
}


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


def port_problem(host: str, port: int, variable: str) -> str | None:
    """A one-line hint when ``host:port`` cannot be bound, else ``None``."""
    if port == 0:
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            return f"port {port} is unavailable ({exc.strerror}): set {variable} to a free port, e.g. {variable}={port + 1} make run"
    return None


def env_port(env: dict[str, str], name: str, default: int) -> int | None:
    """``env[name]`` as a port in ASCII digits (``service.numbers``), or ``None`` after printing why not."""
    raw = (env.get(name) or "").strip(" \t")
    if not raw:
        return default
    value = ascii_int(raw, maximum=65535)
    if value is None:
        print(f"{name} must be a port number from 0 to 65535 in ASCII digits, got {raw!r}", file=sys.stderr)
    return value


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class StepFailed(Exception):
    """A preparation step (a management command) failed; the message names it and why."""


def _one_line(exc: BaseException) -> str:
    """The exception's message on one line (psycopg's connection errors span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def prepare(env: dict[str, str], port: int, key_file: Path) -> str:
    """Migrations, static files and the demo tenant and key, in this process: one Django start-up instead of
    four ``manage.py`` processes (about a second of CPU each). Returns the demo API key."""
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "service.settings")
    from service.observability import logs

    logs.STREAM = "ext://sys.stderr"  # as manage.py: stdout is for what a person reads
    import django
    from django.core.management import call_command
    from django.db import connections

    try:
        django.setup()
    except Exception as exc:  # a setting refused (service.env.ConfigError): DATABASE_URL=garbage
        raise StepFailed(f"settings: {_one_line(exc)}") from exc

    def run(*command: str, stdout: io.StringIO | None = None) -> None:
        try:
            call_command(*command, stdout=stdout)
        except Exception as exc:  # a command's own error, or the database's: one line, not a traceback
            raise StepFailed(f"{command[0]}: {_one_line(exc)}") from exc

    key = io.StringIO()
    try:
        step("migrating the database")
        run("migrate_schemas", "--shared", "-v", "0")
        run("migrate_schemas", "-v", "0")
        step("collecting static files (the admin's styles)")
        run("collectstatic", "--noinput", "-v", "0")
        step("creating the demo tenant and API key")
        run("ensure_demo", "--port", str(port), "--key-file", str(key_file), stdout=key)
    finally:
        connections.close_all()  # gunicorn's workers open their own
    return key.getvalue().strip().splitlines()[-1]


def main() -> int:
    # Ctrl-C, and a TERM or HUP from a supervisor or a closed terminal, all take the same graceful way out:
    # gunicorn runs in its own session (below) and would otherwise outlive this process. SIGINT is set
    # explicitly because a shell that starts `make run` in the background hands it down ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    env = dict(os.environ)
    for name, value in DEV_DEFAULTS.items():
        env.setdefault(name, value)
    port = env_port(env, "PORT", 8000)
    metrics_port = env_port(env, "METRICS_PORT", 9464)
    if port is None or metrics_port is None:
        return 2
    env["PORT"], env["METRICS_PORT"] = str(port), str(metrics_port)
    for problem in (
        port_problem("0.0.0.0", port, "PORT"),
        port_problem(env.get("METRICS_BIND") or "0.0.0.0", metrics_port, "METRICS_PORT"),
    ):
        if problem:
            print(problem, file=sys.stderr)
            return 2
    from service import embedded_db

    server = None
    own_metrics_dir = None
    if not env.get("PROMETHEUS_MULTIPROC_DIR"):
        own_metrics_dir = tempfile.mkdtemp(prefix="beacon-prometheus-")
        env["PROMETHEUS_MULTIPROC_DIR"] = own_metrics_dir
    try:
        if not env.get("DATABASE_URL"):
            data_dir = embedded_db.default_data_dir(ROOT)
            step(f"starting the embedded PostgreSQL 16 in {data_dir}")
            server = embedded_db.start(data_dir, cleanup_mode="stop")
            env["DATABASE_URL"] = embedded_db.url(server)
        key_file = embedded_db.default_data_dir(ROOT).parent / "demo_api_key"  # beside the embedded data
        key = prepare(env, port, key_file)
        python = sys.executable
        print(
            f"""
Beacon is starting on http://localhost:{port}/  (demo page; admin at /admin/ after
`.venv/bin/python manage.py createsuperuser`; API docs at /v1/docs; metrics on :{metrics_port})
Demo API key: {key}
Publish:
  curl -H "Authorization: Bearer {key}" -H 'Content-Type: application/json' \\
       -d '{{"recipient":"demo-user","data":{{"text":"hi"}}}}' localhost:{port}/v1/notifications
Ctrl-C stops it.
""",
            flush=True,
        )
        # Its own session: the terminal's Ctrl-C reaches only this process, which then asks gunicorn for a
        # graceful stop (SIGTERM: the streams closed over DRAIN_SECONDS, then exit) rather than the quick one.
        gunicorn = subprocess.Popen(
            [python, "-m", "gunicorn", "-c", str(ROOT / "deploy" / "gunicorn.conf.py")],
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
        try:
            return gunicorn.wait()
        except KeyboardInterrupt:
            print("\nstopping (draining open streams)...", flush=True)
            gunicorn.send_signal(signal.SIGTERM)
            try:
                return gunicorn.wait(timeout=15)
            except (KeyboardInterrupt, subprocess.TimeoutExpired):
                gunicorn.kill()
                return gunicorn.wait()
    except StepFailed as exc:
        print(f"make run: step failed ({exc})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        if server is not None:
            server.cleanup()
        if own_metrics_dir is not None:
            shutil.rmtree(own_metrics_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
