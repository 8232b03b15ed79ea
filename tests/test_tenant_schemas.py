"""The suite's tenants get their schemas by replaying the statements of one real creation
(``tests/conftest.py``, ``SchemaReplay``): a replayed schema must be the schema ``migrate_schemas`` makes."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import connection

#: Everything a tenant schema holds that the code depends on, with the schema's name written as ``<schema>``.
CATALOGUE = {
    "columns": """
        SELECT table_name, column_name, data_type, character_maximum_length, is_nullable, column_default,
               is_identity, identity_generation
        FROM information_schema.columns WHERE table_schema = %(schema)s""",
    "constraints": """
        SELECT cl.relname, co.conname, co.contype, pg_get_constraintdef(co.oid)
        FROM pg_constraint co JOIN pg_class cl ON cl.oid = co.conrelid
        WHERE co.connamespace = %(schema)s::regnamespace""",
    "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = %(schema)s",
    "functions": """
        SELECT proname, pg_get_function_identity_arguments(oid), pg_get_functiondef(oid), proconfig::text
        FROM pg_proc WHERE pronamespace = %(schema)s::regnamespace""",
    "relations": "SELECT relname, relkind FROM pg_class WHERE relnamespace = %(schema)s::regnamespace",
    "triggers": """
        SELECT tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        WHERE c.relnamespace = %(schema)s::regnamespace AND NOT t.tgisinternal""",
}


def _catalogue(schema: str) -> dict[str, list[tuple[Any, ...]]]:
    found: dict[str, list[tuple[Any, ...]]] = {}
    with connection.cursor() as cursor:
        for name, sql in CATALOGUE.items():
            cursor.execute(sql, {"schema": schema})
            found[name] = sorted(
                tuple(str(v).replace(schema, "<schema>") if v is not None else None for v in row)
                for row in cursor.fetchall()
            )
        cursor.execute(f'SELECT app, name FROM "{schema}".django_migrations ORDER BY app, name')
        found["migrations"] = cursor.fetchall()
    return found


def test_a_replayed_tenant_schema_equals_a_migrated_one(make_tenant):
    from tenants.models import Tenant

    migrated = Tenant.objects.create(slug=f"migrated-{uuid.uuid4().hex[:10]}")  # the real path
    replayed, _key = make_tenant()
    want, got = _catalogue(migrated.schema_name), _catalogue(replayed.schema_name)
    assert all(rows for name, rows in want.items() if name != "triggers")  # there are no triggers today
    assert ("beacon_notification", "r") in want["relations"]
    assert any(row[0] == "beacon_publish" and "<schema>" in row[3] for row in want["functions"])
    assert got == want
