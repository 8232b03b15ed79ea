"""Operator day one: tenant commands, lifecycle (deactivate, rotate, delete), retention, start-up safety."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone
from django_tenants.utils import schema_context

from service.notifications.models import IdempotencyRecord, Notification
from tenants import keys
from tenants.models import Tenant
from tests.support import (
    ROOT,
    Api,
    ends_within,
    manage,
    manage_process,
    sse_stream,
    take,
    unique,
    wait_until,
)
from tests.test_admin import staff_client


def schema_exists(schema: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", [schema])
        return cursor.fetchone() is not None


def slug() -> str:
    return f"ops-{uuid.uuid4().hex[:8]}"


# --- commands ---------------------------------------------------------------------------------------------


def test_create_tenant_takes_origins_limits_and_retention():
    name = slug()
    call_command(
        "create_tenant",
        name,
        allowed_origins=["https://app.example.test", "http://localhost:3000"],
        max_connections=50,
        publish_rate=7,
        default_ttl=3600,
        max_retention=86400,
        stdout=io.StringIO(),
    )
    tenant = Tenant.objects.get(slug=name)
    assert tenant.allowed_origins == ["https://app.example.test", "http://localhost:3000"]
    assert (tenant.max_connections, tenant.publish_rate_per_second) == (50, 7)
    assert (tenant.default_ttl_seconds, tenant.max_retention_seconds) == (3600, 86400)


@pytest.mark.parametrize(
    "origin", ["https://app.example.test/", "https://*.example.test", "HTTPS://APP.TEST", "app.test"]
)
def test_create_tenant_refuses_a_bad_origin_and_creates_nothing(origin):
    name = slug()
    with pytest.raises(CommandError, match="invalid --allowed-origin"):
        call_command("create_tenant", name, allowed_origins=[origin], stdout=io.StringIO())
    assert not Tenant.objects.filter(slug=name).exists()
    assert not schema_exists("t_" + name.replace("-", "_"))


@pytest.mark.parametrize("domain", ["x" * 300, "a b.test", "http://a.test/", "a.test:99999", "bücher.test"])
def test_create_tenant_refuses_a_bad_domain_and_creates_nothing(domain):
    """A domain no ``Host`` can match is refused in one line; one longer than the column was a traceback."""
    name = slug()
    with pytest.raises(CommandError, match="invalid --domain"):
        call_command("create_tenant", name, domains=[domain], stdout=io.StringIO())
    assert not Tenant.objects.filter(slug=name).exists()


def test_create_tenant_stores_a_domain_as_hosts_are_matched():
    name = slug()
    call_command("create_tenant", name, domains=[f"{name}.Example.TEST.:8443"], stdout=io.StringIO())
    tenant = Tenant.objects.get(slug=name)
    assert list(tenant.domains.values_list("domain", flat=True)) == [f"{name}.example.test"]


def test_create_api_key_refuses_a_name_too_long_without_a_traceback(make_tenant):
    tenant, _ = make_tenant()
    result = manage("create_api_key", tenant.slug, "--name", "x" * 201)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "at most 200" in result.stderr
    assert not tenant.api_keys.filter(name="x" * 201).exists()


def test_update_tenant_changes_only_what_is_given_and_nothing_on_error(make_tenant):
    tenant, _ = make_tenant(slug(), allowed_origins=["https://a.example.test"], name="Before")
    out = io.StringIO()
    call_command(
        "update_tenant",
        tenant.slug,
        allowed_origins=["https://b.example.test", "https://c.example.test"],
        max_payload_bytes=1024,
        stdout=out,
    )
    tenant.refresh_from_db()
    assert tenant.allowed_origins == ["https://b.example.test", "https://c.example.test"]  # replaced
    assert tenant.max_payload_bytes == 1024 and tenant.name == "Before"
    assert "allowed_origins" in out.getvalue()

    for bad in (
        {"allowed_origins": ["https://ok.example.test", "https://bad.example.test/path"], "name": "After"},
        {"default_ttl": 7200, "max_retention": 3600, "name": "After"},  # default above the maximum
        {"default_ttl": 30, "name": "After"},  # below the contract's 60 s
    ):
        with pytest.raises(CommandError, match="nothing changed"):
            call_command("update_tenant", tenant.slug, stdout=io.StringIO(), **bad)
        tenant.refresh_from_db()
        assert tenant.name == "Before"
        assert tenant.allowed_origins == ["https://b.example.test", "https://c.example.test"]

    call_command("update_tenant", tenant.slug, clear_allowed_origins=True, stdout=io.StringIO())
    tenant.refresh_from_db()
    assert tenant.allowed_origins == []
    call_command("update_tenant", tenant.slug, default_ttl=120, stdout=io.StringIO())
    call_command("update_tenant", tenant.slug, default_ttl="default", stdout=io.StringIO())
    tenant.refresh_from_db()
    assert tenant.default_ttl_seconds is None
    with pytest.raises(CommandError, match="no tenant"):
        call_command("update_tenant", "no-such-tenant", name="x", stdout=io.StringIO())


def test_update_tenant_command_line_flags(make_tenant):
    tenant, _ = make_tenant(slug())
    done = manage(
        "update_tenant",
        tenant.slug,
        "--inactive",
        "--name",
        "Renamed",
        "--allowed-origin",
        "https://x.example.test",
        "--allowed-origin",
        "https://y.example.test:8443",
        "--max-connections",
        "3",
        "--max-connections-per-recipient",
        "2",
        "--publish-rate",
        "9",
        "--max-retention",
        "600",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(f"updated tenant {tenant.slug}")
    tenant.refresh_from_db()
    assert not tenant.is_active and tenant.name == "Renamed"
    assert tenant.allowed_origins == ["https://x.example.test", "https://y.example.test:8443"]
    assert (tenant.max_connections, tenant.max_connections_per_recipient) == (3, 2)
    assert (tenant.publish_rate_per_second, tenant.max_retention_seconds) == (9, 600)
    again = manage("update_tenant", tenant.slug, "--active", "--max-payload-bytes", "2048")
    assert again.returncode == 0, again.stderr
    tenant.refresh_from_db()
    assert tenant.is_active and tenant.max_payload_bytes == 2048
    assert tenant.allowed_origins == ["https://x.example.test", "https://y.example.test:8443"]  # kept
    bad = manage("update_tenant", tenant.slug, "--allowed-origin", "https://x.example.test/")
    assert bad.returncode != 0 and "no path" in bad.stderr and bad.stdout == ""
    assert manage("update_tenant", tenant.slug, "--active", "--inactive").returncode != 0
    assert manage("update_tenant", tenant.slug, "--publish-rate", "0").returncode != 0


def test_command_stdout_is_only_the_result(tenant_pair):
    """manage.py itself (a subprocess): with every log line on, stdout is the command's result alone."""
    made = manage_process("create_api_key", tenant_pair[0][0].slug, LOG_LEVEL="DEBUG")
    assert made.returncode == 0, made.stderr
    lines = made.stdout.strip().splitlines()
    assert len(lines) == 2 and keys.parse(lines[-1]) is not None


