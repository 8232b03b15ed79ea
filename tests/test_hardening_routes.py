"""Every route x every method, and the ``Host`` rule on every route, against the real server (issue 10's
fuzzer gaps): a method a route does not take is ``405 method_not_allowed`` in the error shape with ``Allow``
(``/v1/docs`` and ``/v1/openapi.json`` answered 200 to anything); a request whose ``Host`` breaks RFC 9112
section 3.2 is ``400 invalid_host`` on every route (``/v1/docs`` with ``Host: a b`` was 200)."""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from tests.support import Api, read_response

METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND"]
# path -> the methods it takes (DEMO=1 on the test server). A plain OPTIONS is no preflight: it is refused
# like any other method the route does not take (preflights are checked below and in tests/test_cors.py).
ROUTES: dict[str, set[str]] = {
    "/healthz": {"GET", "HEAD"},
    "/readyz": {"GET", "HEAD"},
    "/v1/docs": {"GET", "HEAD"},
    "/v1/openapi.json": {"GET", "HEAD"},
    "/v1/beacon.js": {"GET", "HEAD"},
    "/v1/stream": {"GET", "HEAD"},
    "/v1/notifications": {"GET", "HEAD", "POST"},
    "/v1/notifications/batch": {"POST"},
    "/v1/tokens": {"POST"},
    "/v1/inbox": {"GET", "HEAD"},
    "/v1/inbox/unread-count": {"GET", "HEAD"},
    "/v1/inbox/read-all": {"POST"},
    "/v1/inbox/1/read": {"POST"},
    "/": {"GET", "HEAD"},
    "/demo/token": {"GET", "HEAD"},
    "/demo/publish": {"POST"},
}
UNKNOWN = ["/v1/nope", "/v1", "/v1/", "/v1/docs/x", "/nope", "/demo/nope"]


