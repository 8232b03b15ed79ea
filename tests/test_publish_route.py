"""The lean publish route (``service.notifications.publish_route``) answers exactly as the ninja route does.

Each request is sent in-process to the real ``ApiHandler`` twice on one event loop: once as the worker serves
it (the lean route) and once with the lean route switched off (Django, ninja, the API middleware): status,
body bytes and headers must be equal, for every error status and for success. A spy on Django's
``ASGIHandler.__call__`` shows which of the two answered. Publishing uses a real async pool on the test
database, as a worker's lifespan opens it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable, Iterator
from http import HTTPStatus
from typing import Any

import pytest
from django.core.handlers.asgi import ASGIHandler
from psycopg_pool import AsyncConnectionPool

from service.apihandler import ApiHandler
from service.notifications import publish, publish_route
from tests.support import unique, wait_until

#: status, headers (lower-case names, sorted), body, and the ``django.request`` log lines (level, message, status)
Response = tuple[int, list[tuple[str, str]], bytes, list[tuple[str, str, int]]]
RID = "req-lean-1"


class Spy:
    """Counts the requests Django's ``ASGIHandler`` handled."""

    def __init__(self) -> None:
        self.calls = 0


@pytest.fixture
def django_spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    spy = Spy()
    original = ASGIHandler.__call__

    async def spying(self: ASGIHandler, scope: Any, receive: Any, send: Any) -> None:
        spy.calls += 1
        await original(self, scope, receive, send)

    monkeypatch.setattr(ASGIHandler, "__call__", spying)
    return spy


def _scope(method: str, path: str, headers: dict[str, str]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }


async def _call(handler: ApiHandler, path: str, headers: dict[str, str], body: bytes) -> Response:
    sent: list[dict[str, Any]] = []
    delivered = False
    never = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await never.wait()  # the client stays connected until the answer is sent
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    records: list[logging.LogRecord] = []
    collect = logging.Handler()
    collect.emit = records.append  # type: ignore[method-assign]
    request_log = logging.getLogger("django.request")
    request_log.addHandler(collect)
    try:
        await handler(_scope("POST", path, headers), receive, send)
    finally:
        request_log.removeHandler(collect)
    logged = [(r.levelname, r.getMessage(), getattr(r, "status_code", 0)) for r in records]
    start = next(m for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    names = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in start["headers"]]
    return start["status"], sorted(names), content, logged


Both = Callable[[str, dict[str, str], bytes], tuple[Response, Response]]


@pytest.fixture
def both(monkeypatch: pytest.MonkeyPatch, django_spy: Spy) -> Iterator[Both]:
    """``both(path, headers, body)``: (lean answer, Django answer) to the same request, on one loop with the
    worker's direct publish pool; asserts that each was served by the side it names."""
    handler = ApiHandler()
    loop = asyncio.new_event_loop()
    pool = AsyncConnectionPool(
        os.environ["BEACON_TEST_DATABASE_URL"],
        min_size=1,
        max_size=2,
        open=False,
        kwargs={"autocommit": True},
    )

    async def start() -> None:
        await pool.open(wait=True)
        publish.use_direct_pool(pool)

    loop.run_until_complete(start())
    serves = publish_route.serves

    def run(path: str, headers: dict[str, str], body: bytes) -> tuple[Response, Response]:
        before = django_spy.calls
        lean = loop.run_until_complete(_call(handler, path, headers, body))
        assert django_spy.calls == before, "the lean route did not serve this request"
        monkeypatch.setattr(publish_route, "serves", lambda scope: False)
        try:
            django = loop.run_until_complete(_call(handler, path, headers, body))
        finally:
            monkeypatch.setattr(publish_route, "serves", serves)
        assert django_spy.calls == before + 1
        return lean, django

    yield run

    async def stop() -> None:
        publish.use_direct_pool(None)
        await pool.close()

    loop.run_until_complete(stop())
    loop.close()


def _headers(key: str | None, **extra: str) -> dict[str, str]:
    headers = {"Host": "testserver", "Content-Type": "application/json", "X-Request-ID": RID}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return {**headers, **extra}


@pytest.fixture(scope="module")
def tenants(make_tenant: Callable[..., tuple[Any, str]]) -> dict[str, tuple[Any, str]]:
    return {
        "plain": make_tenant(max_payload_bytes=200),
        "inactive": make_tenant(is_active=False),
        "other": make_tenant(domains=(f"{unique('host')}.localhost",)),
    }