def test_create_api_key_tail_is_the_key_with_the_embedded_database(tmp_path):
    """DATABASE_URL unset: manage.py starts the embedded PostgreSQL; stdout still ends with the key alone."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["EMBEDDED_PG_DIR"] = str(tmp_path / "pg")
    env["LOG_LEVEL"] = "DEBUG"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )

    assert run("migrate_schemas", "--shared", "-v", "0").returncode == 0
    assert run("create_tenant", "embedded").returncode == 0
    shell = subprocess.run(
        f"{sys.executable} manage.py create_api_key embedded | tail -1",
        shell=True,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert keys.parse(shell.stdout.strip()) is not None, shell.stdout
    assert "Warning" not in shell.stderr, shell.stderr
    # Each command stopped the server it started: nothing is left running.
    assert not (tmp_path / "pg" / "postmaster.pid").exists()


def test_readme_operator_commands_work_as_written():
    """The README's command block, run by a shell as written (its ``acme`` renamed): the tenant is made and
    ``create_api_key ... | tail -1`` is a key."""
    readme = Path(ROOT, "README.md").read_text()
    using = readme[readme.index("## Using it") :]
    block = using[using.index("```sh\n") + 6 : using.index("```", using.index("```sh\n") + 6)]
    assert ".venv/bin/python manage.py create_tenant acme" in block
    name = slug()
    script = re.sub(r"\bacme\b", name, block)
    env = {**os.environ, "DATABASE_URL": os.environ["BEACON_TEST_DATABASE_URL"]}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    tenant = Tenant.objects.get(slug=name)
    assert tenant.allowed_origins == [f"https://app.{name}.com", "http://localhost:3000"]
    parsed = keys.parse(done.stdout.strip().splitlines()[-1])
    assert parsed is not None and parsed.public_id in set(tenant.api_keys.values_list("public_id", flat=True))


def test_plain_python_manage_py_reruns_itself_with_the_venv(make_tenant):
    """``python manage.py ...`` with an interpreter that lacks Django (outside the venv) still works."""
    outside = getattr(sys, "_base_executable", "") or shutil.which("python3.11") or ""
    probe = subprocess.run([outside, "-c", "import django"], capture_output=True) if outside else None
    if probe is None or probe.returncode == 0:
        pytest.skip("no Python without Django on this machine")
    tenant, _ = make_tenant(slug())
    env = {**os.environ, "DATABASE_URL": os.environ["BEACON_TEST_DATABASE_URL"]}
    env.pop("VIRTUAL_ENV", None)
    done = subprocess.run(
        [outside, "manage.py", "list_tenants"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert any(line.startswith(tenant.slug + "\t") for line in done.stdout.splitlines()), done.stdout


# --- start-up safety ---------------------------------------------------------------------------------------


def test_require_database_url_refuses_to_start_without_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(REQUIRE_DATABASE_URL="1", EMBEDDED_PG_DIR=str(tmp_path / "never"))
    command = subprocess.run(
        [sys.executable, "manage.py", "list_tenants"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert command.returncode != 0
    assert command.stderr.strip().splitlines() == [
        "DATABASE_URL is not set and REQUIRE_DATABASE_URL=1: "
        "set DATABASE_URL=postgresql://user:password@host:5432/dbname"
    ]
    server = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "--bind", "127.0.0.1:0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert server.returncode != 0 and "DATABASE_URL is not set" in server.stderr
    assert "Traceback" not in server.stderr
    assert not (tmp_path / "never").exists()  # no embedded server was started


def test_importing_the_settings_starts_no_database(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["EMBEDDED_PG_DIR"] = str(tmp_path / "never")
    code = "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='service.settings'; django.setup(); print('ok')"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
    assert not (tmp_path / "never").exists()


# --- lifecycle ---------------------------------------------------------------------------------------------


def test_admin_never_deletes_a_tenant_and_hides_the_secret(make_tenant):
    tenant, _ = make_tenant(slug())
    client = staff_client()
    page = client.get(f"/admin/tenants/tenant/{tenant.pk}/change/").content.decode()
    assert tenant.signing_secret not in page
    assert client.post(f"/admin/tenants/tenant/{tenant.pk}/delete/", {"post": "yes"}).status_code == 403
    bulk = client.post(
        "/admin/tenants/tenant/",
        {"action": "delete_selected", "_selected_action": [tenant.pk], "post": "yes"},
    )
    assert bulk.status_code in {200, 302}
    deactivated = client.post(
        "/admin/tenants/tenant/", {"action": "deactivate", "_selected_action": [tenant.pk]}, follow=True
    )
    assert "Deactivated 1 tenant" in deactivated.content.decode()
    tenant.refresh_from_db()
    assert not tenant.is_active and schema_exists(tenant.schema_name)
    # Even a deletion through the ORM (a cascade, a shell) keeps the schema and its data.
    schema = tenant.schema_name
    tenant.delete()
    assert schema_exists(schema)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP SCHEMA {connection.ops.quote_name(schema)} CASCADE")


def test_admin_rotation_shows_the_new_secret_once_and_ends_streams(server, make_tenant):
    tenant, key = make_tenant(slug())
    old = tenant.signing_secret
    client = staff_client()
    token = Api(server.url, key).token(unique())
    with sse_stream(server.url, token, timeout=30) as events:
        next(events)  # the stream is open (the retry block)
        response = client.post(
            "/admin/tenants/tenant/",
            {"action": "rotate_signing_secret", "_selected_action": [tenant.pk]},
            follow=True,
        )
        assert ends_within(events, 5)
    assert httpx.get(server.url + "/v1/stream", params={"token": token}, timeout=10).status_code == 401
    tenant.refresh_from_db()
    assert tenant.signing_secret != old and tenant.signing_secret in response.content.decode()
    assert (
        tenant.signing_secret not in client.get(f"/admin/tenants/tenant/{tenant.pk}/change/").content.decode()
    )


def test_admin_sets_default_ttl_and_max_retention(make_tenant):
    """The admin's change form edits the retention fields, with the model's checks (default <= maximum)."""
    from tests.test_admin_origins import change_form_post

    tenant, _ = make_tenant(slug())
    client = staff_client()
    page = client.get(f"/admin/tenants/tenant/{tenant.pk}/change/").content.decode()
    assert 'name="default_ttl_seconds"' in page and 'name="max_retention_seconds"' in page
    saved = change_form_post(client, tenant, "", default_ttl_seconds="3600", max_retention_seconds="86400")
    assert saved.status_code == 302, saved.content.decode()[:2000]
    tenant.refresh_from_db()
    assert (tenant.default_ttl_seconds, tenant.max_retention_seconds) == (3600, 86400)
    for fields, error_field in (
        ({"default_ttl_seconds": "7200", "max_retention_seconds": "3600"}, "default_ttl_seconds"),
        ({"default_ttl_seconds": "30", "max_retention_seconds": ""}, "default_ttl_seconds"),
        ({"default_ttl_seconds": "", "max_retention_seconds": "7776001"}, "max_retention_seconds"),
    ):
        refused = change_form_post(client, tenant, "", **fields)
        assert refused.status_code == 200 and error_field in refused.context["adminform"].form.errors
        tenant.refresh_from_db()
        assert (tenant.default_ttl_seconds, tenant.max_retention_seconds) == (3600, 86400), fields
    cleared = change_form_post(client, tenant, "", default_ttl_seconds="", max_retention_seconds="")
    assert cleared.status_code == 302
    tenant.refresh_from_db()
    assert (tenant.default_ttl_seconds, tenant.max_retention_seconds) == (None, None)


def test_delete_tenant_needs_both_flags_then_drops_the_schema(make_tenant):
    tenant, _ = make_tenant(slug())
    refused = manage("delete_tenant", tenant.slug, "--yes")
    assert refused.returncode != 0 and "--drop-schema --yes" in refused.stderr
    assert manage("delete_tenant", tenant.slug, "--drop-schema").returncode != 0
    assert schema_exists(tenant.schema_name)
    done = manage("delete_tenant", tenant.slug, "--drop-schema", "--yes")
    assert done.returncode == 0, done.stderr
    assert not Tenant.objects.filter(slug=tenant.slug).exists()
    assert not schema_exists(tenant.schema_name)


def test_rotation_ends_open_streams_and_old_tokens_are_refused(server, make_tenant):
    (tenant, key), (_, other_key) = make_tenant(slug()), make_tenant(slug())
    api, other_api = Api(server.url, key), Api(server.url, other_key)
    user = unique()
    token, other_token = api.token(user), other_api.token(user)
    with (
        sse_stream(server.url, token) as events,
        sse_stream(server.url, other_token, timeout=20) as other_events,
    ):
        api.publish_ok({"recipient": user, "data": 1})
        assert len(take(events, 1)) == 1
        rotated = manage("rotate_signing_secret", tenant.slug)
        assert rotated.returncode == 0, rotated.stderr
        new_secret = rotated.stdout.strip().splitlines()[-1]
        tenant.refresh_from_db()
        assert new_secret == tenant.signing_secret
        assert ends_within(events, 5)
        # The other tenant's stream (same recipient id) is untouched and still delivers.
        other_api.publish_ok({"recipient": user, "data": "still here"})
        (event,) = take(other_events, 1)
        assert json.loads(event.data)["data"] == "still here"
    refused = httpx.get(server.url + "/v1/stream", params={"token": token}, timeout=10)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_token"
    inbox = httpx.get(server.url + "/v1/inbox", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert inbox.status_code == 401
    with sse_stream(server.url, api.token(user)) as events:  # a new token works at once
        api.publish_ok({"recipient": user, "data": 2})
        assert len(take(events, 1)) == 1


def test_rotation_close_is_announced_within_five_seconds(server, make_tenant):
    """Timed from the committed rotation (in-process), not from a command's start-up."""
    from tenants import lifecycle

    tenant, key = make_tenant(slug())
    api = Api(server.url, key)
    user = unique()
    with sse_stream(server.url, api.token(user), timeout=30) as events:
        api.publish_ok({"recipient": user, "data": 1})
        assert len(take(events, 1)) == 1
        lifecycle.rotate_signing_secret(Tenant.objects.get(pk=tenant.pk))
        assert ends_within(events, 5)


