"""Idempotency-Key: replays, conflicts and concurrent retries that must store exactly one row."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django_tenants.utils import schema_context

from service.notifications.models import Notification
from tests.support import Api, unique


def count(tenant, recipient: str) -> int:
    with schema_context(tenant.schema_name):
        return Notification.objects.filter(recipient=recipient).count()


def test_same_key_same_body_replays_first_answer(acme: Api, tenant_pair):
    user, key = unique(), unique("idem")
    first = acme.publish({"recipient": user, "data": {"a": 1, "b": 2}}, **{"Idempotency-Key": key})
    # Same JSON with another key order and white space is "the same body".
    again = acme.client.post(
        "/v1/notifications",
        content=b'{ "data": {"b": 2, "a": 1},\n "recipient": "' + user.encode() + b'" }',
        headers=acme.headers(**{"Idempotency-Key": key, "Content-Type": "application/json"}),
    )
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true" and "Idempotent-Replayed" not in first.headers
    assert count(tenant_pair[0][0], user) == 1


def test_same_key_different_body_is_409(acme: Api):
    key = unique("idem")
    assert acme.publish({"recipient": unique()}, **{"Idempotency-Key": key}).status_code == 201
    response = acme.publish({"recipient": unique()}, **{"Idempotency-Key": key})
    assert response.status_code == 409 and response.json()["error"]["code"] == "idempotency_conflict"


def test_keys_are_scoped_to_the_tenant(acme: Api, globex: Api, tenant_pair):
    key, user = unique("idem"), unique()
    assert acme.publish({"recipient": user}, **{"Idempotency-Key": key}).status_code == 201
    response = globex.publish({"recipient": user}, **{"Idempotency-Key": key})
    assert response.status_code == 201 and "Idempotent-Replayed" not in response.headers
    assert count(tenant_pair[1][0], user) == 1


def test_concurrent_retries_with_one_key_store_one_row(acme: Api, tenant_pair):
    user, key = unique(), unique("idem")
    body = {"recipients": [user, user + "-b"], "data": {"x": 1}}

    def attempt(_: int) -> httpx.Response:
        with httpx.Client(base_url=acme.base_url, timeout=30) as client:
            return client.post(
                "/v1/notifications", json=body, headers=acme.headers(**{"Idempotency-Key": key})
            )

    with ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(attempt, range(24)))
    assert {r.status_code for r in responses} == {201}
    assert len({r.text for r in responses}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 23
    assert count(tenant_pair[0][0], user) == 1 and count(tenant_pair[0][0], user + "-b") == 1


def test_batch_takes_idempotency_keys(acme: Api, tenant_pair):
    user, key = unique(), unique("idem")
    body = {"notifications": [{"recipient": user, "data": i} for i in range(3)]}
    first = acme.publish(body, batch=True, **{"Idempotency-Key": key})
    second = acme.publish(body, batch=True, **{"Idempotency-Key": key})
    assert first.status_code == second.status_code == 201 and first.json() == second.json()
    assert count(tenant_pair[0][0], user) == 3


@pytest.mark.parametrize(
    "raw",
    [b"x" * 256, "café".encode(), "€".encode(), b"", "ключ".encode()],
    ids=["256", "utf8-latin", "utf8-euro", "empty", "cyrillic"],
)
def test_invalid_idempotency_key_is_422_and_stores_nothing(acme: Api, tenant_pair, raw: bytes):
    """1-255 printable ASCII characters, one rule whatever the bytes (``café`` and ``€`` alike)."""
    user = unique()
    headers = [*acme.headers().items(), ("Idempotency-Key", raw)]
    response = acme.client.post("/v1/notifications", json={"recipient": user}, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "Idempotency-Key"
    assert count(tenant_pair[0][0], user) == 0


@pytest.mark.parametrize("route", ["/v1/notifications", "/v1/notifications/batch"])
def test_two_idempotency_keys_are_422_not_one_joined_key(acme: Api, tenant_pair, route: str):
    user = unique()
    body = (
        {"recipient": user} if route.endswith("notifications") else {"notifications": [{"recipient": user}]}
    )
    headers = [*acme.headers().items(), ("Idempotency-Key", "a"), ("Idempotency-Key", "b")]
    response = acme.client.post(route, json=body, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "Idempotency-Key"
    assert count(tenant_pair[0][0], user) == 0


def test_a_key_of_printable_ascii_with_spaces_and_255_characters_is_taken(acme: Api):
    own = unique()  # keys of this run's own: a key reused with another body would be a 409
    for key in [f"order 42: shipped ~ {{ok}} {own}", own + "k" * (255 - len(own))]:
        first = acme.publish({"recipient": unique()}, **{"Idempotency-Key": key})
        assert first.status_code == 201, first.text