def _cases(tenants: dict[str, tuple[Any, str]]) -> list[tuple[str, str, dict[str, str], bytes, int, str]]:
    """(name, path, headers, body, expected status, expected code)."""
    key = tenants["plain"][1]
    other_host = tenants["other"][0].domains.first().domain
    one = json.dumps({"recipient": "u1", "data": {"a": 1}}).encode()
    big = json.dumps({"recipient": "u1", "data": "x" * 300}).encode()
    batch_nul = json.dumps(
        {"notifications": [{"recipient": "u"}] * 7 + [{"recipient": "u", "data": {"k": "\u0000"}}]}
    ).encode()
    batch_big = json.dumps({"notifications": [{"topic": "t"}, {"topic": "t", "data": "y" * 300}]}).encode()
    single, batch = "/v1/notifications", "/v1/notifications/batch"
    return [
        ("no credential", single, _headers(None), one, 401, "unauthenticated"),
        ("basic scheme", single, _headers(None, Authorization="Basic dXNlcjpwYXNz"), one, 401, "unauthenticated"),
        ("malformed key", single, _headers("nope"), one, 401, "unauthenticated"),
        ("unknown key", single, _headers("bk_AAAAAAAAAAAA_" + "a" * 43), one, 401, "invalid_api_key"),
        ("inactive tenant", single, _headers(tenants["inactive"][1]), one, 403, "tenant_inactive"),
        ("another tenant's host", single, _headers(key, Host=other_host), one, 403, "tenant_mismatch"),
        ("not a host", single, _headers(key, Host="a b"), one, 400, "invalid_host"),
        ("text/plain", single, _headers(key, **{"Content-Type": "text/plain"}), one, 415, "unsupported_media_type"),
        ("no content type", single, {"Host": "testserver", "Authorization": f"Bearer {key}", "X-Request-ID": RID}, one, 415,
         "unsupported_media_type"),
        ("empty body, any type", single, _headers(key, **{"Content-Type": "text/plain"}), b"", 400, "invalid_json"),
        ("not JSON", single, _headers(key), b"{nope", 400, "invalid_json"),
        ("NaN", single, _headers(key), b'{"recipient": "u", "data": NaN}', 400, "invalid_json"),
        ("not UTF-8", single, _headers(key), b'{"recipient": "\xff"}', 400, "invalid_json"),
        ("JSON array", single, _headers(key), b"[1]", 422, "invalid_field"),
        ("JSON string", single, _headers(key), b'"x"', 422, "invalid_field"),
        ("JSON null", single, _headers(key), b"null", 422, "invalid_field"),
        ("batch of strings", batch, _headers(key), b'{"notifications": ["x", 5]}', 422, "invalid_field"),
        ("batch not a list", batch, _headers(key), b'{"notifications": {"a": 1}}', 422, "invalid_field"),
        ("string as int", single, _headers(key), b'{"topic": "t", "ttl": "60"}', 422, "invalid_field"),
        ("too many recipients", single, _headers(key), json.dumps({"recipients": ["r"] * 1001}).encode(), 422,
         "invalid_field"),
        ("unknown field", single, _headers(key), b'{"recipient": "u", "colour": 1}', 422, "unknown_field"),
        ("no target", single, _headers(key), b'{"data": 1}', 422, "invalid_field"),
        ("reserved event", single, _headers(key), b'{"topic": "t", "event": "beacon.x"}', 422, "invalid_field"),
        ("batch item NUL", batch, _headers(key), batch_nul, 422, "invalid_field"),
        ("batch empty", batch, _headers(key), b'{"notifications": []}', 422, "invalid_field"),
        ("single over tenant limit", single, _headers(key), big, 413, "payload_too_large"),
        ("batch item over tenant limit", batch, _headers(key), batch_big, 413, "payload_too_large"),
        ("from a browser origin", single, _headers(key, Origin="https://app.acme.test"), b'{"topic": "t", "x": 1}',
         422, "unknown_field"),
        ("credential twice", single, {**_headers(key), "authorization": f"Bearer {key}"}, one, 401, "unauthenticated"),
        ("charset parameter", single, _headers(key, **{"Content-Type": "Application/JSON; charset=utf-8"}),
         b'{"recipient": "u", "extra": 1}', 422, "unknown_field"),
    ]  # fmt: skip


def test_every_refusal_is_the_same_from_both_routes(both: Both, tenants: dict[str, tuple[Any, str]]) -> None:
    for name, path, headers, body, status, code in _cases(tenants):
        lean, django = both(path, headers, body)
        assert lean == django, name
        assert lean[0] == status, (name, lean)
        assert json.loads(lean[2])["error"]["code"] == code, (name, lean)
        assert ("x-request-id", RID) in lean[1]
        assert lean[3] == [("WARNING", f"{HTTPStatus(status).phrase}: {path}", status)], name


def test_field_paths_name_the_batch_item(both: Both, tenants: dict[str, tuple[Any, str]]) -> None:
    cases = {name: (path, headers, body) for name, path, headers, body, *_ in _cases(tenants)}
    lean, _ = both(*cases["batch item NUL"])
    assert json.loads(lean[2])["error"]["field"] == "notifications[7].data"
    lean, _ = both(*cases["batch item over tenant limit"])
    assert json.loads(lean[2])["error"]["field"] == "notifications[1].data"