@pytest.mark.parametrize("held_in", ["slot", "first_lookup"])
def test_a_stream_checked_before_a_rotation_and_joining_after_it_ends_too(server, make_tenant, held_in):
    """The race docs/tokens.md once listed as a known gap: a connect whose token was checked with the old
    secret, held while the rotation's close announcement ends the tenant's streams, must not stay open under
    the old secret. Held in its slot statement (the tenant's slot lock): it is in the hub, the close ends it.
    Held in the tenant's first lookup on its worker (the table locked): it joins the hub after the close,
    ``Dispatcher.closed_since`` ends it."""
    from tenants import lifecycle

    tenant, key = make_tenant(slug())
    token = Api(server.url, key).token(unique())
    closes = server.log_size()
    database = os.environ["BEACON_TEST_DATABASE_URL"]  # advisory locks are per database
    with psycopg.connect(database) as holder:
        if held_in == "slot":
            holder.execute(
                "SELECT pg_advisory_xact_lock(25196, %s)", [tenant.id]
            )  # beacon_slots' tenant lock
            waiting = (
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = 25196 "
                "AND objid = %s AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
            waiting_args = [tenant.id]
        else:  # Listener.ensure_newest reads the new tenant's bounds before the stream joins the hub
            table = f'"{tenant.schema_name}".beacon_notification'
            holder.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            waiting = (
                "SELECT count(*) FROM pg_locks WHERE locktype = 'relation' AND NOT granted "
                "AND relation = %s::regclass"
            )
            waiting_args = [table]
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=15)
        try:
            sock.sendall(f"GET /v1/stream?token={token} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            with psycopg.connect(database, autocommit=True) as probe:
                wait_until(  # the connect is past its token check, waiting on the lock
                    lambda: probe.execute(waiting, waiting_args).fetchone()[0] == 1,
                    timeout=10,
                    message="the connect to wait on the lock",
                )
            lifecycle.rotate_signing_secret(Tenant.objects.get(pk=tenant.pk))
            heard = rf"closed ([01]) streams of {tenant.schema_name}: secret_rotated"
            wait_until(  # both workers heard the rotation
                lambda: len(re.findall(heard, server.log_text(closes))) == 2,
                timeout=10,
                message="the rotation to reach both workers",
            )
            closed = sum(int(n) for n in re.findall(heard, server.log_text(closes)))
            assert closed == (1 if held_in == "slot" else 0)
            holder.commit()  # the lock is released: the connect goes on
            answer, ended, deadline = b"", False, time.monotonic() + 10
            while not ended and time.monotonic() < deadline:  # heartbeats keep an open stream talking
                chunk = sock.recv(65536)
                answer += chunk
                ended = not chunk
        finally:
            sock.close()
    assert ended, f"the stream is still open under the old secret: {answer[-200:]!r}"
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"0\r\n\r\n"), answer[-200:]


