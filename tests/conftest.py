"""Fixtures: a fresh test database on a real PostgreSQL, tenants and keys, a real gunicorn server.

Tests commit for real (servers in other processes must see the rows), so each test isolates itself with
unique recipient ids or its own tenant instead of a rolled-back transaction.
"""

from __future__ import annotations

import os
import ssl
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connections

from tests.support import TEMPLATE_VARIABLE, Api, Server, create_database

TEST_SERVER_ENV = {
    "HEARTBEAT_SECONDS": "1",
    "REPLAY_LIMIT": "50",
    "DRAIN_SECONDS": "2",
    "API_KEY_CACHE_SECONDS": "1",
    "TENANT_CACHE_SECONDS": "0.5",
    "STREAM_SEND_TIMEOUT_SECONDS": "2",
    "DEMO": "1",
    # A few servers run at once in each test process, and PostgreSQL's 100 connections are shared by all of
    # them: each worker holds at most 1 + 2 + 2 + 2 (docs/deploy.md, Sizing).
    "DB_THREADS": "2",
    "STREAM_DB_POOL_SIZE": "2",
    "PUBLISH_DB_POOL_SIZE": "2",
}


def _share_the_default_tls_context() -> None:
    """Every ``httpx.Client`` (so every ``httpx.get``) builds a TLS context and loads the CA bundle into it:
    about 30 ms of CPU, even for ``http://127.0.0.1``. Tests make thousands (``wait_until(lambda: httpx.get(
    ...))`` polls every 20 ms: the test process took a whole core while a gunicorn it waited for booted on the
    other). The default context (verify on, no client certificate) is built once and shared; a context is
    safe to share, and anything else (``verify=False``, a context of its own) is built as before."""
    from httpx._transports import default

    build = default.create_ssl_context
    shared: list[ssl.SSLContext] = []

    def create_ssl_context(verify: Any = True, cert: Any = None, trust_env: bool = True) -> ssl.SSLContext:
        if verify is not True or cert is not None or not trust_env:
            return build(verify=verify, cert=cert, trust_env=trust_env)
        if not shared:
            shared.append(build(verify=verify, cert=cert, trust_env=trust_env))
        return shared[0]

    default.create_ssl_context = create_ssl_context  # type: ignore[assignment]


_share_the_default_tls_context()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "allow_server_errors: the test breaks things on purpose; its servers may log tracebacks"
    )
    if not os.environ.get("PYTEST_XDIST_WORKER") and getattr(config.option, "numprocesses", None):
        os.environ[TEMPLATE_VARIABLE] = f"beacon_test_template_{uuid.uuid4().hex[:10]}"  # workers inherit it


def pytest_unconfigure(config: pytest.Config) -> None:
    template = os.environ.get(TEMPLATE_VARIABLE)
    if template and not os.environ.get("PYTEST_XDIST_WORKER"):
        with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')


#: The slowest files first (``--durations`` of a whole run, slowest first): under pytest-xdist's
#: ``--dist loadfile`` each worker takes the next file when it is done, so the long ones must not come last
#: (alphabetically they do) or one worker runs them alone at the end. Order only; files not listed follow.
SLOW_FILES_FIRST = (
    "test_redis_broker.py",
    "test_streaming.py",
    "test_operations.py",
    "test_beacon_client.py",
    "test_sentry.py",
    "test_lifecycle.py",
    "test_devserver.py",
    "test_ops_browser.py",
    "test_health.py",
    "test_metrics.py",
    "test_outage.py",
    "test_commands_and_openapi.py",
    "test_hardening.py",
    "test_schemathesis.py",
    "test_embed_docs.py",
    "test_cors.py",
    "test_admin.py",
    "test_resume_window.py",
    "test_prometheus.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``make test``), schedule the slowest files first; a plain run keeps file order."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    rank = {name: i for i, name in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order within a file kept


def _url_for(database: str) -> str:
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path="/" + database))


