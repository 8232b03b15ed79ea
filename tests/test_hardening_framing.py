"""Requests uvicorn refuses before the app runs, and app failures before a response: the JSON error shape.

Against the real gunicorn (``deploy/gunicorn.conf.py``'s ``service.serving.BeaconWorker``, httptools) over
raw sockets: each malformed request is ``400 bad_request`` with ``content-type: application/json`` and the
connection closed, and a valid request on a fresh connection is still served. The h11 fallback and the
``500`` an app failing before its response gets are checked on uvicorn servers in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from service import serving
from service.serving import MAX_HEAD_BYTES, REQUEST_TIMEOUT, BeaconWorker, H11Protocol, HttpProtocol
from tests.support import Server, free_port, wait_until

GOOD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def _post(*headers: bytes, body: bytes = b"") -> bytes:
    head = b"POST /v1/notifications HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    return head + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body


MALFORMED: dict[str, bytes] = {
    "content-length -1": _post(b"Content-Length: -1", body=b"{}"),
    "content-length hex": _post(b"Content-Length: 0x1c", body=b"{}"),
    "content-length plus sign": _post(b"Content-Length: +28", body=b"{}"),
    "content-length underscore": _post(b"Content-Length: 2_8", body=b"{}"),
    "content-length arabic-indic digits": _post(b"Content-Length: " + "١٢".encode(), body=b"{}"),
    "content-length superscript": _post(b"Content-Length: \xc2\xb2", body=b"{}"),
    "content-length 23 digits": _post(b"Content-Length: " + b"9" * 23, body=b"{}"),
    "content-length twice": _post(b"Content-Length: 2", b"Content-Length: 3", body=b"{}"),
    "content-length twice, same value": _post(b"Content-Length: 2", b"Content-Length: 2", body=b"{}"),
    "content-length list": _post(b"Content-Length: 2, 2", body=b"{}"),
    "content-length and chunked": _post(
        b"Content-Length: 2", b"Transfer-Encoding: chunked", body=b"2\r\n{}\r\n0\r\n\r\n"
    ),
    "bad chunk size": _post(b"Transfer-Encoding: chunked", body=b"zz\r\n{}\r\n0\r\n\r\n"),
    "negative chunk size": _post(b"Transfer-Encoding: chunked", body=b"-2\r\n{}\r\n0\r\n\r\n"),
    "chunk size overflow": _post(b"Transfer-Encoding: chunked", body=b"f" * 40 + b"\r\n{}\r\n"),
    "unknown transfer coding": _post(b"Transfer-Encoding: gzip, chunked, x", body=b"0\r\n\r\n"),
    "NUL in a header value": _post(b"X-A: a\x00b", b"Content-Length: 2", body=b"{}"),
    "control byte in a header value": _post(b"X-A: a\x01b", b"Content-Length: 2", body=b"{}"),
    "DEL in a header value": _post(b"X-A: a\x7fb", b"Content-Length: 2", body=b"{}"),
    "bare CR in a header": _post(b"X-A: a\rb", b"Content-Length: 2", body=b"{}"),
    "space before the colon": _post(b"Content-Length : 2", body=b"{}"),
    "header without a colon": _post(b"X-A", b"Content-Length: 2", body=b"{}"),
    "obsolete line folding": _post(b"X-A: a", b" folded", b"Content-Length: 2", body=b"{}"),
    "request line without version (HTTP/0.9)": b"GET /healthz\r\nHost: 127.0.0.1\r\n\r\n",
    "HTTP/2.0 in an HTTP/1 request line": b"GET /healthz HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n",
    "HTTP/1.2": b"GET /healthz HTTP/1.2\r\nHost: 127.0.0.1\r\n\r\n",
    "request line with a bad version": b"GET /healthz HTTP/9.x\r\nHost: 127.0.0.1\r\n\r\n",
    "request line with spaces in the target": b"GET /a b c HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    "request line garbage": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",  # TLS to a plain port
    "method with a control byte": b"G\x01T /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    # RFC 9112 section 3.2: origin-form, absolute-form (http, https) or "*" for OPTIONS; nothing else
    "absolute-form ftp target": b"GET ftp://127.0.0.1/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    "absolute-form ws target": b"GET ws://127.0.0.1/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    "absolute-form file target": b"GET file:///etc/passwd HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    "asterisk-form with GET": b"GET * HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    "authority-form with GET": b"GET 127.0.0.1:80 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
}


def _exchange(url: str, request: bytes) -> tuple[int, dict[str, str], bytes, bool]:
    """Send ``request``, read the answer to the end; ``closed``: the server closed the connection."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        data, closed = b"", False
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                part = sock.recv(65536)
            except ConnectionResetError:
                closed = True
                break
            except TimeoutError:
                break  # still open after a complete answer
            if not part:
                closed = True
                break
            data += part
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep and b"content-length" in head.lower():
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(body) >= length:
                    sock.settimeout(2)  # the answer is complete: the server must now close
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split(" ")[1]), headers, body, closed