def test_deactivation_ends_streams_and_refuses_keys(server, make_tenant):
    tenant, key = make_tenant(slug())
    api = Api(server.url, key)
    user = unique()
    with sse_stream(server.url, api.token(user), timeout=30) as events:
        call_command("update_tenant", tenant.slug, active=False, stdout=io.StringIO())
        assert ends_within(events, 5)
    refused = wait_until(
        lambda: (r := api.publish({"recipient": user})).status_code == 403 and r,
        timeout=10,
        message="refusal",
    )
    assert refused.json()["error"]["code"] == "tenant_inactive"


# --- retention ---------------------------------------------------------------------------------------------


def test_default_ttl_and_max_retention_shape_new_rows(server, make_tenant):
    tenant, key = make_tenant(slug(), default_ttl_seconds=3600, max_retention_seconds=7200)
    api = Api(server.url, key)
    user = unique()
    api.publish_ok({"recipient": user, "data": "default"})
    api.publish_ok({"recipient": user, "data": "long", "ttl": 86400})
    api.publish_ok({"recipient": user, "data": "short", "ttl": 120})
    with schema_context(tenant.schema_name):
        lives = {
            row.data: round((row.expires_at - row.created_at).total_seconds())
            for row in Notification.objects.filter(recipient=user)
        }
    assert lives == {"default": 3600, "long": 7200, "short": 120}


