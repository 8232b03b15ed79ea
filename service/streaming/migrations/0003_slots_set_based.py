"""``beacon_slots`` decides a batch that fits its limits in a few set-based statements.

The 0002 function decides acquisitions one by one: per connect, two ``sum()`` reads and two upserts, so a
storm's batch of 40 took 3.6 ms of PostgreSQL's CPU (most of the database's share of a reconnect storm, on the
same cores as the workers). When every tenant of the batch has room for all its acquisitions and every
recipient for all of its own (counting live workers' slots, as before, under the same tenant locks), deciding
them one by one would grant every one: the batch is granted at once, with one upsert per table. Otherwise the
0002 loop decides it, in order, exactly as before. Same signature, same answers.
"""

import importlib

from django.db import migrations

_0002 = importlib.import_module("service.streaming.migrations.0002_slot_batches")

FAST_PATH = """
    SELECT bool_and(t.used + t.asked <= t.max_t) INTO fits FROM (
        SELECT a.t, count(*) AS asked, min(a.mt) AS max_t,
               (SELECT coalesce(sum(s.count), 0) FROM beacon_slot_tenant s
                 WHERE s.tenant_id = a.t AND s.worker = ANY(live)) AS used
        FROM unnest(p_tenant, p_max_tenant) AS a(t, mt) GROUP BY a.t) t;
    IF fits THEN
        SELECT bool_and(r.used + r.asked <= r.max_r) INTO fits FROM (
            SELECT a.t, a.r, count(*) AS asked, min(a.mr) AS max_r,
                   (SELECT coalesce(sum(s.count), 0) FROM beacon_slot_recipient s
                     WHERE s.tenant_id = a.t AND s.recipient = a.r AND s.worker = ANY(live)) AS used
            FROM unnest(p_tenant, p_recipient, p_max_recipient) AS a(t, r, mr) GROUP BY a.t, a.r) r;
    END IF;
    IF fits THEN
        INSERT INTO beacon_slot_tenant
            SELECT a.t, p_worker, count(*) FROM unnest(p_tenant) AS a(t) GROUP BY a.t ORDER BY a.t
            ON CONFLICT (tenant_id, worker) DO UPDATE SET count = beacon_slot_tenant.count + excluded.count;
        INSERT INTO beacon_slot_recipient
            SELECT a.t, a.r, p_worker, count(*) FROM unnest(p_tenant, p_recipient) AS a(t, r)
            GROUP BY a.t, a.r ORDER BY a.t, a.r
            ON CONFLICT (tenant_id, recipient, worker)
            DO UPDATE SET count = beacon_slot_recipient.count + excluded.count;
        RETURN array_fill('ok'::text, ARRAY[array_length(p_tenant, 1)]);
    END IF;
"""

LOOP_START = "    FOR i IN 1 .. array_length(p_tenant, 1) LOOP"

assert LOOP_START in _0002.SQL and "    i integer;\n" in _0002.SQL
SQL = (
    _0002.SQL.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")
    .replace("    i integer;\n", "    i integer;\n    fits boolean;\n")
    .replace(LOOP_START, FAST_PATH + LOOP_START)
)
REVERSE = _0002.SQL.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")


class Migration(migrations.Migration):
    dependencies = [("streaming", "0002_slot_batches")]
    operations = [migrations.RunSQL(SQL, REVERSE)]
