"""The HTTP server layer: uvicorn's protocols, answering what they refuse on their own in Beacon's error shape.

uvicorn refuses a request it cannot parse before the ASGI app sees it (a ``Content-Length`` of ``-1``,
``0x1c``, ``+28`` or 23 digits, two ``Content-Length`` lines, ``Content-Length`` with chunked, a bad chunk
size, control bytes in a header value, a bad request line, headers past the parser's limit...) with a plain-text
``400 Invalid HTTP request received.``; and when the app fails before it starts a response, uvicorn answers a
plain-text ``500 Internal Server Error``. Here both are the JSON error shape (docs/errors.md): ``400
bad_request`` and ``500 internal_error``, each with ``Connection: close`` as uvicorn's own.

Two refusals h11 makes and httptools does not are added to the httptools protocol, so both parsers take the
same requests: a request line and headers of more than ``MAX_HEAD_BYTES`` (httptools buffered any size; an
8 MB header was served), and HTTP versions other than 1.0 and 1.1 (httptools served ``GET /x`` as HTTP/0.9).
An absolute-form target (``GET http://host/path``) replaces ``Host`` with the target's authority (RFC 9112
section 3.2.2), in both protocols (uvicorn's h11 protocol kept such a target as the path: a 404); a target
of another scheme or form (``ftp://host/path``) is ``400 bad_request`` (``target_problem``). A request
without ``Host``, or with two, is ``400 invalid_host`` in both (h11 refuses it itself; httptools leaves it to
the app's ``service.hosts``).

A response to an HTTP/1.0 request without ``Content-Length`` is close-delimited, as h11 does, instead of
chunked (``_close_delimited_for_http10``).

Beacon serves no WebSocket: uvicorn runs with ``ws="none"``, so an ``Upgrade: websocket`` request is an
ordinary HTTP request answered by its route (RFC 9110 section 7.8 lets a server ignore ``Upgrade``). With the
websocket protocol on (uvicorn's default when ``websockets`` is installed) the upgrade reached Django, which
refuses websocket scopes with an exception: a plain-text ``500`` and a traceback for any client's request.
uvicorn's warning for an ignored upgrade (which advises installing a WebSocket library) is logged at debug.

The protocols are uvicorn's (httptools when installed, which production has; h11 otherwise), each with those
two answers replaced; ``BeaconWorker`` is gunicorn's ``uvicorn_worker.UvicornWorker`` serving them
(``deploy/gunicorn.conf.py``'s ``worker_class``; ``make run`` uses the same config). The event loop stays
``auto`` (uvloop when installed).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import json
import re
import signal
import socket
import struct
import sys
from types import FrameType
from typing import Any

import h11
from uvicorn.protocols.http import h11_impl
from uvicorn_worker import UvicornWorker

from service.env import env_float

BAD_REQUEST = json.dumps(
    {
        "error": {
            "code": "bad_request",
            "message": "the request is not valid HTTP/1.1 (request line, headers or body framing); "
            "it was not processed",
        }
    }
).encode()
INTERNAL_ERROR = json.dumps({"error": {"code": "internal_error", "message": "internal error"}}).encode()
REQUEST_TIMEOUT = json.dumps(
    {"error": {"code": "request_timeout", "message": "the request line and headers took too long to arrive"}}
).encode()
_JSON = b"application/json"
#: Seconds a client has to send a request's line and headers, from the connection's start or the request's
#: first byte: then ``408 request_timeout`` and the connection closes (slowloris; nginx's
#: ``client_header_timeout`` is 60 s). Read here, not in Django's settings: this layer serves any ASGI app.
HEAD_TIMEOUT_SECONDS = env_float("HTTP_HEAD_TIMEOUT_SECONDS", 30.0, minimum=0.1)
#: Request line plus headers, in bytes (h11's own limit is set to the same; nginx's default is 4 x 8 KiB).
MAX_HEAD_BYTES = 64 * 1024
_VERSIONS = frozenset({"1.0", "1.1"})
_AUTHORITY_END = re.compile(rb"[/?#]")


async def _send_json_500(cycle: Any) -> None:
    """``RequestResponseCycle.send_500_response`` of both implementations, in the error shape."""
    await cycle.send(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [
                (b"content-type", _JSON),
                (b"content-length", str(len(INTERNAL_ERROR)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await cycle.send({"type": "http.response.body", "body": INTERNAL_ERROR, "more_body": False})


CYCLE_KEY = "beacon.cycle"  # scope key of the httptools cycle serving a stream (``write_nowait``)
#: Attribute of such a cycle: called once when its connection is lost (the stream closes without a task of
#: its own waiting on ``receive`` for ``http.disconnect``).
ON_DISCONNECT = "beacon_on_disconnect"


def write_nowait(cycle: Any, body: bytes) -> bool:
    """Write ``body`` as the next chunk of ``cycle``'s open chunked response at once, exactly as the cycle's
    ASGI ``send`` would, when nothing would make that ``send`` wait or refuse: ``False`` (nothing written)
    when flow control has paused writing (a client not reading), the connection is gone, or the response is
    not an open chunked one; the caller then goes through ``send``. A fan-out writes each stream's frame from
    the dispatching loop this way instead of waking each stream's task for it (docs/streaming.md)."""
    if (
        cycle.flow.write_paused
        or cycle.disconnected
        or cycle.response_complete
        or not cycle.response_started
        or cycle.chunked_encoding is not True
    ):
        return False
    try:
        cycle.transport.write(b"%x\r\n%b\r\n" % (len(body), body))
    except RuntimeError:  # the transport closed before uvicorn noticed: the stream's own send finds out
        return False
    return True