@pytest.fixture(scope="session")
def django_db_setup(django_db_blocker: Any) -> Iterator[str]:
    """A database of our own, migrated with django-tenants' shared migrations; dropped at the end."""
    name = f"beacon_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin_url = os.environ["DATABASE_URL"]
    template = os.environ.get(TEMPLATE_VARIABLE)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        if template:  # one worker at a time: the first migrates and makes the template, the rest copy it
            admin.execute("SELECT pg_advisory_lock(hashtext(%s))", [template])
        copied = create_database(admin, name)
        with django_db_blocker.unblock():
            for alias in connections:
                connections[alias].close()
                connections[alias].settings_dict["NAME"] = name
            settings.DATABASES["default"]["NAME"] = name
            if not copied:
                call_command("migrate_schemas", shared=True, verbosity=0, interactive=False)
                connections.close_all()  # a template may have no session open
                if template:
                    admin.execute(f'CREATE DATABASE "{template}" TEMPLATE "{name}"')
    os.environ["BEACON_TEST_DATABASE_URL"] = _url_for(name)
    yield name
    with django_db_blocker.unblock():
        connections.close_all()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(autouse=True)
def _database(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test outside tests/deploy may use the database, committing for real."""
    if "deploy" in request.node.path.parts:
        yield
        return
    request.getfixturevalue("django_db_setup")
    blocker = request.getfixturevalue("django_db_blocker")
    with blocker.unblock():
        yield


@pytest.fixture(autouse=True)
def _no_server_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail any test during which a server logged a ``500`` or a traceback (``tests.support.server_errors``).

    Tests that break things on purpose (killed databases, killed listeners) opt out with
    ``@pytest.mark.allow_server_errors``.
    """
    offsets = {id(srv): srv.log_size() for srv in Server.started}
    yield
    if request.node.get_closest_marker("allow_server_errors"):
        return
    errors = [line for srv in Server.started for line in srv.errors_since(offsets.get(id(srv), 0))]
    if errors:
        pytest.fail("the server logged a 500 or a traceback during this test:\n" + "\n".join(errors[:5]))


@pytest.fixture(scope="session")
def make_tenant(django_db_setup: str, django_db_blocker: Any) -> Callable[..., tuple[Any, str]]:
    """Create a tenant (schema migrated) and an API key; returns ``(tenant, key)``."""
    from tenants.models import ApiKey, Domain, Tenant

    def make(slug: str | None = None, *, domains: tuple[str, ...] = (), **fields: Any) -> tuple[Any, str]:
        with django_db_blocker.unblock():
            tenant = Tenant.objects.create(slug=slug or f"t-{uuid.uuid4().hex[:10]}", **fields)
            for host in domains:
                Domain.objects.create(tenant=tenant, domain=host)
            _, key = ApiKey.issue(tenant, name="test")
        return tenant, key

    return make


@pytest.fixture(scope="session")
def tenant_pair(make_tenant: Callable[..., tuple[Any, str]]) -> tuple[tuple[Any, str], tuple[Any, str]]:
    """Two tenants, ``acme`` and ``globex``, each with a domain and a key: isolation is tested on them."""
    return (
        make_tenant("acme", domains=("acme.localhost",), allowed_origins=["https://app.acme.test"]),
        make_tenant("globex", domains=("globex.localhost",)),
    )


def _test_server(**env: str) -> Server:
    """A gunicorn of this checkout on the test database, with ``env`` over the tests' settings (not started)."""
    return Server(env={**TEST_SERVER_ENV, "DATABASE_URL": os.environ["BEACON_TEST_DATABASE_URL"], **env})


def _starter(workdir: Callable[[], Path]) -> Iterator[Callable[..., Server]]:
    """``start(workers=2, **env)`` for ``start_server`` and ``start_module_server``; every server it started
    is stopped when the generator ends."""
    started: list[Server] = []

    def start(workers: int = 2, **env: str) -> Server:
        started.append(_test_server(**env).start(workdir(), workers=workers))
        return started[-1]

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture(scope="session")
def server(django_db_setup: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One shared gunicorn (2 uvicorn workers) for the session, on the test database."""
    srv = _test_server().start(tmp_path_factory.mktemp("server"))
    yield srv
    srv.stop()


@pytest.fixture
def start_server(django_db_setup: str, tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start a dedicated server with extra settings (stopped after the test)."""
    yield from _starter(lambda: tmp_path)


@pytest.fixture(scope="module")
def start_module_server(
    django_db_setup: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Server]]:
    """``start_server`` for a module-scoped fixture: servers that several tests of one file share (each
    gunicorn start costs seconds of CPU), stopped when the module is done."""
    yield from _starter(lambda: tmp_path_factory.mktemp("module-server"))


@pytest.fixture(scope="session")
def acme(server: Server, tenant_pair: Any) -> Api:
    return Api(server.url, tenant_pair[0][1])


@pytest.fixture(scope="session")
def globex(server: Server, tenant_pair: Any) -> Api:
    return Api(server.url, tenant_pair[1][1])
