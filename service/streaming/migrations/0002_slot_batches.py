"""Slots in batches: one statement takes (and gives back) the slots of many connects of one worker.

``beacon_slots`` first applies the worker's pending releases (its own rows: no other worker writes them), then
takes each distinct tenant's slot lock in ascending order (no deadlock between two workers' batches) and
decides the acquisitions in the order given, counting only live workers' slots (``beacon_live_workers``, read
once per batch) and the grants made earlier in the same batch. The limits are exact: a batch holds its
tenants' locks until it commits, so two workers' batches for one tenant are decided one after the other.
The per-connect functions of 0001 stay for workers of the previous release during a rolling deploy: both take
the same lock and count the same rows.
"""

from django.db import migrations

SQL = r"""
CREATE FUNCTION beacon_slots(p_worker text, p_release_tenant bigint[], p_release_recipient text[],
                             p_tenant bigint[], p_recipient text[], p_max_tenant integer[],
                             p_max_recipient integer[])
RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    live text[];
    outcome text[] := ARRAY[]::text[];
    lock_tenant bigint;
    used bigint;
    i integer;
BEGIN
    IF coalesce(array_length(p_release_tenant, 1), 0) > 0 THEN
        UPDATE beacon_slot_tenant s SET count = greatest(s.count - r.n, 0)
            FROM (SELECT u.t, count(*) AS n FROM unnest(p_release_tenant) AS u(t) GROUP BY u.t) r
            WHERE s.tenant_id = r.t AND s.worker = p_worker;
        UPDATE beacon_slot_recipient s SET count = s.count - r.n
            FROM (SELECT u.t, u.r, count(*) AS n FROM unnest(p_release_tenant, p_release_recipient) AS u(t, r)
                  GROUP BY u.t, u.r) r
            WHERE s.tenant_id = r.t AND s.recipient = r.r AND s.worker = p_worker;
        DELETE FROM beacon_slot_recipient WHERE worker = p_worker AND count <= 0;
    END IF;
    IF coalesce(array_length(p_tenant, 1), 0) = 0 THEN
        RETURN outcome;
    END IF;
    FOR lock_tenant IN SELECT DISTINCT x FROM unnest(p_tenant) AS x ORDER BY x LOOP
        PERFORM pg_advisory_xact_lock(25196, lock_tenant::integer);
    END LOOP;
    live := ARRAY(SELECT id FROM beacon_live_workers());
    FOR i IN 1 .. array_length(p_tenant, 1) LOOP
        SELECT coalesce(sum(count), 0) INTO used FROM beacon_slot_tenant
            WHERE tenant_id = p_tenant[i] AND worker = ANY(live);
        IF used >= p_max_tenant[i] THEN
            outcome := outcome || 'tenant'::text;
            CONTINUE;
        END IF;
        SELECT coalesce(sum(count), 0) INTO used FROM beacon_slot_recipient
            WHERE tenant_id = p_tenant[i] AND recipient = p_recipient[i] AND worker = ANY(live);
        IF used >= p_max_recipient[i] THEN
            outcome := outcome || 'recipient'::text;
            CONTINUE;
        END IF;
        INSERT INTO beacon_slot_tenant VALUES (p_tenant[i], p_worker, 1)
            ON CONFLICT (tenant_id, worker) DO UPDATE SET count = beacon_slot_tenant.count + 1;
        INSERT INTO beacon_slot_recipient VALUES (p_tenant[i], p_recipient[i], p_worker, 1)
            ON CONFLICT (tenant_id, recipient, worker) DO UPDATE SET count = beacon_slot_recipient.count + 1;
        outcome := outcome || 'ok'::text;
    END LOOP;
    RETURN outcome;
END
$$;
"""

REVERSE = "DROP FUNCTION beacon_slots(text, bigint[], text[], bigint[], text[], integer[], integer[]);"


class Migration(migrations.Migration):
    dependencies = [("streaming", "0001_slots")]
    operations = [migrations.RunSQL(SQL, REVERSE)]
