"""Inbox and tokens: cursor pages newest first, unread filter and counts, read marks, token rules."""

from __future__ import annotations

import time

import httpx
import jwt
from django.db import connection

from tests.support import Api, unique


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_pages_newest_first_with_cursor(server, make_tenant):
    acme = Api(server.url, make_tenant()[1])  # a tenant of its own: no broadcasts from other tests
    user = unique()
    ids = [
        n["id"]
        for n in acme.publish(
            {"notifications": [{"recipient": user, "data": i} for i in range(7)]}, batch=True
        ).json()["notifications"]
    ]
    token = acme.token(user)
    seen: list[str] = []
    before = None
    while True:
        params = {"limit": 3, **({"before": before} if before else {})}
        page = acme.client.get("/v1/inbox", params=params, headers=auth(token)).json()
        seen += [n["id"] for n in page["notifications"]]
        before = page["next"]
        if before is None:
            break
    assert seen == list(reversed(ids))


def test_topics_and_broadcasts_appear_but_do_not_count_as_unread(acme: Api):
    user, topic = unique(), unique("topic")
    acme.publish_ok({"recipient": user, "data": "direct"})
    acme.publish_ok({"topic": topic, "data": "team"})
    acme.publish_ok({"topic": unique("other"), "data": "not mine"})
    token = acme.token(user, topics=[topic])
    page = acme.client.get("/v1/inbox", headers=auth(token)).json()
    datas = [n["data"] for n in page["notifications"]]
    assert "direct" in datas and "team" in datas and "not mine" not in datas
    assert acme.client.get("/v1/inbox/unread-count", headers=auth(token)).json() == {"unread": 1}
    unread = acme.client.get("/v1/inbox", params={"unread": "true"}, headers=auth(token)).json()
    assert [n["data"] for n in unread["notifications"]] == ["direct"]


def test_mark_one_and_all_read(acme: Api):
    user = unique()
    ids = [n["id"] for n in acme.publish({"recipients": [user], "data": 1}).json()["notifications"]]
    ids += [
        n["id"]
        for n in acme.publish(
            {"notifications": [{"recipient": user}, {"recipient": user}]}, batch=True
        ).json()["notifications"]
    ]
    token = acme.token(user)
    response = acme.client.post(f"/v1/inbox/{ids[0]}/read", headers=auth(token))
    assert response.status_code == 200 and response.json()["read_at"] is not None
    assert acme.client.get("/v1/inbox/unread-count", headers=auth(token)).json() == {"unread": 2}
    response = acme.client.post("/v1/inbox/read-all", headers=auth(token))
    assert response.json() == {"updated": 2, "unread": 0}
    assert acme.client.get("/v1/inbox/unread-count", headers=auth(token)).json() == {"unread": 0}


def test_read_all_is_one_update(acme: Api, tenant_pair, django_assert_max_num_queries=None):
    from django.test.utils import CaptureQueriesContext

    from service.notifications import inbox
    from tenants.directory import TenantInfo

    user = unique()
    acme.publish({"notifications": [{"recipient": user} for _ in range(20)]}, batch=True)
    info = TenantInfo.of(tenant_pair[0][0])
    with CaptureQueriesContext(connection) as queries:
        assert inbox.mark_all_read(info, user)["updated"] == 20
    updates = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("UPDATE")]
    assert len(updates) == 1


def test_cannot_read_or_mark_another_recipients_notification(acme: Api, globex: Api):
    owner, other = unique(), unique()
    (n,) = acme.publish_ok({"recipient": owner})
    response = acme.client.post(f"/v1/inbox/{n['id']}/read", headers=auth(acme.token(other)))
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    # Same recipient id in another tenant: still not found.
    response = globex.client.post(f"/v1/inbox/{n['id']}/read", headers=auth(globex.token(owner)))
    assert response.status_code == 404


def test_token_rules(acme: Api, server, tenant_pair):
    tenant = tenant_pair[0][0]
    response = acme.client.post("/v1/tokens", json={"recipient": "u", "ttl": 86401}, headers=acme.headers())
    assert response.status_code == 422 and response.json()["error"]["field"] == "ttl"
    response = acme.client.post(
        "/v1/tokens", json={"recipient": "u", "topics": ["t"] * 101}, headers=acme.headers()
    )
    assert response.status_code == 422
    minted = acme.client.post(
        "/v1/tokens", json={"recipient": "u", "topics": ["a"]}, headers=acme.headers()
    ).json()
    claims = jwt.decode(minted["token"], tenant.signing_secret, algorithms=["HS256"])
    assert claims["sub"] == "u" and claims["tid"] == "acme" and claims["topics"] == ["a"]
    assert minted["expires_at"].endswith("Z")
    # Backends may sign their own tokens with the tenant's secret.
    own = jwt.encode(
        {"sub": "u", "tid": "acme", "exp": int(time.time()) + 60}, tenant.signing_secret, "HS256"
    )
    assert httpx.get(server.url + "/v1/inbox", headers=auth(own)).status_code == 200
    expired = jwt.encode(
        {"sub": "u", "tid": "acme", "exp": int(time.time()) - 5}, tenant.signing_secret, "HS256"
    )
    response = httpx.get(server.url + "/v1/inbox", headers=auth(expired))
    assert response.status_code == 401 and response.json()["error"]["code"] == "token_expired"
    forged = jwt.encode(
        {"sub": "u", "tid": "acme", "exp": int(time.time()) + 60}, "wrong-secret-" * 3, "HS256"
    )
    response = httpx.get(server.url + "/v1/inbox", headers=auth(forged))
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_token"
    response = httpx.get(server.url + "/v1/inbox")
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthenticated"
    # A token is not an API key.
    response = httpx.post(server.url + "/v1/notifications", json={"recipient": "u"}, headers=auth(own))
    assert response.status_code == 401


def test_inbox_bad_arguments(acme: Api):
    token = acme.token(unique())
    assert acme.client.get("/v1/inbox", params={"limit": 0}, headers=auth(token)).status_code == 422
    assert acme.client.get("/v1/inbox", params={"before": "abc"}, headers=auth(token)).status_code == 422
    assert acme.client.post("/v1/inbox/abc/read", headers=auth(token)).status_code == 404
    assert acme.client.get("/v1/notifications", headers=acme.headers()).status_code == 422