def abort_connection(cycle: Any) -> None:
    """Reset ``cycle``'s connection (TCP RST), dropping every byte not yet sent: the end for a client that
    stopped reading. A plain close (uvicorn's, or the transport's ``abort``, which closes the socket) leaves the
    kernel trying to deliver its buffered bytes to a receive window that stays shut, so the connection lingers
    on both ends; ``SO_LINGER`` with a zero timeout makes the close a reset instead (socket(7))."""
    sock = cycle.transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    cycle.transport.abort()


def _answer_500_in_shape(cycle: Any) -> None:
    """The cycle's task has not run yet when this is called: its plain-text 500 becomes the JSON one."""
    cycle.send_500_response = functools.partial(_send_json_500, cycle)


def _ignored_upgrade(protocol: Any) -> None:
    """An ``Upgrade`` header Beacon ignores (no WebSocket, no h2c): the request is served as plain HTTP."""
    protocol.logger.debug("Upgrade header ignored: the request is served as HTTP/1.1.")


class _HeadTimer:
    """``408 request_timeout`` for a request head that does not arrive within ``HEAD_TIMEOUT_SECONDS`` of
    the connection's start or the request's first byte; each protocol says when a head starts and ends."""

    _head_timer: asyncio.TimerHandle | None = None
    loop: asyncio.AbstractEventLoop
    transport: Any
    logger: Any
    server_state: Any

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]  # the protocol's, next in the MRO
        self._start_head_timer()  # a connection that sends nothing at all is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)  # type: ignore[misc]

    def _start_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(HEAD_TIMEOUT_SECONDS, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _in_request_head(self) -> bool:
        raise NotImplementedError

    def _head_timed_out(self) -> None:
        """The head did not arrive in time (slowloris): ``408 request_timeout``, connection closed."""
        self._head_timer = None
        if self._in_request_head() and not self.transport.is_closing():
            self.logger.info("Request head not received in time: 408, connection closed.")
            answer = _answer_bytes(b"408 Request Timeout", REQUEST_TIMEOUT, self.server_state.default_headers)
            self.transport.write(answer)
            self.transport.close()


def _host_refusal(problem: str) -> bytes | None:
    """The body the app gives a request without ``Host`` or with two (``service.hosts``: ``400
    invalid_host``) when h11 refused it for that reason (its message), else ``None``."""
    from service import hosts  # Django's settings are loaded by then (the first request)

    if problem == "Missing mandatory Host: header":
        error = hosts.request_problem([], "1.1")
    elif problem == "Found multiple Host: headers":
        error = hosts.request_problem([(b"host", b"x"), (b"host", b"x")], "1.1")
    else:
        return None
    return error.to_bytes() if error is not None else None


class _Connection(h11.Connection):
    """h11's server connection with the two rules the httptools protocol applies to a request line:
    a target of another form or scheme is refused (``target_problem``), and an absolute-form target's
    authority is the request's host (``absolute_form_authority``). ``refusal`` is the body of the ``400``
    when it is not ``bad_request`` (a missing or repeated ``Host``: what the app answers under httptools)."""

    refusal: bytes | None = None

    def next_event(self) -> Any:
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as exc:
            self.refusal = _host_refusal(str(exc))
            raise
        if isinstance(event, h11.Request):
            if target_problem(event.method, event.target):
                raise h11.RemoteProtocolError("request target of another form or scheme")
            authority = absolute_form_authority(event.target)
            if authority is not None:
                headers = [(n, v) for n, v in event.headers if n != b"host"] + [(b"host", authority)]
                try:
                    event = h11.Request(
                        method=event.method,
                        target=origin_form(event.target),
                        headers=headers,
                        http_version=event.http_version,
                    )
                except h11.LocalProtocolError as exc:  # an authority that is no header value
                    raise h11.RemoteProtocolError(str(exc)) from None
        return event


class H11Protocol(_HeadTimer, h11_impl.H11Protocol):
    """uvicorn's h11 protocol with JSON ``400 bad_request`` and ``500 internal_error``, and the request
    target and ``Host`` rules and the head timeout of the httptools protocol (``_Connection``,
    ``_HeadTimer``: h11 has no head timeout of its own, so a slow head held the connection forever)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = _Connection(h11.SERVER, self.conn._max_incomplete_event_size)

    def _in_request_head(self) -> bool:
        return self.conn.their_state is h11.IDLE

    def _timed_handle_events(self) -> None:
        # A head starts with the first byte while h11 waits for a request (IDLE), received now or pipelined
        # earlier; it ends when h11 leaves IDLE (a request read, or an error).
        if self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]:
            self._start_head_timer()
        self._handle_events_in_shape()
        if self.conn.their_state is not h11.IDLE:
            self._stop_head_timer()

    def _unsupported_upgrade_warning(self) -> None:
        _ignored_upgrade(self)

    def send_400_response(self, msg: str) -> None:
        body = getattr(self.conn, "refusal", None) or BAD_REQUEST
        headers = [
            (b"content-type", _JSON),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        output = self.conn.send(h11.Response(status_code=400, headers=headers, reason=b"Bad Request"))
        output += self.conn.send(h11.Data(data=body)) or b""
        output += self.conn.send(h11.EndOfMessage()) or b""
        self.transport.write(output)
        self.transport.close()

    def handle_events(self) -> None:
        self._timed_handle_events()

    def _handle_events_in_shape(self) -> None:
        # h11 stops after each request until its response is complete (PAUSED), so a call starts at most one
        # cycle, whose task is only scheduled: replacing its 500 answer here comes before the app runs.
        before = self.cycle
        super().handle_events()
        if self.cycle is not None and self.cycle is not before:
            _answer_500_in_shape(self.cycle)


def absolute_form_authority(target: bytes) -> bytes | None:
    """The authority of an absolute-form request target (``GET http://acme.example:8000/v1/docs``), else
    ``None``. RFC 9112 section 3.2.2: the server then ignores the ``Host`` header and uses the target's host,
    so the app's ``Host`` checks (``service.hosts``, ``tenant_mismatch``) see the host the request names.
    With userinfo (``http://u@h/``, which RFC 9110 section 4.2.4 forbids) the ``@`` makes it an invalid host.
    """
    scheme, sep, rest = target.partition(b"://")
    if not sep or scheme.lower() not in (b"http", b"https"):
        return None
    return _AUTHORITY_END.split(rest, maxsplit=1)[0]


def target_problem(method: bytes, target: bytes) -> bool:
    """Whether a request target is of no form Beacon serves (RFC 9112 section 3.2): origin-form
    (``/path?query``), absolute-form with the ``http`` or ``https`` scheme, and ``*`` for ``OPTIONS`` are
    served; ``ftp://host/path``, ``mailto:x``, ``*`` for ``GET`` or an authority-form target (``CONNECT``'s
    only) are ``400 bad_request``. An ``ftp`` target was served as the path it named, on the host it named."""
    if b"#" in target:  # no form has a fragment: httptools dropped it, h11 kept it in the path
        return True
    if target.startswith(b"/"):
        return False
    if target == b"*":
        return method != b"OPTIONS"
    return not absolute_form_authority(target)  # None, or empty (``http:///x``)


def origin_form(target: bytes) -> bytes:
    """The path and query of an absolute-form target: ``http://h:1/a?b`` -> ``/a?b``; ``http://h`` -> ``/``
    (RFC 9112 section 3.2.2: an empty path is ``/``)."""
    rest = target.partition(b"://")[2]
    tail = rest[len(_AUTHORITY_END.split(rest, maxsplit=1)[0]) :]
    return tail if tail.startswith(b"/") else b"/" + tail


_UNBOUNDED = 2**63  # "Content-Length" uvicorn counts down while a close-delimited body is written


def _close_delimited_for_http10(cycle: Any) -> None:
    """An HTTP/1.0 request's response without ``Content-Length`` ends when the connection closes, instead of
    uvicorn's ``Transfer-Encoding: chunked``: RFC 9112 section 6.1, a server MUST NOT send
    ``Transfer-Encoding`` to a request that does not indicate HTTP/1.1. An HTTP/1.0 client (``curl -0``, a
    proxy speaking 1.0) read the chunk sizes as body: ``d\r\n{"unread": 0}\r\n0\r\n\r\n`` is not JSON,
    and a stream's frames were cut by size lines. uvicorn's httptools cycle counts a ``Content-Length`` down
    as it writes: it is given an unbounded one, then exactly the last message's size, and HTTP/1.0 cycles
    always close the connection after the response.
    """
    original = cycle.send
    close_delimited = False

    async def send(message: Any) -> None:
        nonlocal close_delimited
        if message["type"] == "http.response.start" and not cycle.response_started:
            names = {name.lower() for name, _ in message.get("headers", ())}
            status = message["status"]
            if (
                not {b"content-length", b"transfer-encoding"} & names
                and status >= 200
                and status not in (204, 304)
            ):
                close_delimited = True
                cycle.chunked_encoding = False
                cycle.expected_content_length = _UNBOUNDED
                cycle.keep_alive = False
        elif close_delimited and message["type"] == "http.response.body" and not message.get("more_body"):
            cycle.expected_content_length = len(message.get("body", b""))
        await original(message)

    cycle.send = send


def _answer_bytes(status: bytes, body: bytes, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    content = [b"HTTP/1.1 " + status + b"\r\n"]
    for name, value in default_headers:  # Server and Date, as uvicorn's own answer
        content += [name, b": ", value, b"\r\n"]
    content += [
        b"content-type: application/json\r\n",
        b"content-length: " + str(len(body)).encode() + b"\r\n",
        b"connection: close\r\n\r\n",
        body,
    ]
    return b"".join(content)


HttpProtocol: type[Any] = H11Protocol
if importlib.util.find_spec("httptools") is not None:
    import httptools
    from uvicorn.protocols.http import httptools_impl

    #: A method token (RFC 9110 section 5.6.2) and the space after it, at the start of a request; and the
    #: start of one, all token characters so far.
    _TCHARS = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}"
    _METHOD_TOKEN = re.compile(rb"(" + _TCHARS + rb") ")
    _METHOD_START = re.compile(_TCHARS)
    #: A request line longer than this is not kept for parsing again (a method past it is a ``400``).
    MAX_REQUEST_LINE = 8192
    #: llhttp's refusals of a method: one it does not know, and the RTSP and HTTP/2 ones it knows
    #: (``DESCRIBE``, ``PRI``...) but refuses in an HTTP/1 request, once the request line is read.
    _REFUSED_METHOD_MESSAGES = frozenset(
        {"Invalid method for HTTP/x.x request", "Expected HTTP/2 Connection Preface"}
    )

    def _refused_method(error: BaseException | None) -> bool:
        if isinstance(error, httptools.HttpParserInvalidMethodError):
            return True
        return isinstance(error, httptools.HttpParserError) and str(error) in _REFUSED_METHOD_MESSAGES

    #: A method llhttp knows and no Beacon route takes: a request with a method llhttp refuses is parsed
    #: under it, then handed to the app with its own.
    STAND_IN_METHOD = b"PURGE"

    class HttpToolsProtocol(_HeadTimer, httptools_impl.HttpToolsProtocol):
        """uvicorn's httptools protocol (production's) with JSON ``400 bad_request`` and ``500
        internal_error``, a head size limit, a head timeout and HTTP/1.0 and 1.1 only."""

        _in_head = True
        _head_bytes = 0  # bytes received since the current request began, while its head is incomplete
        _exact = 0  # bytes of the current request's target and header lines, as parsed

        def _in_request_head(self) -> bool:
            return self._in_head

        def _unsupported_upgrade_warning(self) -> None:
            _ignored_upgrade(self)

        _between = True  # the parser is between requests: the next byte received starts one
        # The current request's bytes from its first one, while its request line may be unfinished and the
        # request began at the start of a read (else ``None``): where a refused method can be parsed again.
        _line_so_far: bytes | None = None
        _read_start: bytes | None = None  # ``_line_so_far`` with the current read
        _begun = 0  # requests begun in the current read
        _stand_in_for: str | None = None  # the method of the request being parsed under ``STAND_IN_METHOD``
        _held: bytes | None = None  # a request's first bytes, all of a method llhttp refused, awaiting more

        def data_received(self, data: bytes) -> None:
            if self._held is not None:  # the method goes on in this read: parse the request from its start
                data, self._held = self._held + data, None
                self.parser = httptools.HttpRequestParser(self)
                self._between = True
            if self._in_head:
                self._head_bytes += len(data)
            if self._between:
                self._line_so_far = b""
            self._read_start = None if self._line_so_far is None else self._line_so_far + data
            self._begun = 0
            super().data_received(data)  # a head completed in ``data`` resets the count (body bytes then)
            if self._stand_in_for is not None and self._read_start is not None:
                # ``send_400_response`` found a method llhttp refuses: parse the request again from its first
                # byte with a fresh parser, under a method it knows; the scope gets the real one.
                rest = self._read_start[len(self._stand_in_for) :]
                self._read_start = self._line_so_far = None
                self.parser = httptools.HttpRequestParser(self)
                super().data_received(STAND_IN_METHOD + rest)
            elif self._held is None:
                line = self._read_start
                unfinished = (
                    line is not None
                    and self._begun <= 1
                    and len(line) <= MAX_REQUEST_LINE
                    and b"\n" not in line
                )
                self._line_so_far = line if unfinished else None
            if self._in_head and self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
                self.logger.warning("Request head larger than %d bytes.", MAX_HEAD_BYTES)
                self.send_400_response("request head too large")

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._between = False
            self._begun += 1
            self._in_head, self._head_bytes, self._exact = True, 0, 0
            if self._answering():
                return  # pipelined behind a response still being sent: its time starts when that one ends
            self._start_head_timer()  # from the first byte of each request of a kept-alive connection

        def _answering(self) -> bool:
            """Whether a response is still being sent (``cycle`` is the newest request's; responses go out
            in order). A 408 written now would land inside that response: a stream's chunked body got
            ``HTTP/1.1 408 ...`` in place of a chunk when a partial request was pipelined behind it."""
            return self.cycle is not None and not self.cycle.response_complete

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._between = True

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self._bad_bytes_behind and not self._answering() and not self.transport.is_closing():
                self._bad_bytes_behind = False
                self.send_400_response("")  # every request before them has its answer now
                return
            if self._in_head and not self._answering() and not self.transport.is_closing():
                self._start_head_timer()  # a pipelined head's turn: it is read from now (as h11 does)

        def on_url(self, url: bytes) -> None:
            super().on_url(url)
            self._count(len(url))

        def on_header(self, name: bytes, value: bytes) -> None:
            # A field value excludes the white space around it (RFC 9110 section 5.5: SP and HTAB only);
            # llhttp keeps what follows it, h11 strips it: both parsers now give the app the same value.
            super().on_header(name, value.rstrip(b" \t"))
            self._count(len(name) + len(value) + 4)

        def _count(self, size: int) -> None:
            # A whole head in one read is checked here (raising makes the parser fail: uvicorn answers 400).
            self._exact += size
            if self._exact > MAX_HEAD_BYTES:
                raise ValueError("request head too large")

        def on_headers_complete(self) -> None:
            self._in_head, self._head_bytes, self._exact = False, 0, 0
            self._stop_head_timer()
            if self.parser.get_http_version() not in _VERSIONS:
                raise ValueError("only HTTP/1.0 and HTTP/1.1 are served")
            if target_problem(self.parser.get_method(), self.url):
                raise ValueError("request target of another form or scheme")
            authority = absolute_form_authority(self.url)
            hosts = sum(1 for name, _ in self.headers if name == b"host")
            # A missing (HTTP/1.1) or repeated Host stays for the app to refuse, as h11 refuses it itself.
            if authority is not None and (
                hosts == 1 or (hosts == 0 and self.parser.get_http_version() == "1.0")
            ):
                # the scope's headers are this list: the app sees the target's host
                self.headers[:] = [(n, v) for n, v in self.headers if n != b"host"] + [(b"host", authority)]
            if authority is not None:  # httptools' URL parser refuses http://host without a path
                self.url = origin_form(self.url)
            super().on_headers_complete()
            if self._stand_in_for is not None:  # the cycle's task has not run yet: it sees the real method
                self.scope["method"], self._stand_in_for = self._stand_in_for, None

        _bad_bytes_behind = False  # unparseable bytes pipelined behind a request still being answered

        def send_400_response(self, msg: str) -> None:
            if self._unknown_method():
                return  # parsed again under a stand-in method (``data_received``)
            if self.cycle is not None and not self.cycle.more_body and (self._answering() or self.pipeline):
                # Bytes the parser refuses arrived behind a whole request still being answered (pipelined):
                # its response goes out first, then this 400, which is about what followed it. Written at
                # once, it took that response's place, and the client read "not processed" for a request
                # that was (a publish stored, then retried). The parser is broken from here: what arrives
                # meanwhile fails again and is dropped. (Bytes refused inside a request, a bad chunk size
                # say, are that request's 400, at once as before.)
                self._bad_bytes_behind = True
                return
            self.transport.write(
                _answer_bytes(b"400 Bad Request", BAD_REQUEST, self.server_state.default_headers)
            )
            self.transport.close()

        def _unknown_method(self) -> bool:
            """Whether the parser refused a method (``FOO``, ``get``, RTSP's ``DESCRIBE``: llhttp knows a fixed
            list for HTTP; h11 takes any token, as RFC 9110 section 9.1 allows) of a request that began at the
            start of a read: it is then parsed again under a stand-in, and its route answers it (``405`` with
            ``Allow``, or ``404``) as any other method. A method not yet ended (``FO`` then ``O /x ...``) is
            held until it is. Called in uvicorn's ``except`` for the parser's error. A request that began
            inside a read, behind another, gives no position to restart at: that one stays a ``400``."""
            error = sys.exc_info()[1]
            if self._read_start is None or self._begun > 1 or not _refused_method(error):
                return False
            match = _METHOD_TOKEN.match(self._read_start)
            if match is not None:
                self._stand_in_for = match[1].decode("ascii")
                return True
            if _METHOD_START.fullmatch(self._read_start):
                self._held, self._read_start, self._line_so_far = self._read_start, None, None
                return True
            return False

        def connection_lost(self, exc: Exception | None) -> None:
            cycle = self.cycle
            super().connection_lost(exc)
            hook = getattr(cycle, ON_DISCONNECT, None)
            if hook is not None:
                setattr(cycle, ON_DISCONNECT, None)
                hook()

        def _start_asgi_task(self, cycle: Any, app: Any) -> None:
            # Every cycle, pipelined ones included, starts here (uvicorn 0.30+).
            _answer_500_in_shape(cycle)
            if cycle.scope["path"] == "/v1/stream" and cycle.scope["method"] == "GET":
                # The stream writes fan-out frames through ``write_nowait`` (it removes this key at its end,
                # which also breaks the scope -> cycle -> scope reference cycle).
                cycle.scope[CYCLE_KEY] = cycle
            if cycle.scope["http_version"] == "1.0" and cycle.scope["method"] != "HEAD":
                _close_delimited_for_http10(cycle)  # h11 does this on its own
            super()._start_asgi_task(cycle, app)

    HttpProtocol = HttpToolsProtocol


class BeaconWorker(UvicornWorker):
    """gunicorn's uvicorn worker serving ``HttpProtocol`` (httptools when installed, else h11), without
    WebSocket support."""

    CONFIG_KWARGS: dict[str, Any] = {
        "loop": "auto",
        "http": HttpProtocol,
        "ws": "none",  # no WebSocket route: an upgrade is served as plain HTTP (see the module docstring)
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
    }

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """The master's SIGQUIT (gunicorn's quick shutdown, on its SIGINT or SIGQUIT) is handled as Ctrl-C:
        streams closed at once, then uvicorn's shutdown (``service.streaming.drain``).

        uvicorn_worker routes SIGQUIT here, where gunicorn's base worker only sets ``alive``, which uvicorn
        never reads: the worker kept serving until the master killed it after ``graceful_timeout``
        (Kludex/uvicorn-worker#2). Before uvicorn's handlers are installed SIGINT has its default action.
        """
        super().handle_exit(sig, frame)
        signal.raise_signal(signal.SIGINT)
