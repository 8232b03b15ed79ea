"""Operator commands (a stable interface parsed by scripts) and the OpenAPI document."""

from __future__ import annotations

import uuid

import httpx
from openapi_spec_validator import validate

from tenants import keys
from tenants.models import ApiKey, Tenant
from tests.support import Api, manage, unique


def test_operator_commands_round_trip(server):
    slug = f"cmd-{uuid.uuid4().hex[:8]}"
    created = manage(
        "create_tenant",
        slug,
        "--name",
        "Command Co",
        "--domain",
        f"{slug}.example.test",
        "--allowed-origin",
        "https://app.example.test",
        "--allowed-origin",
        "http://localhost:3000",
    )
    assert created.returncode == 0, created.stderr
    tenant = Tenant.objects.get(slug=slug)
    assert tenant.name == "Command Co" and tenant.domains.get().domain == f"{slug}.example.test"
    assert tenant.allowed_origins == ["https://app.example.test", "http://localhost:3000"]  # repeatable

    again = manage("create_tenant", slug)
    assert again.returncode != 0 and "already exists" in again.stderr
    assert Tenant.objects.filter(slug=slug).count() == 1

    bad = manage("create_tenant", "Not_A_Slug")
    assert bad.returncode != 0 and "invalid slug" in bad.stderr

    made = manage("create_api_key", slug, "--name", "ci")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    parsed = keys.parse(key)
    assert parsed is not None and ApiKey.objects.get(public_id=parsed.public_id).name == "ci"
    assert Api(server.url, key).publish({"recipient": "u"}).status_code == 201

    listed = manage("list_tenants")
    line = next(row for row in listed.stdout.splitlines() if row.startswith(slug + "\t"))
    assert line.split("\t") == [slug, tenant.schema_name, "active", f"{slug}.example.test"]

    revoked = manage("revoke_api_key", key)  # the whole key is accepted too
    assert revoked.returncode == 0 and parsed.public_id in revoked.stdout
    assert ApiKey.objects.get(public_id=parsed.public_id).revoked_at is not None
    assert manage("revoke_api_key", "nosuchkey123").returncode != 0


def test_create_tenant_takes_one_domain_named_twice():
    """``--domain x --domain X.`` names one host: it was a second row for the unique index, an
    IntegrityError traceback (``tests.support.server_errors`` counts it) instead of a tenant or a message."""
    slug = f"dup-{uuid.uuid4().hex[:8]}"
    host = f"{slug}.example.test"
    created = manage(
        "create_tenant", slug, "--domain", host, "--domain", host.upper() + ".", "--domain", host
    )
    assert created.returncode == 0 and "Traceback" not in created.stderr, created.stderr
    assert list(Tenant.objects.get(slug=slug).domains.values_list("domain", flat=True)) == [host]


def test_openapi_document_is_valid_openapi_3(server):
    response = httpx.get(server.url + "/v1/openapi.json")
    assert response.status_code == 200
    document = response.json()
    validate(document)
    assert document["openapi"].startswith("3.")
    paths = set(document["paths"])
    assert {
        "/v1/notifications",
        "/v1/notifications/batch",
        "/v1/tokens",
        "/v1/inbox",
        "/v1/inbox/unread-count",
        "/v1/inbox/read-all",
        "/v1/inbox/{notification_id}/read",
    } <= paths


def test_the_publish_routes_document_the_idempotency_key_the_server_takes(server, make_tenant):
    """The OpenAPI document says what the server accepts: every key its pattern allows is taken (201), and
    the values it refuses are refused by the server too (422), white space around a key being no part of it."""
    import re

    document = httpx.get(server.url + "/v1/openapi.json").json()
    api = Api(server.url, make_tenant()[1])
    for path, batch in (("/v1/notifications", False), ("/v1/notifications/batch", True)):
        (header,) = [p for p in document["paths"][path]["post"]["parameters"] if p["in"] == "header"]
        assert header["name"] == "Idempotency-Key" and not header["required"]
        pattern = re.compile(header["schema"]["pattern"])
        for key in ("a", "a b", "~" * 255, unique("k")):
            assert pattern.match(key), key
            body = {"notifications": [{"recipient": "u"}]} if batch else {"recipient": "u"}
            response = api.publish(body, batch=batch, **{"Idempotency-Key": key})
            assert response.status_code in (201, 409), (key, response.text)  # 409: the key, on another body
        assert not pattern.match("é") and not pattern.match("a\x7f")  # not printable ASCII
        assert not pattern.match("x" * 256)
        response = api.publish({"recipient": "u"}, **{"Idempotency-Key": "x" * 256})
        assert response.status_code == 422, response.text


def test_unknown_route_is_404_in_the_error_shape(server):
    for path in ("/v1/nothing-here", "/nothing-here"):
        response = httpx.get(server.url + path)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
