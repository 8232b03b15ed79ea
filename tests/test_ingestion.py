"""POST /v1/notifications and /batch against a real server: storage, validation, limits, error codes."""

from __future__ import annotations

import json

import httpx
import pytest
from django_tenants.utils import schema_context

from service.notifications.models import Notification
from tests.support import Api, unique


def rows(tenant, **filters):
    with schema_context(tenant.schema_name):
        return list(Notification.objects.filter(**filters).order_by("id"))


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"code", "message"} <= set(body["error"]), body
    return body["error"]


def test_single_publish_is_committed_before_201(acme: Api, tenant_pair):
    user = unique()
    response = acme.publish({"recipient": user, "event": "invoice.paid", "data": {"amount": 12}, "ttl": 3600})
    assert response.status_code == 201
    (entry,) = response.json()["notifications"]
    assert entry["recipient"] == user and entry["id"].isdigit() and entry["created_at"].endswith("Z")
    (row,) = rows(tenant_pair[0][0], recipient=user)
    assert str(row.id) == entry["id"] and row.event == "invoice.paid" and row.data == {"amount": 12}
    assert 3590 <= (row.expires_at - row.created_at).total_seconds() <= 3610


def test_recipients_fan_out_to_one_row_each_and_dedupe(acme: Api, tenant_pair):
    a, b = unique(), unique()
    stored = acme.publish_ok({"recipients": [a, b, a], "data": "hi"})
    assert [s["recipient"] for s in stored] == [a, b]
    assert len(rows(tenant_pair[0][0], recipient__in=[a, b])) == 2


def test_topic_and_broadcast_are_stored_once(acme: Api, tenant_pair):
    topic = unique("topic")
    (t,) = acme.publish_ok({"topic": topic, "data": {}})
    (b,) = acme.publish_ok({"broadcast": True, "data": {}})
    assert t["recipient"] is None and t["topic"] == topic and b["broadcast"] is True
    assert len(rows(tenant_pair[0][0], topic=topic)) == 1


def test_default_ttl_is_thirty_days(acme: Api, tenant_pair):
    user = unique()
    acme.publish_ok({"recipient": user})
    (row,) = rows(tenant_pair[0][0], recipient=user)
    assert round((row.expires_at - row.created_at).total_seconds()) == 30 * 86400


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"recipient": "u", "colour": "red"}, "unknown_field", "colour"),
        ({"recipient": "u", "event": "bad event!"}, "invalid_field", "event"),
        ({"recipient": "u", "event": "beacon.reset"}, "invalid_field", "event"),
        ({"recipient": "u", "ttl": 59}, "invalid_field", "ttl"),
        ({"recipient": "u", "ttl": 90 * 86400 + 1}, "invalid_field", "ttl"),
        ({"recipient": ""}, "invalid_field", "recipient"),
        ({"recipient": "a\nb"}, "invalid_field", "recipient"),
        ({"recipient": "x" * 257}, "invalid_field", "recipient"),
        ({"recipients": []}, "invalid_field", "recipients"),
        ({"recipients": [f"u{i}" for i in range(1001)]}, "invalid_field", "recipients"),
        ({"recipient": 5}, "invalid_field", "recipient"),
        ({"data": {}}, "invalid_field", None),
        ({"recipient": "u", "topic": "t"}, "invalid_field", None),
        ({"broadcast": False}, "invalid_field", None),
    ],
)
def test_invalid_bodies_are_422_and_store_nothing(acme: Api, tenant_pair, body, code, field):
    before = len(rows(tenant_pair[0][0]))
    response = acme.publish(body)
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["code"] == code
    assert error.get("field") == field
    assert len(rows(tenant_pair[0][0])) == before


def test_malformed_json_is_400(acme: Api):
    response = acme.client.post(
        "/v1/notifications",
        content=b'{"recipient": "u",',
        headers=acme.headers(**{"Content-Type": "application/json"}),
    )
    assert response.status_code == 400 and error_of(response)["code"] == "invalid_json"


def test_wrong_content_type_is_415(acme: Api):
    response = acme.client.post(
        "/v1/notifications", content=b"recipient=u", headers=acme.headers(**{"Content-Type": "text/plain"})
    )
    assert response.status_code == 415 and error_of(response)["code"] == "unsupported_media_type"


def test_data_over_tenant_limit_is_413_with_field(acme: Api):
    response = acme.publish({"recipient": unique(), "data": "x" * (64 * 1024)})
    assert response.status_code == 413
    error = error_of(response)
    assert error["code"] == "payload_too_large" and error["field"] == "data"


def test_body_over_one_mebibyte_is_413(acme: Api):
    body = json.dumps({"recipient": "u", "data": ["x" * 1000] * 1100}).encode()
    response = acme.client.post(
        "/v1/notifications", content=body, headers=acme.headers(**{"Content-Type": "application/json"})
    )
    assert response.status_code == 413 and error_of(response)["code"] == "payload_too_large"


def test_batch_is_all_or_nothing_and_names_the_item(acme: Api, tenant_pair):
    user = unique()
    items = [{"recipient": user, "data": {"i": i}} for i in range(10)]
    items[7] = {"recipient": user, "data": {"i": 7}, "ttl": "soon"}
    response = acme.publish({"notifications": items}, batch=True)
    assert response.status_code == 422
    assert error_of(response)["field"] == "notifications[7].ttl"
    assert rows(tenant_pair[0][0], recipient=user) == []

    items[7] = {"recipient": user, "data": {"i": 7}}
    response = acme.publish({"notifications": items}, batch=True)
    assert response.status_code == 201
    stored = response.json()["notifications"]
    assert len(stored) == 10 and [int(s["id"]) for s in stored] == sorted(int(s["id"]) for s in stored)
    assert [r.data["i"] for r in rows(tenant_pair[0][0], recipient=user)] == list(range(10))


def test_batch_item_data_too_large_names_the_item(acme: Api, tenant_pair):
    user = unique()
    items = [{"recipient": user, "data": 1}, {"recipient": user, "data": "x" * 70000}]
    response = acme.publish({"notifications": items}, batch=True)
    assert response.status_code == 413 and error_of(response)["field"] == "notifications[1].data"
    assert rows(tenant_pair[0][0], recipient=user) == []


def test_batch_limits(acme: Api):
    assert acme.publish({"notifications": []}, batch=True).status_code == 422
    too_many = [{"recipient": "u"}] * 1001
    response = acme.publish({"notifications": too_many}, batch=True)
    assert response.status_code == 422 and error_of(response)["field"] == "notifications"
    assert error_of(acme.publish({"notifications": [{"recipient": "u"}], "x": 1}, batch=True))["code"] == (
        "unknown_field"
    )


def test_publish_rate_limit_is_429_with_retry_after(server, make_tenant):
    tenant, key = make_tenant(publish_rate_per_second=3)
    api = Api(server.url, key)
    responses = [api.publish({"recipient": "u", "data": i}) for i in range(12)]
    limited = [r for r in responses if r.status_code == 429]
    assert limited, [r.status_code for r in responses]
    assert error_of(limited[0])["code"] == "rate_limited"
    assert int(limited[0].headers["Retry-After"]) >= 1
    # Rejected publishes store nothing.
    created = sum(r.status_code == 201 for r in responses)
    assert created >= 3 and len(rows(tenant)) == created