def _shape(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, (response.request.method, response.request.url, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    if response.request.method != "HEAD":
        body = response.json()
        assert set(body) == {"error"} and body["error"]["code"] == code, body


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("path", list(ROUTES))
def test_every_route_answers_only_its_methods(acme: Api, path: str, method: str):
    response = acme.client.request(method, path)  # no credential: allowed methods end in 2xx or 401
    allowed = ROUTES[path]
    if method in allowed:
        assert response.status_code != 405 and response.status_code < 500, (method, path, response.text)
        if path in {"/v1/docs", "/v1/openapi.json", "/healthz", "/readyz", "/v1/beacon.js"}:
            assert response.status_code == 200, (method, path, response.text)
        return
    _shape(response, 405, "method_not_allowed")
    allow = {m.strip() for m in response.headers["allow"].split(",")}
    assert allow == allowed, (method, path, response.headers["allow"])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("path", UNKNOWN)
def test_unknown_paths_are_404_in_the_error_shape_for_every_method(acme: Api, path: str, method: str):
    _shape(acme.client.request(method, path), 404, "not_found")


@pytest.mark.parametrize("path", ["/v1/stream", "/v1/inbox", "/v1/inbox/read-all", "/v1/beacon.js"])
def test_preflights_on_cors_routes_still_work(acme: Api, path: str):
    method = "POST" if path.endswith("read-all") else "GET"
    response = acme.client.options(
        path, headers={"Origin": "https://app.acme.test", "Access-Control-Request-Method": method}
    )
    assert response.status_code == 204, response.text
    assert response.headers["access-control-allow-origin"] == "https://app.acme.test"


@pytest.mark.parametrize("path", ["/v1/docs", "/v1/openapi.json", "/healthz", "/v1/notifications"])
def test_a_preflight_on_a_route_browsers_do_not_call_is_refused(acme: Api, path: str):
    response = acme.client.options(
        path, headers={"Origin": "https://app.acme.test", "Access-Control-Request-Method": "GET"}
    )
    _shape(response, 405, "method_not_allowed")
    assert "access-control-allow-origin" not in response.headers


# --- Host (RFC 9112 section 3.2), on every route, from the front ASGI app --------------------------------
def _raw(server_url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    port = server_url.rsplit(":", 1)[1]
    with socket.create_connection(("127.0.0.1", int(port)), timeout=10) as sock:
        sock.sendall(request)
        status, headers, body, _ = read_response(sock)
    return status, headers, body


def _invalid_host(status: int, headers: dict[str, str], body: bytes) -> None:
    assert status == 400, (status, body)
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"]["code"] == "invalid_host", body


HOST_ROUTES = [p for p in ROUTES if p != "/demo/publish"] + ["/v1/nope", "/nope"]
BAD_HOSTS = [
    "a b",
    "[::1",
    "",
    "acme.localhost:x",
    "acme..localhost",
    "[zz]",
    "a/b",
    "a@b",
    "é.test",
    "a:1:2",
    "[::1]x",
    "x:65536",
]


@pytest.mark.parametrize("host", BAD_HOSTS)
@pytest.mark.parametrize("path", HOST_ROUTES)
def test_an_invalid_host_is_400_invalid_host_on_every_route(server, path: str, host: str):
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode("latin-1")
    _invalid_host(*_raw(server.url, request))


@pytest.mark.parametrize("path", HOST_ROUTES)
def test_http11_without_host_or_with_two_is_400_invalid_host(server, path: str):
    _invalid_host(*_raw(server.url, f"GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n".encode()))
    two = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    _invalid_host(*_raw(server.url, two.encode()))
    two_http10 = f"GET {path} HTTP/1.0\r\nHost: a.test\r\nHost: b.test\r\n\r\n"
    _invalid_host(*_raw(server.url, two_http10.encode()))
    _invalid_host(*_raw(server.url, f"GET {path} HTTP/1.0\r\nHost:\r\n\r\n".encode()))


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/v1/docs", "/v1/openapi.json", "/v1/beacon.js"])
def test_http10_without_host_is_served(server, path: str):
    status, _, body = _raw(server.url, f"GET {path} HTTP/1.0\r\n\r\n".encode())
    assert status == 200, body


@pytest.mark.parametrize(
    "host", ["10.1.2.3:8000", "127.0.0.1", "[::1]:8000", "beacon.example.com.", "Beacon.Example.COM:443", "x"]
)
def test_probe_and_proxy_hosts_are_served(server, host: str):
    for path in ("/healthz", "/readyz", "/v1/docs"):
        status, _, body = _raw(
            server.url, f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
        )
        assert status == 200, (path, host, body)


def test_an_invalid_host_is_refused_before_credentials_and_the_tenant_check_stays(acme: Api, globex: Api):
    response = acme.client.post(
        "/v1/notifications", json={"recipient": "u1"}, headers=acme.headers(Host="a b")
    )
    _shape(response, 400, "invalid_host")
    response = acme.client.post("/v1/notifications", json={"recipient": "u1"}, headers={"Host": "[::1"})
    _shape(response, 400, "invalid_host")  # before the missing key's 401
    response = globex.client.post(
        "/v1/notifications", json={"recipient": "u1"}, headers=globex.headers(Host="acme.localhost")
    )
    _shape(response, 403, "tenant_mismatch")


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/v1/beacon.js"), ("DELETE", "/v1/stream"), ("OPTIONS", "/v1/stream")]
)
def test_a_405_on_a_cors_route_is_readable_by_an_allowed_origin(acme: Api, method: str, path: str):
    response = acme.client.request(method, path, headers={"Origin": "https://app.acme.test"})
    _shape(response, 405, "method_not_allowed")
    assert response.headers["access-control-allow-origin"] == "https://app.acme.test"
    other = acme.client.request(method, path, headers={"Origin": "https://evil.test"})
    _shape(other, 405, "method_not_allowed")
    assert "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
def test_static_files_take_get_and_head_only(acme: Api, method: str):
    response = acme.client.request(method, "/static/admin/css/base.css")
    _shape(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET, HEAD"
    assert acme.client.get("/static/admin/css/base.css").status_code in {200, 404}