def test_purge_across_two_tenants_takes_only_what_retention_allows(server, make_tenant):
    (a, key_a), (b, key_b) = make_tenant(slug()), make_tenant(slug())
    user = unique()  # the same recipient id in both tenants
    now = timezone.now()
    for tenant, key in ((a, key_a), (b, key_b)):
        api = Api(server.url, key)
        # Ids follow time: the row made "3 days ago" is the oldest one.
        rows = api.publish_ok({"recipients": [user + "-old", user, user + "-fresh"]})
        api.publish(
            {"recipient": user, "data": 1}, **{"Idempotency-Key": "old-" + tenant.slug}
        ).raise_for_status()
        api.publish(
            {"recipient": user, "data": 2}, **{"Idempotency-Key": "new-" + tenant.slug}
        ).raise_for_status()
        with schema_context(tenant.schema_name):
            Notification.objects.filter(id=rows[1]["id"]).update(expires_at=now - timedelta(seconds=1))
            Notification.objects.filter(id=rows[0]["id"]).update(created_at=now - timedelta(days=3))
            IdempotencyRecord.objects.filter(key="old-" + tenant.slug).update(
                created_at=now - timedelta(hours=24, seconds=5)
            )
            IdempotencyRecord.objects.filter(key="new-" + tenant.slug).update(
                created_at=now - timedelta(hours=23)
            )
    Tenant.objects.filter(pk=b.pk).update(max_retention_seconds=2 * 86400)  # b keeps 2 days at most

    out = io.StringIO()
    call_command("purge_expired", batch_size=1, stdout=out)  # one row per batch: the loop is exercised
    lines = out.getvalue().splitlines()
    assert f"{a.slug}\t1 notifications\t1 idempotency records" in lines
    assert f"{b.slug}\t2 notifications\t1 idempotency records" in lines
    assert re.fullmatch(r"total\t\d+ notifications\t\d+ idempotency records", lines[-1])
    with schema_context(a.schema_name):
        assert sorted(
            Notification.objects.filter(recipient__startswith=user).values_list("recipient", flat=True)
        ) == [
            user,  # the idempotent publish's row
            user,
            user + "-fresh",
            user + "-old",
        ]
        assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["new-" + a.slug]
    with schema_context(b.schema_name):
        assert sorted(
            Notification.objects.filter(recipient__startswith=user).values_list("recipient", flat=True)
        ) == [
            user,
            user,
            user + "-fresh",
        ]
        assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["new-" + b.slug]


