"""The stream side's queries: schema-qualified SQL on a small async pool, never the thread's tenant.

A stream borrows a connection only for its replay (and its slot), then gives it back: open streams hold
no connection while they wait.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from service import pgarray
from service.broker.base import Row
from service.observability import metrics
from service.timefmt import rfc3339

_COLUMNS = sql.SQL(
    "id, recipient, topic, broadcast, event, data::text, created_at, extract(epoch FROM expires_at)::float8"
)


def _table(schema: str) -> sql.Composed:
    return sql.SQL("{}.beacon_notification").format(sql.Identifier(schema))


def _bounds_query(schema: str) -> sql.Composed:
    return sql.SQL("SELECT max(id), min(id) FROM {}").format(_table(schema))


def opening_reads(schema: str) -> sql.Composed:
    """What opening streams need of one tenant, with one array parameter (the recipients,
    ``pgarray.literal``): a ``UNION ALL`` part of the batched slot statement (``service/streaming/slots.py``),
    and a database replay's first statement. Rows (``read_openings`` reads them): a row
    ``(schema, NULL, newest id, oldest id)`` (``NULL`` ids when the table is empty), then ``(schema, recipient,
    unread count, NULL)`` for each recipient that has any. No rows at all for a tenant whose schema is gone
    (migration ``streaming/0004``): one tenant never fails the statement of another's connects."""
    return sql.SQL(
        "SELECT {name}, r.recipient, r.n, r.oldest, NULL FROM beacon_opening_reads({name}, %s::text[]) r"
    ).format(name=sql.Literal(schema))


def read_openings(
    rows: Iterable[Sequence[Any]],
) -> tuple[dict[str, tuple[int, int | None]], dict[tuple[str, str], int]]:
    """``opening_reads`` rows as ``({schema: (newest id or 0, oldest id or None)}, {(schema, recipient):
    unread count})``; a schema whose tenant is gone has no entry, a recipient without unread rows none."""
    bounds: dict[str, tuple[int, int | None]] = {}
    unread: dict[tuple[str, str], int] = {}
    for schema, recipient, number, oldest, *_ in rows:
        if recipient is None:
            bounds[schema] = (int(number or 0), oldest)
        else:
            unread[schema, recipient] = int(number)
    return bounds, unread


def _row(values: Sequence[Any]) -> Row:
    id_, recipient, topic, broadcast, event, data_json, created_at, expires_at = values
    return Row(id_, recipient, topic, broadcast, event, rfc3339(created_at), data_json, expires_at)


