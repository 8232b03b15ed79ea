"""A worker that is not live takes no slots, and a registration rewrites the worker's rows from its open streams.

Slot rows count only while their worker is live (``beacon_live_workers``, 0001). While a worker's liveness
connection was being re-established (a listener killed, a database restart), its own rows counted for no one,
and neither did the grants it made meanwhile: connects in that window were granted without bound (a breaker
pass: a recipient at limit 3 held 18 streams after one listener kill, 191 with repeated kills), and the excess
stayed after it registered again (docs/streaming.md, "Slots").

- ``beacon_slots`` (same signature, same answers otherwise) still applies the batch's releases, then answers
  ``not_live`` to every acquisition of the batch when ``p_worker`` is not live at the moment the batch reads
  the live workers (under its tenants' locks, the read its counts use): the refusal is decided in the
  statement that would have granted, so nothing can fall between a check and a grant.
- ``beacon_register_worker(p_worker, p_pid, p_tenant, p_recipient, p_count)`` registers like the two-argument
  function (0005, which stays for workers of the previous release during a rolling deploy) and then replaces
  every row of ``p_worker`` by the counts given: the worker's open streams per (tenant, recipient). The counts
  then never depend on what happened to the rows while the worker was not live (unlogged tables emptied by a
  crash restart, rows deleted with a registration older than a day, releases applied twice or never). Answers
  whether ``p_worker`` is live once registered (``false``: ``p_pid`` is already gone).
"""

import importlib

from django.db import migrations

_0003 = importlib.import_module("service.streaming.migrations.0003_slots_set_based")

LIVE_READ = "    live := ARRAY(SELECT id FROM beacon_live_workers());\n"
NOT_LIVE = LIVE_READ + (
    "    IF NOT (p_worker = ANY(live)) THEN  -- its grants would count for no one (0006)\n"
    "        RETURN array_fill('not_live'::text, ARRAY[array_length(p_tenant, 1)]);\n"
    "    END IF;\n"
)

assert _0003.SQL.count(LIVE_READ) == 1
SLOTS = _0003.SQL.replace(LIVE_READ, NOT_LIVE)

REGISTER = r"""
CREATE FUNCTION beacon_register_worker(p_worker text, p_pid integer, p_tenant bigint[],
                                       p_recipient text[], p_count integer[])
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM beacon_register_worker(p_worker, p_pid);
    DELETE FROM beacon_slot_tenant WHERE worker = p_worker;
    DELETE FROM beacon_slot_recipient WHERE worker = p_worker;
    INSERT INTO beacon_slot_tenant
        SELECT a.t, p_worker, sum(a.n) FROM unnest(p_tenant, p_count) AS a(t, n)
        GROUP BY a.t HAVING sum(a.n) > 0 ORDER BY a.t;
    INSERT INTO beacon_slot_recipient
        SELECT a.t, a.r, p_worker, sum(a.n) FROM unnest(p_tenant, p_recipient, p_count) AS a(t, r, n)
        GROUP BY a.t, a.r HAVING sum(a.n) > 0 ORDER BY a.t, a.r;
    RETURN EXISTS (SELECT 1 FROM beacon_live_workers() l WHERE l.id = p_worker);
END
$$;
"""

SQL = SLOTS + REGISTER
REVERSE = (
    "DROP FUNCTION beacon_register_worker(text, integer, bigint[], text[], integer[]);\n" + _0003.SQL
)


class Migration(migrations.Migration):
    dependencies = [("streaming", "0005_register_keeps_slots")]
    operations = [migrations.RunSQL(SQL, REVERSE)]
