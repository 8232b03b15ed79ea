"""The tenant admin edits allowed origins one per line and refuses a bad one with the reason, saving nothing."""

from __future__ import annotations

from typing import Any

from django.test import Client

from tenants.models import Tenant
from tests.test_admin import staff_client


def change_form_post(client: Client, tenant: Tenant, origins: str, **fields: str) -> Any:
    """Post the real change form as the page would: every field of the tenant (``fields`` override), the
    domain inline empty."""
    data: dict[str, Any] = {
        "slug": tenant.slug,
        "name": tenant.name,
        "is_active": "on",
        "allowed_origins": origins,
        "max_connections": tenant.max_connections,
        "max_connections_per_recipient": tenant.max_connections_per_recipient,
        "publish_rate_per_second": tenant.publish_rate_per_second,
        "max_payload_bytes": tenant.max_payload_bytes,
        "domains-TOTAL_FORMS": "0",
        "domains-INITIAL_FORMS": "0",
        "domains-MIN_NUM_FORMS": "0",
        "domains-MAX_NUM_FORMS": "1000",
        "_save": "Save",
        **fields,
    }
    return client.post(f"/admin/tenants/tenant/{tenant.pk}/change/", data)


def test_bad_origins_are_refused_with_a_clear_message(make_tenant) -> None:
    tenant, _ = make_tenant(allowed_origins=["https://app.example.test"])
    client = staff_client()
    page = client.get(f"/admin/tenants/tenant/{tenant.pk}/change/").content.decode()
    assert "https://app.example.test</textarea>" in page  # one per line, not a JSON list
    cases = {
        "https://app.example.test/": "an origin has no path, no trailing slash",
        "https://*.example.test": "wildcards are not allowed",
        "app.example.test": "an origin is scheme://host[:port]",
        "https://App.example.test": "write the origin in lower case",
        "https://app.example.test:443": "drop the default port",
        "ftp://app.example.test": "the scheme must be http or https",
    }
    for bad, reason in cases.items():
        response = change_form_post(client, tenant, f"https://ok.example.test\n{bad}\n")
        assert response.status_code == 200, bad  # the form again, not a redirect
        errors = response.context["adminform"].form.errors["allowed_origins"]
        assert len(errors) == 1 and reason in errors[0] and bad in errors[0], errors
        assert "errornote" in response.content.decode()
        tenant.refresh_from_db()
        assert tenant.allowed_origins == ["https://app.example.test"], "nothing saved"


def test_good_origins_are_saved_as_a_list(make_tenant) -> None:
    tenant, _ = make_tenant()
    client = staff_client()
    response = change_form_post(
        client, tenant, "https://a.example.test\r\n\r\n  http://localhost:3000  \nhttps://a.example.test\n"
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    tenant.refresh_from_db()
    assert tenant.allowed_origins == ["https://a.example.test", "http://localhost:3000"]
    response = change_form_post(client, tenant, "")
    assert response.status_code == 302
    tenant.refresh_from_db()
    assert tenant.allowed_origins == []


def test_a_domain_no_host_can_match_is_refused_and_others_are_normalized(make_tenant) -> None:
    tenant, _ = make_tenant()
    client = staff_client()
    inline = {"domains-TOTAL_FORMS": "1", "domains-0-is_primary": "on", "domains-0-tenant": str(tenant.pk)}
    for bad in ("a b.test", "http://x.test/", "x.test:99999", "bücher.test"):
        response = change_form_post(client, tenant, "", **inline, **{"domains-0-domain": bad})
        assert response.status_code == 200, bad  # the form again, nothing saved
        assert "is not a host name" in response.content.decode(), bad
        assert not tenant.domains.exists()
    host = f"{tenant.slug}.example.test"
    response = change_form_post(client, tenant, "", **inline, **{"domains-0-domain": f"{host.upper()}.:8443"})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert list(tenant.domains.values_list("domain", flat=True)) == [host]


def test_number_fields_take_ascii_digits_and_limits_are_positive(make_tenant) -> None:
    """As the commands' options: ``١٢``, ``1_000``, ``+5`` or a 0 limit are refused with the field named and
    nothing saved; white space around a number is not a mistake."""
    tenant, _ = make_tenant(allowed_origins=[])
    client = staff_client()
    before = Tenant.objects.get(pk=tenant.pk)
    limits = (
        "max_connections",
        "max_connections_per_recipient",
        "publish_rate_per_second",
        "max_payload_bytes",
    )
    for field in (*limits, "default_ttl_seconds", "max_retention_seconds"):
        for raw in ("١٢٠", "1_000", "+500", "²", "12.0", "0x10"):
            response = change_form_post(client, tenant, "", **{field: raw})
            assert response.status_code == 200, (field, raw)  # the form again, with the error
            assert response.context["adminform"].form.errors.get(field), (field, raw)
    for field in limits:
        response = change_form_post(client, tenant, "", **{field: "0"})
        assert response.status_code == 200 and response.context["adminform"].form.errors.get(field), field
    after = Tenant.objects.get(pk=tenant.pk)
    assert [getattr(after, f) for f in limits] == [getattr(before, f) for f in limits]
    saved = change_form_post(client, tenant, "", max_connections=" 120 ", default_ttl_seconds="3600")
    assert saved.status_code == 302, saved.content.decode()[:500]
    after = Tenant.objects.get(pk=tenant.pk)
    assert (after.max_connections, after.default_ttl_seconds) == (120, 3600)
