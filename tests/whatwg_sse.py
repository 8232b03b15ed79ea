"""An independent event-stream parser, written from the WHATWG HTML standard, for tests.

https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation : UTF-8 decode
(a leading BOM dropped), lines end at CRLF, LF or CR only, a blank line dispatches, ``:`` starts a comment,
the first ``:`` splits field and value (one leading space dropped), ``data`` appends value + LF, ``id`` is
ignored when it holds NUL, ``retry`` takes ASCII digits only, an unterminated last event is discarded.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    type: str
    data: str
    last_event_id: str


@dataclass
class Parsed:
    events: list[Event]
    retry: int | None
    last_event_id: str


def _lines(text: str) -> tuple[list[str], str]:
    """Complete lines (terminated by CRLF, LF or CR) and the unterminated rest."""
    lines: list[str] = []
    start = i = 0
    while i < len(text):
        char = text[i]
        if char == "\r":
            lines.append(text[start:i])
            i += 2 if text[i + 1 : i + 2] == "\n" else 1
            start = i
        elif char == "\n":
            lines.append(text[start:i])
            i += 1
            start = i
        else:
            i += 1
    return lines, text[start:]


def parse(stream: bytes) -> Parsed:
    text = stream.decode("utf-8", errors="replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines, _unterminated = _lines(text)
    events: list[Event] = []
    data = ""
    event_type = ""
    last_event_id = ""
    retry: int | None = None
    for line in lines:
        if line == "":
            if data == "":
                event_type = ""
                continue
            if data.endswith("\n"):
                data = data[:-1]
            events.append(Event(event_type or "message", data, last_event_id))
            data = ""
            event_type = ""
            continue
        if line.startswith(":"):
            continue
        if ":" in line:
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
        else:
            name, value = line, ""
        if name == "event":
            event_type = value
        elif name == "data":
            data += value + "\n"
        elif name == "id" and "\x00" not in value:
            last_event_id = value
        elif name == "retry" and value and all("0" <= c <= "9" for c in value):
            retry = int(value)
    return Parsed(events, retry, last_event_id)
