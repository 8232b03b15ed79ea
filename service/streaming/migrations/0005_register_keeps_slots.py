"""``beacon_register_worker`` no longer deletes the slots of workers that are only momentarily not live.

0001 deleted, at every registration, the slot rows of every worker not live at that moment. A database blip
terminates every worker's listener: the first worker to re-register then deleted the rows of the others, whose
listeners were still reconnecting while their streams stayed open, and those streams stopped counting for
good (a recipient could go over its limit). Rows of a worker that is not live are not counted anyway
(``beacon_live_workers``), so they only need deleting once the worker itself is forgotten: when its
registration row is gone (removed a day after the worker registered, if it is not live then).
"""

from django.db import migrations

_BODY = """
CREATE OR REPLACE FUNCTION beacon_register_worker(p_worker text, p_pid integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO beacon_stream_worker (id, listener_pid, listener_started, seen_at)
        SELECT p_worker, pid, backend_start, now() FROM pg_stat_activity WHERE pid = p_pid
        ON CONFLICT (id) DO UPDATE SET listener_pid = EXCLUDED.listener_pid,
            listener_started = EXCLUDED.listener_started, seen_at = now();
    DELETE FROM beacon_stream_worker w WHERE w.id <> p_worker
        AND w.id <> ALL(ARRAY(SELECT id FROM beacon_live_workers())) AND w.seen_at < now() - interval '1 day';
    %s
END
$$;
"""
SQL = _BODY % (
    "DELETE FROM beacon_slot_tenant s WHERE NOT EXISTS "
    "(SELECT 1 FROM beacon_stream_worker w WHERE w.id = s.worker);\n"
    "    DELETE FROM beacon_slot_recipient s WHERE NOT EXISTS "
    "(SELECT 1 FROM beacon_stream_worker w WHERE w.id = s.worker);"
)
REVERSE = _BODY % (
    "DELETE FROM beacon_slot_tenant WHERE worker <> ALL(ARRAY(SELECT id FROM beacon_live_workers()));\n"
    "    DELETE FROM beacon_slot_recipient WHERE worker <> ALL(ARRAY(SELECT id FROM beacon_live_workers()));"
)


class Migration(migrations.Migration):
    dependencies = [("streaming", "0004_opening_reads")]
    operations = [migrations.RunSQL(SQL, REVERSE)]
