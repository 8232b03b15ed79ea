"""The announcement's wire format, defined once: encoded and decoded here, and built in SQL from here.

Shape (compact JSON): ``{"s": schema, "t": sent_at, "n": [[id, recipient, topic, broadcast, event,
created_at, data], …]}`` with rows inline while the payload fits ``MAX_PAYLOAD`` bytes, else
``{"s", "t", "r": [first_id, last_id]}`` and each process fetches the rows once; ``"u": {recipient: count}``
carries unread counts after a read change; ``"c": reason`` ends every open stream of the tenant (secret rotated,
tenant deactivated or deleted). ``beacon_publish`` (migration ``notifications/0002``) builds the
same JSON inside the publishing transaction from :func:`plpgsql_announce`, so PostgreSQL's NOTIFY and a
Python broker send identical announcements (``tests/test_broker.py`` checks that both decode alike).
"""

from __future__ import annotations

import json
import time
from typing import Any

from service.broker.base import Announcement, Row

#: PostgreSQL refuses NOTIFY payloads of 8000 bytes or more; Redis has no such limit but shares the format.
MAX_PAYLOAD = 7900

# Keys of the announcement object.
SCHEMA, SENT_AT, ROWS, RANGE, UNREAD = "s", "t", "n", "r", "u"
CLOSE = "c"  # a close reason: every open stream of the tenant ends (tenants/lifecycle.py)

#: One row's array: (field, SQL expression inside ``beacon_publish``). The order is the wire order.
ROW_FIELDS: tuple[tuple[str, str], ...] = (
    ("id", "x.id"),
    ("recipient", "x.r"),
    ("topic", "x.t"),
    ("broadcast", "x.b::integer"),
    ("event", "x.e"),
    ("created_at", "p_created"),
    ("data_json", "x.d"),
)


def _row_array(row: Row) -> list[Any]:
    return [int(getattr(row, name)) if name == "broadcast" else getattr(row, name) for name, _ in ROW_FIELDS]


def encode(announcement: Announcement) -> str:
    """The payload: compact JSON, rows inline when they fit, else an id range."""
    head: dict[str, Any] = {SCHEMA: announcement.schema, SENT_AT: announcement.sent_at or time.time()}
    if announcement.unread:
        head[UNREAD] = announcement.unread
    if announcement.close:
        head[CLOSE] = announcement.close
    if not announcement.rows:
        if announcement.id_range is not None:
            head[RANGE] = list(announcement.id_range)
        return json.dumps(head, separators=(",", ":"))
    payload = json.dumps({**head, ROWS: [_row_array(r) for r in announcement.rows]}, separators=(",", ":"))
    if len(payload.encode()) <= MAX_PAYLOAD:
        return payload
    ids = [r.id for r in announcement.rows]
    head[RANGE] = [min(ids), max(ids)]
    return json.dumps(head, separators=(",", ":"))


def decode(payload: str | bytes) -> Announcement:
    """Parse a payload; raises ``ValueError``, ``KeyError``, ``IndexError`` or ``TypeError`` when malformed."""
    message = json.loads(payload)
    names = [name for name, _ in ROW_FIELDS]
    rows = []
    for values in message.get(ROWS, ()):
        fields = dict(zip(names, values, strict=True))
        fields["broadcast"] = bool(fields["broadcast"])
        rows.append(Row(**fields))
    id_range = (int(message[RANGE][0]), int(message[RANGE][1])) if RANGE in message else None
    return Announcement(
        schema=str(message[SCHEMA]),
        rows=tuple(rows),
        id_range=id_range,
        unread=message.get(UNREAD) or {},
        sent_at=float(message.get(SENT_AT, 0.0)),
        close=str(message[CLOSE]) if message.get(CLOSE) else None,
    )


def plpgsql_announce() -> str:
    """The PL/pgSQL block of ``beacon_publish`` that NOTIFYs this format on ``p_channel`` when it is set.

    Inputs of the function it relies on: ``ids`` (the inserted ids, ascending), the row arrays ``p_recipient``,
    ``p_topic``, ``p_broadcast``, ``p_event``, ``p_data``, and ``p_created``, ``p_schema``, ``p_sent_at``.
    """
    row = ", ".join(expression for _, expression in ROW_FIELDS)
    return f"""
    IF p_channel IS NOT NULL THEN
        SELECT json_build_object('{SCHEMA}', p_schema, '{SENT_AT}', p_sent_at, '{ROWS}',
                   json_agg(json_build_array({row}) ORDER BY x.id))::text
            INTO payload
            FROM (SELECT unnest(ids) AS id, unnest(p_recipient) AS r, unnest(p_topic) AS t,
                         unnest(p_broadcast) AS b, unnest(p_event) AS e, unnest(p_data) AS d) AS x;
        IF octet_length(payload) > {MAX_PAYLOAD} THEN
            payload := json_build_object('{SCHEMA}', p_schema, '{SENT_AT}', p_sent_at,
                                         '{RANGE}', json_build_array(ids[1], ids[array_length(ids, 1)]))::text;
        END IF;
        PERFORM pg_notify(p_channel, payload);
    END IF;"""