class Store:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    def _connection(self, kind: str) -> Any:
        """A pooled connection for one statement of ``kind``, counted (``beacon_stream_queries_total``)."""
        metrics.STREAM_QUERIES.labels(kind).inc()
        return self.pool.connection()

    async def bounds(self, schema: str) -> tuple[int, int | None]:
        """``(newest id or 0, oldest retained id or None)``: both are index-only min/max lookups."""
        async with self._connection("bounds") as conn:
            cur = await conn.execute(_bounds_query(schema))
            newest, oldest = await cur.fetchone() or (None, None)
        return int(newest or 0), oldest

    async def replay(
        self, schema: str, after: int, recipient: str, topics: Sequence[str], limit: int
    ) -> tuple[int, int | None, int, list[Row]]:
        """``(newest id or 0, oldest retained id or None, recipient's unread count, rows)``: up to ``limit``
        rows for this subscriber with ids above ``after``, in id order, on one connection."""
        query = sql.SQL(
            "SELECT {cols} FROM {t} WHERE id > %s AND expires_at > now() "
            "AND (recipient = %s OR broadcast OR topic = ANY(%s)) ORDER BY id LIMIT %s"
        ).format(cols=_COLUMNS, t=_table(schema))
        async with self._connection("replay") as conn:
            cur = await conn.execute(opening_reads(schema), [pgarray.literal([recipient])])
            bounds, unread = read_openings(await cur.fetchall())
            cur = await conn.execute(query, [after, recipient, list(topics), limit])
            rows = [_row(r) for r in await cur.fetchall()]
        newest, oldest = bounds.get(schema, (0, None))
        return newest, oldest, unread.get((schema, recipient), 0), rows

    async def range(self, schema: str, low: int, high: int) -> list[Row]:
        """Bodies of an announcement too large for its payload: fetched once per process."""
        query = sql.SQL("SELECT {cols} FROM {t} WHERE id BETWEEN %s AND %s ORDER BY id").format(
            cols=_COLUMNS, t=_table(schema)
        )
        async with self._connection("range") as conn:
            cur = await conn.execute(query, [low, high])
            return [_row(r) for r in await cur.fetchall()]

    async def after(self, schema: str, after: int, limit: int) -> list[Row]:
        """Every row of the tenant above ``after`` (catch-up after the listener reconnects)."""
        query = sql.SQL(
            "SELECT {cols} FROM {t} WHERE id > %s AND expires_at > now() ORDER BY id LIMIT %s"
        ).format(cols=_COLUMNS, t=_table(schema))
        async with self._connection("catch_up") as conn:
            cur = await conn.execute(query, [after, limit])
            return [_row(r) for r in await cur.fetchall()]

    async def between(self, schema: str, after: int, upto: int, limit: int) -> list[Row]:
        """Up to ``limit`` live rows with ``after < id <= upto``, in id order (filling a hole in the ids)."""
        query = sql.SQL(
            "SELECT {cols} FROM {t} WHERE id > %s AND id <= %s AND expires_at > now() ORDER BY id LIMIT %s"
        ).format(cols=_COLUMNS, t=_table(schema))
        async with self._connection("fill") as conn:
            cur = await conn.execute(query, [after, upto, limit])
            return [_row(r) for r in await cur.fetchall()]

    async def unread_counts(self, schema: str, recipients: Iterable[str]) -> dict[str, int]:
        wanted = list(recipients)
        query = sql.SQL(
            "SELECT recipient, count(*) FROM {t} WHERE recipient = ANY(%s::text[]) AND read_at IS NULL "
            "AND expires_at > now() GROUP BY recipient"
        ).format(t=_table(schema))
        async with self._connection("unread") as conn:
            cur = await conn.execute(query, [pgarray.literal(wanted)])
            found = {r: int(c) for r, c in await cur.fetchall()}
        return {r: found.get(r, 0) for r in wanted}

    async def acquire_slot(
        self, tenant_id: int, recipient: str, worker: str, max_tenant: int, max_recipient: int
    ) -> str:
        async with self._connection("slot") as conn:
            cur = await conn.execute(
                "SELECT beacon_acquire_slot(%s, %s, %s, %s, %s)",
                [tenant_id, recipient, worker, max_tenant, max_recipient],
            )
            row = await cur.fetchone()
        return str(row[0]) if row else "ok"

    async def release_slot(self, tenant_id: int, recipient: str, worker: str) -> None:
        async with self._connection("slot") as conn:
            await conn.execute("SELECT beacon_release_slot(%s, %s, %s)", [tenant_id, recipient, worker])

    async def tenant_states(self, schemas: Iterable[str]) -> dict[str, tuple[bool, str]]:
        """``{schema: (is_active, signing_secret)}`` for the tenants of ``schemas`` that still exist (a deleted
        tenant is absent). One statement on the ``public`` tenants table."""
        async with self._connection("tenants") as conn:
            cur = await conn.execute(
                "SELECT schema_name, is_active, signing_secret FROM public.tenants_tenant"
                " WHERE schema_name = ANY(%s)",
                [list(schemas)],
            )
            return {schema: (active, secret) for schema, active, secret in await cur.fetchall()}

    async def ping(self) -> None:
        async with self._connection("ping") as conn:
            await conn.execute("SELECT 1")


def newest_ids_query(schemas: Sequence[str]) -> sql.Composed:
    """One statement for the newest id of each schema: ``(schema, max id or NULL)`` rows, index-only lookups."""
    return sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT {name}, (SELECT max(id) FROM {t})").format(name=sql.Literal(s), t=_table(s))
        for s in schemas
    )
