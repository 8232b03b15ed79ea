"""Any method token gets the route's answer (issue 10, "every status on every route in the error shape"):
``405 method_not_allowed`` with ``Allow``, or ``404`` for no route. uvicorn's httptools parser knows a fixed
list of methods and refused ``FOO`` or ``get`` as malformed (``400 bad_request``); h11 and RFC 9110 section
9.1 take any token. Methods are case-sensitive: Django upper-cases ``request.method``, and must not serve
``get`` as GET. Raw sockets: httpx upper-cases methods."""

from __future__ import annotations

import json
import socket

import pytest

from tests.observability.helpers import scrape, total
from tests.support import Api, Server, read_response
from tests.test_hardening_routes import ROUTES, UNKNOWN

# Tokens llhttp does not know (FOO, lower and mixed case, digits and the other token characters) and one it
# knows that no route takes.
# knows that no route takes, RTSP and HTTP/2 methods llhttp knows but refuses in HTTP/1 (after the request
# line), and a long one.
TOKENS = ["FOO", "get", "Post", "head", "X-CUSTOM", "A1!#$%&'*+.^_`|~", "M-SEARCH", "DESCRIBE", "PRI"]
TOKENS += ["GET_PARAMETER", "X" * 200]


def _request(method: str, path: str, extra: str = "") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode("latin-1")


def _exchange(server: Server, *requests: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Each request sent after the previous response arrived (one read each), on one connection."""
    answers = []
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        for request in requests:
            sock.sendall(request)
            status, headers, body, _ = read_response(sock)
            answers.append((status, headers, body))
    return answers


def _error(answer: tuple[int, dict[str, str], bytes], status: int, code: str) -> dict[str, str]:
    got, headers, body = answer
    assert got == status, (got, body)
    assert headers["content-type"].startswith("application/json"), headers
    assert json.loads(body)["error"]["code"] == code, body
    return headers


@pytest.mark.parametrize("method", TOKENS)
@pytest.mark.parametrize("path", list(ROUTES))
def test_any_method_token_a_route_does_not_take_is_405_with_allow(server: Server, path: str, method: str):
    (answer,) = _exchange(server, _request(method, path, "Connection: close\r\n"))
    headers = _error(answer, 405, "method_not_allowed")
    assert {m.strip() for m in headers["allow"].split(",")} == ROUTES[path], headers


@pytest.mark.parametrize("method", ["FOO", "get"])
@pytest.mark.parametrize("path", UNKNOWN)
def test_any_method_token_on_no_route_is_404(server: Server, path: str, method: str):
    (answer,) = _exchange(server, _request(method, path, "Connection: close\r\n"))
    _error(answer, 404, "not_found")


def test_an_unknown_method_later_on_a_kept_alive_connection_is_405_and_the_connection_goes_on(
    server: Server,
):
    first, unknown, after = _exchange(
        server, _request("GET", "/healthz"), _request("FOO", "/healthz"), _request("GET", "/healthz")
    )
    assert first[0] == 200 and after[0] == 200, (first, after)
    _error(unknown, 405, "method_not_allowed")


def test_an_unknown_method_with_a_body_is_405_and_the_body_is_not_taken_for_a_request(
    acme: Api, server: Server
):
    body = b'{"recipient":"u1"}'
    request = _request(
        "post", "/v1/notifications", f"Authorization: Bearer {acme.key}\r\nContent-Length: {len(body)}\r\n"
    )
    unknown, after = _exchange(server, request + body, _request("GET", "/healthz"))
    _error(unknown, 405, "method_not_allowed")
    assert after[0] == 200, after


@pytest.mark.parametrize(
    "split", [b"F", b"FO", b"FOO", b"FOO /v1/in", b"g", b"GE", b"DESC", b"DESCRIBE /v1/inbox"]
)
def test_a_method_split_across_reads_is_405(server: Server, split: bytes):
    """The request arrives in two reads, the second once the first has been taken in."""
    request = _request("FOO", "/v1/inbox", "Connection: close\r\n")
    if split.startswith((b"g", b"GE")):
        request = _request("get" if split == b"g" else "GEX", "/v1/inbox", "Connection: close\r\n")
    elif split.startswith(b"DESC"):
        request = _request("DESCRIBE", "/v1/inbox", "Connection: close\r\n")
    assert request.startswith(split)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(split)
        _pause_for_a_read_of_its_own(sock)
        sock.sendall(request[len(split) :])
        status, headers, body, _ = read_response(sock)
    headers = _error((status, headers, body), 405, "method_not_allowed")
    assert headers["allow"] == "GET, HEAD"


def _pause_for_a_read_of_its_own(sock: socket.socket) -> None:
    """Give the server 0.3 s to take in what was sent as a read of its own, checking it does not answer a
    partial request meanwhile. (Should both parts still arrive as one read, the test holds all the same.)"""
    sock.settimeout(0.3)
    try:
        assert sock.recv(1) == b"", "the server answered a partial request"
    except TimeoutError:
        pass  # nothing came back: the bytes were taken in and held
    finally:
        sock.settimeout(10)


def test_an_unknown_method_pipelined_in_the_same_read_is_400_after_the_first_answer(server: Server):
    """Documented limit (docs/errors.md, 405): the parser gives no position to restart at."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(_request("GET", "/healthz") + _request("FOO", "/healthz"))
        status, _, _, rest = read_response(sock)
        assert status == 200
        status, headers, body, _ = read_response(sock, rest)
        _error((status, headers, body), 400, "bad_request")


def test_any_method_token_is_counted_under_a_bounded_label(server: Server):
    _exchange(server, _request("FOO", "/healthz", "Connection: close\r\n"))
    samples = scrape(server.metrics_port)
    assert total(samples, "beacon_http_requests_total", method="other", route="/healthz", status="405") >= 1
    assert not total(samples, "beacon_http_requests_total", method="FOO")