def _assert_error(answer: tuple[int, dict[str, str], bytes, bool], status: int, code: str) -> None:
    got_status, headers, body, closed = answer
    assert got_status == status, answer
    assert headers["content-type"] == "application/json", headers
    assert headers["connection"] == "close", headers
    error = json.loads(body)
    assert set(error) == {"error"} and error["error"]["code"] == code and error["error"]["message"], error
    assert closed, "the connection must be closed after the refusal"


@pytest.mark.parametrize("request_bytes", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_http_is_400_bad_request_in_the_error_shape(server, request_bytes: bytes):
    _assert_error(_exchange(server.url, request_bytes), 400, "bad_request")
    status, _, body, _ = _exchange(server.url, GOOD + b"")
    assert status == 200, body  # a fresh connection is served as usual


@pytest.mark.parametrize(
    "head",
    [
        b"X-Big: " + b"a" * (1024 * 1024) + b"\r\n",  # one long header, arriving over many reads
        b"X-Big: " + b"a" * (70 * 1024) + b"\r\n",  # just past the limit, possibly in one read
        b"X-A: b\r\n" * 20_000,  # many short ones
        b"Cookie: " + b"c=" + b"d" * 80_000 + b"\r\n",
    ],
    ids=["1 MiB header", "70 KiB header", "20000 headers", "80 KB cookie"],
)
def test_over_long_heads_are_400_bad_request_in_the_error_shape(server, head: bytes):
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + head + b"\r\n"
    _assert_error(_exchange(server.url, request), 400, "bad_request")
    assert _exchange(server.url, GOOD)[0] == 200


def test_a_long_url_is_400_and_heads_within_the_limit_are_served(server):
    long_url = b"GET /healthz?" + b"q" * (MAX_HEAD_BYTES + 1) + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    _assert_error(_exchange(server.url, long_url), 400, "bad_request")
    near = b"X-Big: " + b"a" * (MAX_HEAD_BYTES - 200) + b"\r\n"
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + near + b"\r\n"
    assert _exchange(server.url, request)[0] == 200
    body = b'{"recipient":"u1"}' * 20_000  # a body past the head limit is no head: 401 without a key
    post = _post(b"Content-Length: %d" % len(body), b"Connection: close", body=body)
    assert _exchange(server.url, post)[0] == 401


def test_a_valid_request_after_a_malformed_one_on_the_same_connection_is_not_read(server):
    answer = _exchange(server.url, MALFORMED["content-length -1"] + GOOD)
    _assert_error(answer, 400, "bad_request")
    assert answer[2].count(b'"error"') == 1  # one answer, then the connection ends


def test_the_gunicorn_worker_serves_the_json_protocol():
    assert BeaconWorker.CONFIG_KWARGS["loop"] == "auto" and BeaconWorker.CONFIG_KWARGS["http"] is HttpProtocol
    assert BeaconWorker.CONFIG_KWARGS["h11_max_incomplete_event_size"] == MAX_HEAD_BYTES
    assert HttpProtocol.__name__ == "HttpToolsProtocol"


# --- In-process uvicorn: the h11 fallback, and an app that fails before its response -------------------
async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/raise":
        raise RuntimeError("boom before the response")
    if scope["path"] == "/silent":
        return  # returns without starting a response
    if scope["path"] == "/slow":
        await asyncio.sleep(1.5)  # an answer slower than the head timeout set by the test
    body = b'{"ok":true}'
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _served(app: Any, protocol: type) -> Iterator[str]:
    """``app`` served by uvicorn with ``protocol`` on a thread of this process, until the generator ends."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http=protocol, lifespan="off", log_level="critical"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=10, message="uvicorn to start")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(params=[HttpProtocol, H11Protocol], ids=["httptools", "h11"])
def toy_server(request: pytest.FixtureRequest) -> Iterator[str]:
    yield from _served(_app, request.param)


@pytest.mark.parametrize("path", ["/raise", "/silent"])
def test_an_app_failing_before_its_response_is_500_internal_error_in_the_shape(toy_server: str, path: str):
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    _assert_error(_exchange(toy_server, request), 500, "internal_error")
    assert _exchange(toy_server, GOOD)[0] == 200


@pytest.mark.parametrize(
    "name", ["content-length -1", "content-length twice", "bad chunk size", "NUL in a header value"]
)
def test_both_protocols_refuse_malformed_http_in_the_shape(toy_server: str, name: str):
    _assert_error(_exchange(toy_server, MALFORMED[name]), 400, "bad_request")
    assert _exchange(toy_server, GOOD)[0] == 200


def test_pipelined_requests_keep_the_json_500(toy_server: str):
    two = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /raise HTTP/1.1\r\nHost: x\r\n\r\n"
    answer = _exchange(toy_server, two)
    assert answer[0] == 200
    assert answer[2].endswith(b'"internal_error", "message": "internal error"}}'), answer


# --- Absolute-form targets: the target's host is the request's host (RFC 9112 section 3.2.2) ----------------
def test_an_absolute_form_target_replaces_the_host_header(server, acme, globex):
    docs = b"GET http://127.0.0.1/v1/docs HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n"
    assert _exchange(server.url, docs)[0] == 200  # the invalid Host header is ignored
    for target in (b"http://u@127.0.0.1/healthz", b"http://a..b/healthz", b"HTTP://x:99999/healthz"):
        request = b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        status, _, body, _ = _exchange(server.url, request)
        assert status == 400 and json.loads(body)["error"]["code"] in {"invalid_host", "bad_request"}, body
    body = b'{"recipient":"u1"}'
    publish = (
        b"POST http://acme.localhost/v1/notifications HTTP/1.1\r\nHost: globex.localhost\r\n"
        + f"Authorization: Bearer {globex.key}\r\n".encode()
        + b"Content-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
        + body
    )
    status, _, answer, _ = _exchange(server.url, publish)
    assert status == 403 and b'"code": "tenant_mismatch"' in answer, answer  # chunked: Django's answer


@pytest.fixture(scope="module")
def head_timeout_server(start_module_server: Any) -> Server:
    """One worker with a 1 s head timeout, shared by the head-timeout tests (each on its own connections)."""
    return start_module_server(workers=1, HTTP_HEAD_TIMEOUT_SECONDS="1")


@pytest.mark.parametrize(
    "partial",
    [b"", b"GET /healthz HTTP/1.1\r\n", b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1"],
    ids=["nothing", "request line only", "headers unfinished"],
)
def test_a_head_that_does_not_arrive_in_time_is_408_and_closed(head_timeout_server: Server, partial: bytes):
    """Slowloris: a request whose line and headers are still incomplete ``HTTP_HEAD_TIMEOUT_SECONDS`` after
    the connection opened (or its first byte) is answered ``408 request_timeout`` and closed; a complete
    request on another connection is served meanwhile."""
    srv = head_timeout_server
    _assert_error(_exchange(srv.url, partial), 408, "request_timeout")
    status, _, _, _ = _exchange(
        srv.url, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    assert status == 200


def test_a_kept_alive_connection_gets_the_head_timeout_per_request(head_timeout_server: Server):
    """The timer runs per request, while its head is incomplete: a second request's unfinished head on a
    kept-alive connection is cut too."""
    srv = head_timeout_server
    host, port = srv.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = b""
        while b'"ok"' not in first:
            first += sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        rest = b""
        while part := sock.recv(65536):
            rest += part
        assert rest.startswith(b"HTTP/1.1 408") and b'"request_timeout"' in rest


# --- Both protocols in front of Beacon's app: the same answer to the same bytes -----------------------------
@pytest.fixture(scope="module", params=[HttpProtocol, H11Protocol], ids=["httptools", "h11"])
def beacon_over(request: pytest.FixtureRequest) -> Iterator[str]:
    """Beacon's ASGI app (``service.asgi``) served in this process by each protocol; only routes that need
    no database are asked (``/healthz``)."""
    from service.asgi import application

    yield from _served(application, request.param)


def _healthz(target: bytes = b"/healthz", *headers: bytes, version: bytes = b"1.1") -> bytes:
    lines = [b"GET " + target + b" HTTP/" + version, *headers, b"Connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n"


BOTH: dict[str, tuple[bytes, int, str | None]] = {
    "served": (_healthz(b"/healthz", b"Host: 127.0.0.1"), 200, None),
    "HTTP/1.1 without Host": (_healthz(b"/healthz"), 400, "invalid_host"),
    "two Host lines": (_healthz(b"/healthz", b"Host: 127.0.0.1", b"Host: 127.0.0.1"), 400, "invalid_host"),
    "HTTP/1.0 without Host": (_healthz(b"/healthz", version=b"1.0"), 200, None),
    "absolute-form replaces a bad Host": (_healthz(b"http://127.0.0.1/healthz", b"Host: a b"), 200, None),
    "absolute-form, scheme in capitals": (_healthz(b"HTTPS://127.0.0.1:8/healthz", b"Host: x"), 200, None),
    "absolute-form gives HTTP/1.0 its host": (
        _healthz(b"http://127.0.0.1/healthz", version=b"1.0"),
        200,
        None,
    ),
    "absolute-form, HTTP/1.1 without Host": (_healthz(b"http://127.0.0.1/healthz"), 400, "invalid_host"),
    "absolute-form, two Host lines": (
        _healthz(b"http://127.0.0.1/healthz", b"Host: a", b"Host: a"),
        400,
        "invalid_host",
    ),
    "absolute-form with an invalid host": (_healthz(b"http://a..b/healthz", b"Host: x"), 400, "invalid_host"),
    "absolute-form ftp": (_healthz(b"ftp://127.0.0.1/healthz", b"Host: 127.0.0.1"), 400, "bad_request"),
    "absolute-form mailto": (_healthz(b"mailto:a@127.0.0.1", b"Host: 127.0.0.1"), 400, "bad_request"),
    "asterisk with GET": (_healthz(b"*", b"Host: 127.0.0.1"), 400, "bad_request"),
    "a fragment in the path": (_healthz(b"/healthz#x", b"Host: 127.0.0.1"), 400, "bad_request"),
    "a fragment in an absolute-form target": (
        _healthz(b"http://127.0.0.1/healthz#x", b"Host: x"),
        400,
        "bad_request",
    ),
    "absolute-form with no host": (_healthz(b"http:///healthz", b"Host: 127.0.0.1"), 400, "bad_request"),
    "absolute-form with no path is /": (_healthz(b"http://127.0.0.1?x=1", b"Host: x"), 404, "not_found"),
    "absolute-form with an IPv6 host": (_healthz(b"http://[::1]:80/healthz", b"Host: x"), 200, None),
}


@pytest.mark.parametrize("name", list(BOTH))
def test_both_protocols_answer_targets_and_hosts_alike(beacon_over: str, name: str):
    request, status, code = BOTH[name]
    got, headers, body, _ = _exchange(beacon_over, request)
    assert got == status, (name, got, body)
    assert headers["content-type"] == "application/json", headers
    if code is not None:
        error = json.loads(body)["error"]
        assert error["code"] == code and error["message"], error


# --- The head timeout in both protocols (h11 had none), and the body timeout --------------------------------
def _head_timeout_rows() -> dict[str, list[tuple[bytes, float]]]:
    """name -> what the client sends: (bytes, seconds to wait after them)."""
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: " + b"a" * 20 + b"\r\n\r\n"
    return {
        "nothing": [],
        "request line only": [(b"GET /healthz HTTP/1.1\r\n", 0)],
        "one byte": [(b"G", 0)],
        "drip-fed head": [(bytes([b]), 0.1) for b in head],  # 4 s in all, the timeout is 1 s
        "a second request's head on a kept-alive connection": [
            (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 0.5),
            (b"GET /healthz HTTP/1.1\r\n", 0),
        ],
        "a pipelined unfinished head": [
            (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHo", 0)
        ],
    }


def _send_slowly(url: str, parts: list[tuple[bytes, float]]) -> bytes:
    """Send each part and wait after it (the client is slow: that is the input), then read to the end."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for data, wait in parts:
                sock.sendall(data)
                time.sleep(wait)
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while part := sock.recv(65536):
                answer += part
    return answer


@pytest.mark.parametrize("name", list(_head_timeout_rows()))
def test_both_protocols_answer_a_late_head_408(toy_server: str, monkeypatch: pytest.MonkeyPatch, name: str):
    monkeypatch.setattr(serving, "HEAD_TIMEOUT_SECONDS", 1.0)
    answer = _send_slowly(toy_server, _head_timeout_rows()[name])  # the server closes: recv ends
    last = answer[answer.rfind(b"HTTP/1.1 ") :]
    assert last.startswith(b"HTTP/1.1 408 "), answer
    assert last.endswith(REQUEST_TIMEOUT), answer


def test_a_late_pipelined_head_is_408_after_the_answer_before_it_not_inside_it(
    toy_server: str, monkeypatch: pytest.MonkeyPatch
):
    """A partial request pipelined behind a response that takes longer than the head timeout (a stream):
    httptools wrote the 408 into that response (a chunked stream got ``HTTP/1.1 408`` for a chunk). The
    pipelined head's time starts when the answer before it ends."""
    monkeypatch.setattr(serving, "HEAD_TIMEOUT_SECONDS", 1.0)
    answer = _send_slowly(
        toy_server, [(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHo", 0)]
    )
    first, sep, second = answer.partition(b"HTTP/1.1 408 ")
    assert first.startswith(b"HTTP/1.1 200 ") and first.endswith(b'{"ok":true}'), answer
    assert sep and second.endswith(REQUEST_TIMEOUT), answer


def test_both_protocols_serve_a_head_completed_in_time_and_a_slow_answer(
    toy_server: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(serving, "HEAD_TIMEOUT_SECONDS", 1.0)
    just_in_time = [(b"GET /healthz HTTP/1.1\r\nHost: x\r\n", 0.6), (b"Connection: close\r\n\r\n", 0)]
    assert _send_slowly(toy_server, just_in_time).startswith(b"HTTP/1.1 200 ")
    slow = [
        (b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 0)
    ]  # the timer ended with the head
    assert _send_slowly(toy_server, slow).startswith(b"HTTP/1.1 200 ")


def _publish_head(key: str, *framing: bytes) -> bytes:
    return (
        b"POST /v1/notifications HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {key}\r\n".encode()
        + b"".join(line + b"\r\n" for line in framing)
        + b"\r\n"
    )


def test_a_body_that_stops_arriving_is_408_and_a_slow_one_is_served(start_server, acme):
    """The head timer ends with the head: a body that stopped arriving held the connection forever."""
    srv = start_server(workers=1, HTTP_BODY_TIMEOUT_SECONDS="1")
    stalled = {
        "content-length": _publish_head(acme.key, b"Content-Length: 40") + b'{"recipient":',
        "chunked": _publish_head(acme.key, b"Transfer-Encoding: chunked") + b'd\r\n{"recipient":\r\n',
        "no body byte": _publish_head(acme.key, b"Content-Length: 40"),
    }
    for request in stalled.values():
        _assert_error(_exchange(srv.url, request), 408, "request_timeout")
    body = b'{"recipient":"u1","data":1}'
    trickle = [(_publish_head(acme.key, b"Content-Length: %d" % len(body), b"Connection: close"), 0.4)]
    trickle += [(body[i : i + 9], 0.4) for i in range(0, len(body), 9)]  # 1.6 s in all, 0.4 s per read
    assert _send_slowly(srv.url, trickle).startswith(b"HTTP/1.1 201 ")
    assert srv.errors_since(0) == []