def _without_identity(response: Response) -> tuple[int, list[tuple[str, str]], Any]:
    status, headers, content, logged = response
    body = json.loads(content)
    for entry in body["notifications"]:
        entry["id"], entry["created_at"] = "<id>", "<created_at>"
    assert logged == []
    return status, headers, body


def test_success_is_the_same_from_both_routes(both: Both, tenants: dict[str, tuple[Any, str]]) -> None:
    key = tenants["plain"][1]
    single = json.dumps({"recipients": ["a", "b", "a"], "event": "order.shipped", "data": [1]}).encode()
    batch = json.dumps({"notifications": [{"topic": "t"}, {"broadcast": True, "ttl": 60}]}).encode()
    for path, body in (("/v1/notifications", single), ("/v1/notifications/batch", batch)):
        lean, django = both(path, _headers(key), body)
        assert lean[0] == 201, lean
        assert _without_identity(lean) == _without_identity(django)
        assert list(json.loads(lean[2])["notifications"][0]) == [
            "id",
            "recipient",
            "topic",
            "broadcast",
            "created_at",
        ]


def test_rate_limit_is_the_same_from_both_routes(
    both: Both, make_tenant: Callable[..., tuple[Any, str]]
) -> None:
    _, key = make_tenant(publish_rate_per_second=1)
    body = b'{"topic": "t"}'
    for _ in range(20):  # until both sides were refused within one window (Retry-After is then 1)
        lean, django = both("/v1/notifications", _headers(key), body)
        if lean[0] == django[0] == 429:
            break
    assert lean == django
    assert ("retry-after", "1") in lean[1]
    assert json.loads(lean[2])["error"]["code"] == "rate_limited"


@pytest.mark.allow_server_errors
def test_outage_and_bugs_are_the_same_from_both_routes(
    both: Both, tenants: dict[str, tuple[Any, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = tenants["plain"][1]
    body = b'{"topic": "t"}'
    both("/v1/notifications", _headers(key), body)  # the key and tenant are cached from here on

    async def down(*args: Any, **kwargs: Any) -> Any:
        raise publish.psycopg.OperationalError("connection refused")

    monkeypatch.setattr(publish, "store", down)
    lean, django = both("/v1/notifications", _headers(key), body)
    assert lean == django
    assert lean[0] == 503 and ("retry-after", "2") in lean[1]
    assert json.loads(lean[2])["error"]["code"] == "unavailable"

    async def bug(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(publish, "store", bug)
    lean, django = both("/v1/notifications", _headers(key), body)
    assert lean == django
    assert lean[0] == 500 and json.loads(lean[2])["error"]["code"] == "internal_error"


def test_requests_the_lean_route_does_not_take_go_to_django() -> None:
    def scope(method: str, path: str, *headers: tuple[bytes, bytes]) -> dict[str, Any]:
        return {"method": method, "path": path, "headers": list(headers)}

    assert publish_route.serves(scope("POST", "/v1/notifications"))
    assert publish_route.serves(scope("POST", "/v1/notifications/batch", (b"content-type", b"x")))
    assert not publish_route.serves(scope("POST", "/v1/notifications", (b"idempotency-key", b"k")))
    assert not publish_route.serves(scope("GET", "/v1/notifications"))
    assert not publish_route.serves(scope("OPTIONS", "/v1/notifications"))
    assert not publish_route.serves(scope("POST", "/v1/notifications/"))
    assert not publish_route.serves(scope("POST", "/v1/tokens"))


def test_a_real_worker_serves_publishes_on_the_lean_route(server: Any, acme: Any) -> None:
    """Over real sockets (gunicorn, uvicorn workers): the refusal's ``django.request`` log line names the
    request object that answered it, the lean route's without a key and Django's with one."""
    assert server.log_path is not None

    def logged_request(**headers: str) -> str:
        rid = unique("rid")
        response = acme.publish({"topic": "t", "colour": 1}, **{"X-Request-ID": rid, **headers})
        assert response.status_code == 422 and response.headers["X-Request-ID"] == rid

        def line() -> dict[str, Any] | None:
            for text in server.log_path.read_text(errors="replace").splitlines():
                if rid in text and '"logger": "django.request"' in text:
                    return dict(json.loads(text))
            return None

        found = wait_until(line, timeout=10, message="the refusal's django.request log line")
        assert found["message"] == "Unprocessable Entity: /v1/notifications" and found["status_code"] == 422
        return str(found["request"])

    assert logged_request() == "<PublishRequest: POST '/v1/notifications'>"
    assert logged_request(**{"Idempotency-Key": unique()}).startswith("<ASGIRequest: POST")
