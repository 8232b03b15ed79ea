"""CORS on the browser routes (contract, "Browsers"): preflights from the union of the tenants' origins, the
per-tenant check on the actual request, CORS headers on refusals, and cookie users safe from other sites."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import jwt
import pytest

from service import cors
from tenants.directory import TenantInfo
from tests.support import Api, sse_stream, unique, wait_until

ACME_ORIGIN = "https://app.acme.test"  # acme's allowed origin (tests/conftest.py)
EVIL = "https://evil.test"
BROWSER_ROUTES = [
    ("/v1/stream", "GET"),
    ("/v1/inbox", "GET"),
    ("/v1/inbox/unread-count", "GET"),
    ("/v1/inbox/read-all", "POST"),
    ("/v1/inbox/123/read", "POST"),
    ("/v1/beacon.js", "GET"),
]


def cors_of(response: httpx.Response) -> dict[str, str]:
    return {k.lower(): v for k, v in response.headers.items() if k.lower().startswith("access-control-")}


def assert_cors_for(response: httpx.Response, origin: str) -> None:
    got = cors_of(response)
    assert got["access-control-allow-origin"] == origin, (response.status_code, response.text)
    assert got["access-control-allow-credentials"] == "true"
    assert "origin" in response.headers.get("vary", "").lower()


def preflight(base: str, path: str, origin: str, method: str = "GET") -> httpx.Response:
    return httpx.options(
        base + path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, last-event-id",
        },
        timeout=10,
    )


# --- pure rules -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "host", "origin"),
    [
        ("http", "127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("https", "Beacon.Example.com:443", "https://beacon.example.com"),
        ("http", "beacon.example.com:80", "http://beacon.example.com"),
        ("https", "beacon.example.com:8443", "https://beacon.example.com:8443"),
        ("http", "[::1]:8000", "http://[::1]:8000"),
        ("http", "[::1]", "http://[::1]"),
    ],
)
def test_own_origin_is_serialized_as_a_browser_sends_it(scheme: str, host: str, origin: str) -> None:
    assert cors.own_origin(scheme, host) == origin


def _tenant(*origins: str) -> TenantInfo:
    return TenantInfo(1, "t", "t_t", True, "s", tuple(origins), 1, 1, 1, 1)


@pytest.mark.parametrize(
    ("listed", "origin", "cookie", "allowed"),
    [
        ((ACME_ORIGIN,), None, True, True),  # no Origin: a server or curl
        ((ACME_ORIGIN,), ACME_ORIGIN, True, True),
        ((ACME_ORIGIN,), "http://beacon.test", True, True),  # Beacon's own origin
        ((ACME_ORIGIN,), EVIL, False, False),
        ((ACME_ORIGIN,), EVIL, True, False),
        ((ACME_ORIGIN,), "null", False, False),
        ((), "null", False, True),  # a local file page for a tenant that lists no origin
        ((), "null", True, False),  # never with the cookie: a sandboxed frame of any site sends null
        ((), EVIL, False, False),
    ],
)
def test_per_tenant_origin_rule(
    listed: tuple[str, ...], origin: str | None, cookie: bool, allowed: bool
) -> None:
    assert cors.origin_allowed_for(_tenant(*listed), origin, "http://beacon.test", cookie=cookie) is allowed


# --- preflights -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "method"), BROWSER_ROUTES)
def test_preflight_from_an_allowed_origin(server, tenant_pair, path: str, method: str) -> None:
    response = preflight(server.url, path, ACME_ORIGIN, method)
    assert response.status_code == 204 and response.content == b""
    assert_cors_for(response, ACME_ORIGIN)
    got = cors_of(response)
    assert got["access-control-allow-origin"] != "*"
    assert {m.strip() for m in got["access-control-allow-methods"].split(",")} >= {"GET", "POST", "OPTIONS"}
    assert got["access-control-allow-headers"] == "authorization, content-type, last-event-id"
    assert int(got["access-control-max-age"]) > 0


@pytest.mark.parametrize(("path", "method"), BROWSER_ROUTES)
def test_preflight_from_an_origin_nobody_allows_gets_no_cors_header(
    server, tenant_pair, path, method
) -> None:
    for origin in (EVIL, "null", "https://app.acme.test.evil.test", "http://app.acme.test"):
        response = preflight(server.url, path, origin, method)
        assert cors_of(response) == {}, (path, origin)


def test_preflight_from_beacons_own_origin(server) -> None:
    response = preflight(server.url, "/v1/inbox", server.url)
    assert response.status_code == 204
    assert_cors_for(response, server.url)


def test_routes_for_tenant_backends_never_answer_cors(server, tenant_pair) -> None:
    """API keys never belong in a browser: ``/v1/notifications`` and ``/v1/tokens`` get no CORS header."""
    for path in ("/v1/notifications", "/v1/tokens", "/v1/notifications/batch"):
        assert cors_of(preflight(server.url, path, ACME_ORIGIN, "POST")) == {}, path


def test_the_union_follows_tenants_within_the_cache_period(server, make_tenant) -> None:
    origin = f"https://{unique('app')}.example.test"
    tenant, _ = make_tenant(allowed_origins=[origin])
    wait_until(
        lambda: "access-control-allow-origin" in cors_of(preflight(server.url, "/v1/inbox", origin)),
        message="a new tenant's origin to reach the preflight union",
    )
    tenant.is_active = False
    tenant.save(update_fields=["is_active"])
    wait_until(
        lambda: cors_of(preflight(server.url, "/v1/inbox", origin)) == {},
        message="a deactivated tenant's origin to leave the union",
    )


# --- actual requests on the inbox -------------------------------------------------------------------------


def test_inbox_get_and_post_from_an_allowed_origin_carry_cors_headers(acme: Api) -> None:
    user = unique()
    token = acme.token(user)
    (n,) = acme.publish_ok({"recipient": user})
    headers = {"Authorization": f"Bearer {token}", "Origin": ACME_ORIGIN}
    for response in (
        acme.client.get("/v1/inbox", headers=headers),
        acme.client.get("/v1/inbox/unread-count", headers=headers),
        acme.client.post(f"/v1/inbox/{n['id']}/read", headers=headers),
        acme.client.post("/v1/inbox/read-all", headers=headers),
    ):
        assert response.status_code == 200, response.text
        assert_cors_for(response, ACME_ORIGIN)
        exposed = {h.strip() for h in response.headers["access-control-expose-headers"].split(",")}
        assert {"retry-after", "x-request-id"} <= exposed
    # Without Origin (a server), nothing CORS is added.
    plain = acme.client.get("/v1/inbox", headers={"Authorization": f"Bearer {token}"})
    assert plain.status_code == 200 and cors_of(plain) == {}


def test_inbox_refusals_carry_cors_headers_for_an_allowed_origin(
    acme: Api, globex: Api, tenant_pair, make_tenant
) -> None:
    user = unique()
    token = acme.token(user)
    expired = jwt.encode(
        {"sub": user, "tid": "acme", "exp": int(time.time()) - 1}, tenant_pair[0][0].signing_secret, "HS256"
    )
    # Its own tenant for the broadcast: a broadcast in acme would reach acme's other tests' inboxes.
    _, own_key = make_tenant(allowed_origins=[ACME_ORIGIN])
    own = Api(acme.base_url, own_key)
    broadcast = own.publish_ok({"broadcast": True})[0]
    own_token = own.token(user)
    origin = {"Origin": ACME_ORIGIN}
    bearer = {"Authorization": f"Bearer {token}", **origin}
    cases: list[tuple[httpx.Response, int, str]] = [
        (acme.client.get("/v1/inbox", headers=origin), 401, "unauthenticated"),
        (
            acme.client.get("/v1/inbox", headers={**origin, "Authorization": "Bearer x.y.z"}),
            401,
            "invalid_token",
        ),
        (
            acme.client.get("/v1/inbox", headers={**origin, "Authorization": f"Bearer {expired}"}),
            401,
            "token_expired",
        ),
        (
            acme.client.get("/v1/inbox", headers={**bearer, "Host": "globex.localhost"}),
            403,
            "tenant_mismatch",
        ),
        (acme.client.post("/v1/inbox/999999999/read", headers=bearer), 404, "not_found"),
        (
            own.client.post(
                f"/v1/inbox/{broadcast['id']}/read",
                headers={**origin, "Authorization": f"Bearer {own_token}"},
            ),
            409,
            "no_read_state",
        ),
        (acme.client.get("/v1/inbox?limit=0", headers=bearer), 422, "invalid_field"),
        # refused before Django runs (service/apihandler.py): still readable by the page
        (acme.client.get("/v1/inbox?before=1%00", headers=bearer), 422, "invalid_field"),
        (
            acme.client.post("/v1/inbox/read-all", headers=bearer, content=b"x" * (2 * 1024 * 1024)),
            413,
            "payload_too_large",
        ),
        (acme.client.delete("/v1/inbox/unread-count", headers=bearer), 405, "method_not_allowed"),
        # acme's origin with a globex token: refused by the per-tenant check, readable by the page
        (
            globex.client.get(
                "/v1/inbox", headers={**origin, "Authorization": f"Bearer {globex.token(user)}"}
            ),
            403,
            "origin_not_allowed",
        ),
    ]
    for response, status, code in cases:
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), response.text
        assert_cors_for(response, ACME_ORIGIN)


def test_inbox_from_an_origin_the_tenant_does_not_allow_is_refused_without_cors(acme: Api) -> None:
    token = acme.token(unique())
    response = acme.client.get("/v1/inbox", headers={"Authorization": f"Bearer {token}", "Origin": EVIL})
    assert response.status_code == 403 and response.json()["error"]["code"] == "origin_not_allowed"
    assert cors_of(response) == {}
    # Other refusals to that origin carry none either: the page learns nothing, not even the status.
    for refused in (
        acme.client.get("/v1/inbox", headers={"Origin": EVIL}),
        acme.client.post("/v1/inbox/read-all", headers={"Origin": EVIL, "Authorization": "Bearer x.y.z"}),
        acme.client.get("/v1/stream", headers={"Origin": EVIL}),
        acme.client.get("/v1/inbox?before=1%00", headers={"Origin": EVIL}),  # refused before Django
    ):
        assert refused.status_code in {401, 422}, refused.text
        assert cors_of(refused) == {}, refused.request.url


def test_cookie_posts_are_refused_from_other_origins(acme: Api, server) -> None:
    """Cross-site request forgery: the browser sends the cookie on its own, so the origin decides."""
    user = unique()
    token = acme.token(user)
    client = httpx.Client(base_url=server.url, timeout=10)
    client.cookies.set("beacon_token", token)

    def post(**headers: str) -> httpx.Response:
        acme.publish_ok({"recipient": user})
        return client.post("/v1/inbox/read-all", headers=headers)

    for origin in (EVIL, "null", "http://app.acme.test", "https://app.acme.test:8443"):
        refused = post(Origin=origin)
        assert refused.status_code == 403, origin
        assert refused.json()["error"]["code"] == "origin_not_allowed"
    unread = client.get("/v1/inbox/unread-count").json()["unread"]
    assert unread == 4, "a refused post changed nothing"
    for headers in ({"Origin": ACME_ORIGIN}, {"Origin": server.url}, {}):
        accepted = post(**headers)
        assert accepted.status_code == 200 and accepted.json()["updated"] >= 1, headers
    with_cookie_get = client.get("/v1/inbox", headers={"Origin": EVIL})
    assert with_cookie_get.status_code == 403


# --- the stream route -----------------------------------------------------------------------------------


def _stream_status(url: str, **headers: str) -> tuple[int, dict[str, Any], httpx.Headers]:
    with httpx.Client(timeout=10) as client, client.stream("GET", url, headers=headers) as response:
        body = {} if response.status_code == 200 else json.loads(response.read())
        return response.status_code, body, response.headers


def test_stream_answers_carry_cors_headers_for_an_allowed_origin(
    acme: Api, globex: Api, server, tenant_pair
) -> None:
    token = acme.token(unique())
    with sse_stream(server.url, token, headers={"Origin": ACME_ORIGIN}) as events:
        next(events)
    url = server.url + "/v1/stream"
    with (
        httpx.Client(timeout=10) as client,
        client.stream("GET", url, params={"token": token}, headers={"Origin": ACME_ORIGIN}) as ok,
    ):
        assert ok.status_code == 200 and ok.headers["content-type"].startswith("text/event-stream")
        assert_cors_for(httpx.Response(200, headers=ok.headers), ACME_ORIGIN)
        assert "retry-after" in ok.headers["access-control-expose-headers"]
    for headers, status, code in [
        ({}, 401, "unauthenticated"),
        ({"Authorization": "Bearer nope"}, 401, "invalid_token"),
        ({"Authorization": f"Bearer {token}", "Host": "globex.localhost"}, 403, "tenant_mismatch"),
        ({"Authorization": f"Bearer {globex.token(unique())}"}, 403, "origin_not_allowed"),
        ({"Authorization": f"Bearer {token}", "Last-Event-ID": "x"}, 400, "invalid_last_event_id"),
    ]:
        got, body, answer = _stream_status(url, Origin=ACME_ORIGIN, **headers)
        assert (got, body["error"]["code"]) == (status, code)
        assert_cors_for(httpx.Response(got, headers=answer), ACME_ORIGIN)
    # The reconnect after beacon.token-expired: the old token in the query, refused readably (issue 9).
    expired = jwt.encode(
        {"sub": unique(), "tid": "acme", "exp": int(time.time()) - 1},
        tenant_pair[0][0].signing_secret,
        "HS256",
    )
    got, body, answer = _stream_status(f"{url}?token={expired}", Origin=ACME_ORIGIN)
    assert (got, body["error"]["code"]) == (401, "token_expired")
    assert_cors_for(httpx.Response(got, headers=answer), ACME_ORIGIN)
    got, body, answer = _stream_status(url, Origin=EVIL, Authorization=f"Bearer {token}")
    assert (got, body["error"]["code"]) == (403, "origin_not_allowed")
    assert not any(name.lower().startswith("access-control-") for name in answer)


def test_stream_429_and_503_carry_cors_headers(start_server, make_tenant) -> None:
    origin = f"https://{unique('app')}.example.test"
    _, key = make_tenant(allowed_origins=[origin], max_connections_per_recipient=1)
    pod = start_server(workers=1, WORKER_MAX_CONNECTIONS="2")
    api = Api(pod.url, key)
    url = pod.url + "/v1/stream"
    token = api.token(unique())
    with sse_stream(pod.url, token, headers={"Origin": origin}):
        got, body, answer = _stream_status(url, Origin=origin, Authorization=f"Bearer {token}")
        assert (got, body["error"]["code"]) == (429, "too_many_connections")
        assert_cors_for(httpx.Response(got, headers=answer), origin)
        with sse_stream(pod.url, api.token(unique()), headers={"Origin": origin}):
            got, body, answer = _stream_status(
                url, Origin=origin, Authorization=f"Bearer {api.token(unique())}"
            )
            assert (got, body["error"]["code"]) == (503, "over_capacity")
            assert_cors_for(httpx.Response(got, headers=answer), origin)
            assert "retry-after" in answer["access-control-expose-headers"]


def test_a_cache_miss_loads_the_union_once_for_every_concurrent_caller(monkeypatch) -> None:
    """A reconnect storm after the cache expires costs one query per worker, not one per stream."""
    import asyncio
    import threading

    from tenants import directory

    loads: list[int] = []
    gate = threading.Event()

    def slow_load() -> frozenset[str]:
        loads.append(1)
        gate.wait(5)
        return frozenset({ACME_ORIGIN})

    monkeypatch.setattr(directory.origin_union, "load", slow_load)
    directory.origin_union.clear()

    async def storm() -> list[bool]:
        callers = [asyncio.ensure_future(cors.origin_known(ACME_ORIGIN, "http://b.test")) for _ in range(200)]
        await asyncio.sleep(0.05)
        callers[0].cancel()  # a client that goes away does not cancel the shared load
        gate.set()
        return await asyncio.gather(*callers[1:])

    try:
        assert all(asyncio.run(storm()))
        assert len(loads) == 1
    finally:
        directory.origin_union.clear()
