"""Every route answers ``503 unavailable`` with ``Retry-After`` while PostgreSQL is down or restarting.

The test runs its own PostgreSQL (pgserver's binaries, a throw-away data directory) so it can stop and
start it without disturbing the session's database.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.support import Api, CheckedThread, unique, wait_until

ORIGIN = "https://app.example"
SETUP = """
import django, os
os.environ["DJANGO_SETTINGS_MODULE"] = "service.settings"
django.setup()
from django.core.management import call_command
call_command("migrate_schemas", shared=True, verbosity=0, interactive=False)
from tenants.models import ApiKey, Tenant
tenant = Tenant.objects.create(slug="outage", allowed_origins=["https://app.example"])
print(ApiKey.issue(tenant, name="test")[1])
"""


class PrivatePostgres:
    """A PostgreSQL of this test's own that it may stop and start (``pg_ctl`` from pgserver's wheel)."""

    def __init__(self) -> None:
        from pgserver._commands import pg_ctl

        from service import embedded_db

        self._pg_ctl = pg_ctl
        self.dir = Path(tempfile.mkdtemp(prefix="beacon-outage-"))
        self.server: Any = embedded_db.start(self.dir / "data", cleanup_mode="delete")
        self.url = embedded_db.url(self.server)
        self.socket_dir = parse_qs(urlsplit(self.url).query)["host"][0]

    def stop(self) -> None:
        self._pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user)

    def start(self) -> None:
        args = ["-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.server.log), "start"]
        self._pg_ctl(args, pgdata=self.server.pgdata, user=self.server.system_user, timeout=30)

    def restart(self) -> None:
        args = ["-w", "-m", "fast", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.server.log)]
        self._pg_ctl([*args, "restart"], pgdata=self.server.pgdata, user=self.server.system_user, timeout=30)

    def close(self) -> None:
        self.server.cleanup()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres()
    try:
        yield pg
    finally:
        with contextlib.suppress(Exception):
            pg.start()  # cleanup stops a running server; a stopped one would be left behind
        pg.close()


def _unavailable(response: httpx.Response) -> bool:
    if response.status_code != 503:
        return False
    assert response.json()["error"]["code"] in {"unavailable", "not_ready"}, response.text
    assert int(response.headers.get("retry-after", "0")) >= 1 or response.url.path == "/readyz"
    return True


@pytest.mark.allow_server_errors  # the listener and the stream log the lost connection with a traceback
def test_every_route_is_503_with_retry_after_while_postgres_is_down(private_postgres, start_server):
    pg = private_postgres
    key = subprocess.run(
        [sys.executable, "-c", SETUP],
        env={**os.environ, "DATABASE_URL": pg.url},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[-1]
    srv = start_server(workers=1, DATABASE_URL=pg.url)
    api = Api(srv.url, key)
    user = unique()
    token = api.token(user)
    bearer = {"Authorization": f"Bearer {token}"}
    assert api.publish({"recipient": user}).status_code == 201
    # The worker learns the allowed origins while the database is up (the union it keeps when a reload fails).
    primed = api.client.get("/v1/inbox", headers={**bearer, "Origin": ORIGIN})
    assert primed.headers.get("access-control-allow-origin") == ORIGIN, primed.text

    pg.stop()
    routes = [
        lambda: api.publish({"recipient": user}),
        lambda: api.publish({"notifications": [{"recipient": user}]}, batch=True),
        lambda: api.client.get("/v1/notifications", params={"recipient": user}, headers=api.headers()),
        lambda: api.client.post("/v1/tokens", json={"recipient": user}, headers=api.headers()),
        lambda: api.client.get("/v1/inbox", headers=bearer),
        lambda: api.client.get("/v1/inbox/unread-count", headers=bearer),
        lambda: api.client.post("/v1/inbox/read-all", headers=bearer),
        lambda: api.client.post("/v1/inbox/1/read", headers=bearer),
        lambda: api.client.get("/v1/stream", headers=bearer),
        lambda: api.client.get("/v1/inbox", headers={**bearer, "Origin": ORIGIN}),  # CORS lookup
        lambda: api.client.get("/v1/stream", headers={**bearer, "Origin": ORIGIN}),
        lambda: api.client.get("/readyz"),
        lambda: api.client.get("/demo/token"),  # Django's pages too (DEMO=1): they were a 500
        lambda: api.client.get("/"),
    ]
    for route in routes:
        # Credentials stay cached for a second or so (API_KEY_CACHE_SECONDS / TENANT_CACHE_SECONDS): ask
        # until the lookup itself needs the database. Whatever the answer, it is never a 500.
        def down(route: Any = route) -> bool:
            response = route()
            assert response.status_code in {200, 201, 404, 503}, (response.status_code, response.text)
            return _unavailable(response)

        wait_until(down, timeout=10, interval=0.2, message="a 503 while PostgreSQL is down")
    # A page on an allowed origin can read the 503 (issue 9: refusals carry the CORS headers).
    for path in ("/v1/inbox", "/v1/stream"):
        refused = wait_until(
            lambda path=path: (
                (r := api.client.get(path, headers={**bearer, "Origin": ORIGIN})).status_code == 503 and r
            ),
            timeout=10,
            interval=0.2,
            message=f"a 503 on {path}",
        )
        assert refused.headers.get("access-control-allow-origin") == ORIGIN, (path, refused.headers)
    # The stream's 503s are logged as the API's are: a warning per outage, not an ERROR with a traceback
    # ("stream replay failed") per connect.
    logged = [
        json.loads(line)
        for line in srv.log_path.read_text(errors="replace").splitlines()
        if line.startswith("{")
    ]
    stream = [
        entry
        for entry in logged
        if "/v1/stream" in entry.get("message", "") and "database" in entry["message"]
    ]
    assert stream and {entry["level"] for entry in stream} == {"WARNING"}, stream[:3]
    assert not [
        entry
        for entry in logged
        if "in GET /v1/stream" in entry.get("message", "") and entry["level"] == "ERROR"
    ]

    pg.start()
    wait_until(lambda: api.publish({"recipient": user}).status_code == 201, timeout=30, message="recovery")

    # Publishes during a restart: each is stored (201) or refused for retry (503), never a 500.
    statuses: list[int] = []
    answers: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def publish_loop() -> None:
        with httpx.Client(base_url=srv.url, timeout=30) as client:
            while not stop.is_set():
                response = client.post("/v1/notifications", json={"recipient": user}, headers=api.headers())
                answers.append((response.status_code, response.headers.get("retry-after")))
                statuses.append(response.status_code)

    publisher = CheckedThread(publish_loop)
    publisher.start()
    try:
        pg.restart()
        wait_until(
            lambda: statuses[-3:] == [201, 201, 201], timeout=30, message="publishes after the restart"
        )
    finally:
        stop.set()
        publisher.join(30)  # re-raises what failed in the thread
    assert set(statuses) <= {201, 503}, statuses
    assert all(retry_after for status, retry_after in answers if status == 503), answers
    assert not [line for line in srv.errors_since(0) if '"status": 500' in line], "a 500 was answered"
