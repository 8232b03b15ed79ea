"""Server-Sent Events framing as pure functions (bytes in, bytes out; no I/O).

A frame is ``field: value`` lines ending in a blank line. Only CR, LF and CRLF end a line in an event stream
(WHATWG HTML, "Parsing an event stream"), so values are split on exactly those: never with ``str.splitlines``,
which also splits on U+2028, U+2029, U+0085, FF, VT and the separators U+001C-U+001E and would cut a JSON
string holding them over two ``data`` lines. JSON from ``json.dumps`` holds no raw CR or LF; ``data`` is still
split so no caller can smuggle a field into the stream.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

PING = b": ping\n\n"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # the only end-of-line sequences of an event stream


def split_lines(value: str) -> list[str]:
    """``value`` cut at CRLF, CR and LF only; a trailing break keeps its empty last line, so a client that
    joins ``data`` lines with LF gets the value back (with CR and CRLF read as LF)."""
    return _LINE_BREAK.split(value)


def _lines(field: bytes, value: str) -> bytes:
    return b"".join(field + b": " + line.encode() + b"\n" for line in split_lines(value))


def event(data: str, *, id: int | None = None, name: str | None = None) -> bytes:
    """One event; ``id`` and ``name`` lines only when given (a nameless event reaches ``onmessage``)."""
    out = b""
    if id is not None:
        out += b"id: " + str(id).encode() + b"\n"
    if name is not None:
        if _LINE_BREAK.search(name):
            raise ValueError("event names are single-line")
        out += b"event: " + name.encode() + b"\n"
    return out + _lines(b"data", data) + b"\n"


def retry(milliseconds: int) -> bytes:
    return b"retry: " + str(int(milliseconds)).encode() + b"\n\n"


def comment(text: str) -> bytes:
    return b"".join(b": " + line.encode() + b"\n" for line in split_lines(text)) + b"\n"


def control(name: str, payload: dict[str, Any]) -> bytes:
    """A ``beacon.*`` control event: never an ``id`` line, so it never moves the client's Last-Event-ID."""
    return event(json.dumps(payload, separators=(",", ":")), name=name)


@functools.lru_cache(maxsize=512)
def unread(count: int) -> bytes:
    """``beacon.unread`` with a recipient's count: sent on every connect and after new rows, and the counts
    are small numbers, so each frame is built once (it was 4 % of a reconnect storm's CPU)."""
    return control("beacon.unread", {"unread": count})


def notification_json(
    id: int, event_name: str | None, data_json: str, recipient: str | None, topic: str | None, created_at: str
) -> str:
    """The ``data`` of a notification event, built around the already-encoded body (no re-encoding)."""
    dumps = json.dumps
    return (
        f'{{"id":"{id}","event":{dumps(event_name)},"data":{data_json},'
        f'"recipient":{dumps(recipient)},"topic":{dumps(topic)},"created_at":"{created_at}"}}'
    )


def notification(
    id: int, event_name: str | None, data_json: str, recipient: str | None, topic: str | None, created_at: str
) -> bytes:
    """A notification's event. A stored name that is not one line (before the fix of ``validation.EVENT_RE``
    a name could end in a newline) gets no ``event:`` line, so the row is still delivered, as an unnamed event
    whose ``data`` names it: raising here broke every replay of the row and the listener's dispatch."""
    data = notification_json(id, event_name, data_json, recipient, topic, created_at)
    name = None if event_name is None or _LINE_BREAK.search(event_name) else event_name
    return event(data, id=id, name=name)
