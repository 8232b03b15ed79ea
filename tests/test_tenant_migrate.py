"""A tenant schema made by ``tenants.migrate`` (shared apps' migrations recorded, not replayed) is the schema
Django's own ``migrate`` makes: the same tables, columns, indexes, constraints, functions and triggers, and
the same ``django_migrations`` rows."""

from __future__ import annotations

import io
import os
import uuid

import psycopg
from django.core.management import call_command
from django.db.migrations.loader import MigrationLoader
from django.test import override_settings

DJANGO_MIGRATE = "django.core.management.commands.migrate.Command"

#: What a schema holds, with its own name written as ``S`` (each row's text may name it).
CATALOG = """
SELECT 'relation', relname, relkind::text FROM pg_class WHERE relnamespace = %(s)s::text::regnamespace
UNION ALL
SELECT 'column', table_name || '.' || column_name,
       concat_ws(' ', data_type, is_nullable, replace(column_default, %(s)s::text, 'S'), ordinal_position)
  FROM information_schema.columns WHERE table_schema = %(s)s::text
UNION ALL
SELECT 'index', indexname, replace(indexdef, %(s)s::text, 'S') FROM pg_indexes WHERE schemaname = %(s)s::text
UNION ALL
SELECT 'constraint', conrelid::regclass::text || ' ' || conname, pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace = %(s)s::text::regnamespace
UNION ALL
SELECT 'function', proname, replace(pg_get_functiondef(oid), %(s)s::text, 'S')
  FROM pg_proc WHERE pronamespace = %(s)s::text::regnamespace
UNION ALL
SELECT 'trigger', tgname, replace(pg_get_triggerdef(t.oid), %(s)s::text, 'S')
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE c.relnamespace = %(s)s::text::regnamespace AND NOT t.tgisinternal
"""


def _catalog(conn: psycopg.Connection, schema: str) -> list[tuple[str, str, str]]:
    rows = conn.execute(CATALOG, {"s": schema}).fetchall()
    # A constraint's table is printed schema-qualified unless the schema is on the search_path.
    return sorted((kind, name.replace(f"{schema}.", "S."), text) for kind, name, text in rows)


def _recorded(conn: psycopg.Connection, schema: str) -> set[tuple[str, str]]:
    return set(conn.execute(f'SELECT app, name FROM "{schema}".django_migrations').fetchall())


def test_a_tenant_schema_is_the_one_djangos_migrate_makes(make_tenant):
    with override_settings(TENANT_BASE_MIGRATE_COMMAND=DJANGO_MIGRATE):
        theirs, _ = make_tenant()
    ours, _ = make_tenant()
    with psycopg.connect(os.environ["BEACON_TEST_DATABASE_URL"], autocommit=True) as conn:
        expected = _catalog(conn, theirs.schema_name)
        assert {kind for kind, _name, _text in expected} >= {
            "relation",
            "column",
            "index",
            "constraint",
            "function",
        }
        assert _catalog(conn, ours.schema_name) == expected
        every_migration = set(MigrationLoader(None, ignore_no_migrations=True).graph.nodes)
        assert _recorded(conn, theirs.schema_name) == _recorded(conn, ours.schema_name) == every_migration


def test_migrate_schemas_records_missing_shared_migrations_and_changes_nothing_else(make_tenant):
    tenant, _ = make_tenant()
    with psycopg.connect(os.environ["BEACON_TEST_DATABASE_URL"], autocommit=True) as conn:
        before, recorded = _catalog(conn, tenant.schema_name), _recorded(conn, tenant.schema_name)
        # As after an upgrade that brings new migrations of shared apps: they are not in this schema yet.
        conn.execute(
            f"DELETE FROM \"{tenant.schema_name}\".django_migrations WHERE app IN ('admin', 'sessions')"
        )
        out = io.StringIO()
        call_command("migrate_schemas", schema_name=tenant.schema_name, interactive=False, stdout=out)
        assert "FAKED" in out.getvalue() and "admin.0001_initial" in out.getvalue()
        assert _recorded(conn, tenant.schema_name) == recorded
        assert _catalog(conn, tenant.schema_name) == before


def test_run_syncdb_on_a_new_schema_takes_djangos_path():
    """``--run-syncdb`` cannot be combined with an app, so it is one of the options that keep Django's own
    command: a bare schema comes out as Django's command makes it."""
    schemas = [f"t_syncdb_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    with psycopg.connect(os.environ["BEACON_TEST_DATABASE_URL"], autocommit=True) as conn:
        try:
            for schema, command in zip(schemas, (DJANGO_MIGRATE, "tenants.migrate.Command"), strict=True):
                conn.execute(f'CREATE SCHEMA "{schema}"')
                with override_settings(TENANT_BASE_MIGRATE_COMMAND=command):
                    call_command(
                        "migrate_schemas", schema_name=schema, run_syncdb=True, interactive=False, verbosity=0
                    )
            assert _catalog(conn, schemas[1]) == _catalog(conn, schemas[0])
            assert _recorded(conn, schemas[1]) == _recorded(conn, schemas[0])
        finally:
            for schema in schemas:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