def test_purge_deletes_in_bounded_batches_each_committed_alone(server, make_tenant):
    """Every DELETE takes at most --batch-size rows and runs outside a transaction (autocommit): no
    statement holds locks on more than a batch, nothing is held across batches."""
    tenant, key = make_tenant(slug())
    user = unique()
    rows = Api(server.url, key).publish_ok({"recipients": [f"{user}-{n}" for n in range(5)]})
    with schema_context(tenant.schema_name):
        Notification.objects.filter(id__in=[row["id"] for row in rows]).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
    deletes: list[tuple[str, int, bool]] = []

    def record(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if sql.lstrip().upper().startswith("DELETE"):
            deletes.append((sql, context["cursor"].rowcount, connection.in_atomic_block))
        return result

    out = io.StringIO()
    with connection.execute_wrapper(record):
        call_command("purge_expired", schema_name=tenant.schema_name, batch_size=2, stdout=out)
    notification_deletes = [(count, atomic) for sql, count, atomic in deletes if "beacon_notification" in sql]
    assert notification_deletes == [(2, False), (2, False), (1, False)], deletes
    assert all("LIMIT" in sql for sql, _, _ in deletes)
    assert f"{tenant.slug}\t5 notifications\t0 idempotency records" in out.getvalue().splitlines()


def test_purge_pushes_its_totals_to_a_pushgateway(server, make_tenant, tmp_path):
    """A real HTTP server stands in for the Pushgateway (none is installed): it records the pushed body."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    received: list[tuple[str, str]] = []

    class Gateway(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            received.append((self.path, body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    gateway = HTTPServer(("127.0.0.1", 0), Gateway)
    thread = threading.Thread(target=gateway.serve_forever, daemon=True)
    thread.start()
    try:
        tenant, key = make_tenant(slug())
        (row,) = Api(server.url, key).publish_ok({"recipient": unique()})
        with schema_context(tenant.schema_name):
            Notification.objects.filter(id=row["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
        call_command(
            "purge_expired",
            schema_name=tenant.schema_name,
            pushgateway=f"http://127.0.0.1:{gateway.server_address[1]}",
            stdout=io.StringIO(),
        )
    finally:
        gateway.shutdown()
    ((path, body),) = received
    assert path == "/metrics/job/beacon_purge"
    assert 'beacon_purged_total{kind="notifications"} 1.0' in body
    assert 'beacon_purged_total{kind="idempotency_records"} 0.0' in body
    assert "beacon_purge_last_success_timestamp_seconds" in body


# --- the README's configuration table ----------------------------------------------------------------------

ENV_READ = re.compile(
    r"""(?:\b_?env_[a-z]+\((?:env,\s*)?|\benv\.get\(|\benv\.setdefault\(|os\.getenv\(|environ\.get\(|environ\.setdefault\(|environ\[)\s*["']([A-Z][A-Z0-9_]+)["']"""
)
NOT_SETTINGS = {"DJANGO_SETTINGS_MODULE", "BEACON_TEST_DATABASE_URL", "GUNICORN_CMD_ARGS"}


def env_reads() -> set[str]:
    files = [*Path(ROOT, "service").rglob("*.py"), *Path(ROOT, "tenants").rglob("*.py")]
    files += [Path(ROOT, "deploy", "gunicorn.conf.py"), Path(ROOT, "manage.py")]
    found: set[str] = set()
    for path in files:
        found |= set(ENV_READ.findall(path.read_text()))
    return found - NOT_SETTINGS


def test_readme_table_lists_every_variable_the_code_reads():
    readme = Path(ROOT, "README.md").read_text()
    table = readme[readme.index("## Configuration") :]
    table = table[: table.index("\n## ", 10)]
    listed = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", table))
    reads = env_reads()
    assert {
        "DATABASE_URL",
        "LOG_FORMAT",
        "FORWARDED_ALLOW_IPS",
        "REQUIRE_DATABASE_URL",
    } <= reads  # the grep works
    devserver = ENV_READ.findall(Path(ROOT, "service", "devserver.py").read_text())
    assert {"PORT", "METRICS_PORT"} <= set(devserver)  # its reads of a copied environment too
    missing = sorted(reads - listed)
    assert not missing, f"README's configuration table misses {missing}"
    for row in table.splitlines():
        if row.startswith("| `"):
            assert len([cell for cell in row.split("|") if cell.strip()]) == 3, row  # name, default, meaning


def test_rotation_ends_streams_with_the_redis_broker(start_server, make_tenant):
    """The close announcement takes the configured broker: Redis publishes it after the commit."""
    from tests.redis_support import channel, shared_redis_url

    url, name = shared_redis_url(), channel()
    server = start_server(workers=1, BROKER_URL=url, BROKER_CHANNEL=name)
    tenant, key = make_tenant(slug())
    api = Api(server.url, key)
    user = unique()
    token = api.token(user)
    with sse_stream(server.url, token, timeout=30) as events:
        api.publish_ok({"recipient": user, "data": 1})
        assert len(take(events, 1)) == 1
        # A process of its own: the broker is chosen once per process, from its environment.
        rotated = manage_process("rotate_signing_secret", tenant.slug, BROKER_URL=url, BROKER_CHANNEL=name)
        assert rotated.returncode == 0, rotated.stderr
        assert ends_within(events, 5)
    refused = httpx.get(server.url + "/v1/stream", params={"token": token}, timeout=10)
    assert refused.status_code == 401


def test_listen_backlog_sets_the_accept_queue_of_the_listening_socket(start_server) -> None:
    """``LISTEN_BACKLOG`` reaches ``listen()``: ``ss`` shows a listening socket's queue limit as Send-Q.
    A reconnect storm larger than the queue waits on TCP retransmits (docs/deploy.md, Sizing)."""
    srv = start_server(workers=1, LISTEN_BACKLOG="37")
    port = srv.url.rsplit(":", 1)[1]
    shown = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert shown[0] == "LISTEN" and shown[2] == "37", shown  # State Recv-Q Send-Q Local Peer


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--batch-size", "١٢"], "expected a positive integer"),  # int() takes Arabic-Indic digits
        (["--batch-size", "0"], "expected a positive integer"),
        (["--pushgateway", "not a url"], "could not push to --pushgateway"),
        (["--pushgateway", "http://127.0.0.1:1"], "could not push to --pushgateway"),  # refused
    ],
)
def test_purge_bad_options_end_in_one_line_without_a_traceback(make_tenant, args, says):
    tenant, _ = make_tenant()
    result = manage("purge_expired", "--schema", tenant.schema_name, *args)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert says in result.stderr.strip().splitlines()[-1]
