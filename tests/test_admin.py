"""The operator admin: a new API key is shown once, and the tenant's send form publishes for real."""

from __future__ import annotations

import io
import re
import uuid
from datetime import timedelta

from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from django_tenants.utils import schema_context

from service.notifications.models import Notification
from tenants import keys
from tenants.models import ApiKey
from tests.support import Api, sse_stream, take, unique


def staff_client() -> Client:
    """A test client logged in as a new superuser. No password: hashing one (PBKDF2, a million rounds) and
    checking it at login cost about 2 s of CPU per test, and no test here is about the login form."""
    name = f"op-{uuid.uuid4().hex[:8]}"
    client = Client()
    client.force_login(User.objects.create_superuser(name, f"{name}@example.test", password=None))
    return client


def test_new_api_key_is_shown_once_and_only_hashed(make_tenant):
    tenant, _ = make_tenant()
    client = staff_client()
    response = client.post(
        "/admin/tenants/apikey/add/", {"tenant": tenant.pk, "name": "from-admin"}, follow=True
    )
    assert response.status_code == 200
    shown = re.search(r"bk_[A-Za-z0-9_-]{12}_[A-Za-z0-9_-]{32,}", response.content.decode())
    assert shown is not None
    parsed = keys.parse(shown.group(0))
    assert parsed is not None
    stored = ApiKey.objects.get(public_id=parsed.public_id)
    assert stored.name == "from-admin" and keys.secret_matches(parsed.secret, stored.secret_hash)
    page = client.get(f"/admin/tenants/apikey/{stored.pk}/change/").content.decode()
    assert parsed.secret not in page


def test_admin_send_form_publishes_through_the_api_code_path(server, make_tenant):
    tenant, key = make_tenant()
    api = Api(server.url, key)
    user = unique()
    client = staff_client()
    assert "Send a notification" in client.get(f"/admin/tenants/tenant/{tenant.pk}/change/").content.decode()
    with sse_stream(server.url, api.token(user)) as events:
        response = client.post(
            f"/admin/tenants/tenant/{tenant.pk}/send/",
            {"recipient": user, "event": "ops.note", "payload": '{"x": 1}'},
        )
        assert response.status_code == 302
        (event,) = take(events, 1)
    assert event.event == "ops.note"
    with schema_context(tenant.schema_name):
        assert Notification.objects.get(recipient=user).data == {"x": 1}
    bad = client.post(f"/admin/tenants/tenant/{tenant.pk}/send/", {"recipient": user, "payload": "{nope"})
    assert bad.status_code == 200 and "not JSON" in bad.content.decode()


def test_purge_expired_removes_only_expired_rows(acme, tenant_pair):
    tenant = tenant_pair[0][0]
    user = unique()
    stored = acme.publish_ok({"recipients": [user, user + "-2"]})
    with schema_context(tenant.schema_name):
        Notification.objects.filter(id=stored[0]["id"]).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
    call_command("purge_expired", schema_name=tenant.schema_name, stdout=io.StringIO())
    with schema_context(tenant.schema_name):
        assert list(
            Notification.objects.filter(recipient__startswith=user).values_list("recipient", flat=True)
        ) == [user + "-2"]
