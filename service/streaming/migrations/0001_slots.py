"""Connection slots shared by every worker and pod, in the public schema.

A worker is alive while its LISTEN connection's backend exists (``pg_stat_activity``), so the slots of a
worker killed with SIGKILL stop counting as soon as PostgreSQL notices the closed socket: no heartbeat
writes, no queries while streams are idle. Acquire and release are one round trip each.
"""

from django.db import migrations

SQL = r"""
CREATE TABLE beacon_stream_worker (
    id text PRIMARY KEY,
    listener_pid integer NOT NULL,
    listener_started timestamptz NOT NULL,
    seen_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNLOGGED TABLE beacon_slot_tenant (
    tenant_id bigint NOT NULL,
    worker text NOT NULL,
    count integer NOT NULL,
    PRIMARY KEY (tenant_id, worker)
);
CREATE UNLOGGED TABLE beacon_slot_recipient (
    tenant_id bigint NOT NULL,
    recipient text NOT NULL,
    worker text NOT NULL,
    count integer NOT NULL,
    PRIMARY KEY (tenant_id, recipient, worker)
);

CREATE FUNCTION beacon_live_workers() RETURNS TABLE (id text) LANGUAGE sql STABLE AS $$
    SELECT w.id FROM beacon_stream_worker w
    JOIN pg_stat_activity a ON a.pid = w.listener_pid AND a.backend_start = w.listener_started
$$;

CREATE FUNCTION beacon_acquire_slot(p_tenant bigint, p_recipient text, p_worker text,
                                    p_max_tenant integer, p_max_recipient integer)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    live text[];
    used bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(25196, p_tenant::integer);
    live := ARRAY(SELECT id FROM beacon_live_workers());
    SELECT coalesce(sum(count), 0) INTO used FROM beacon_slot_tenant
        WHERE tenant_id = p_tenant AND worker = ANY(live);
    IF used >= p_max_tenant THEN RETURN 'tenant'; END IF;
    SELECT coalesce(sum(count), 0) INTO used FROM beacon_slot_recipient
        WHERE tenant_id = p_tenant AND recipient = p_recipient AND worker = ANY(live);
    IF used >= p_max_recipient THEN RETURN 'recipient'; END IF;
    INSERT INTO beacon_slot_tenant VALUES (p_tenant, p_worker, 1)
        ON CONFLICT (tenant_id, worker) DO UPDATE SET count = beacon_slot_tenant.count + 1;
    INSERT INTO beacon_slot_recipient VALUES (p_tenant, p_recipient, p_worker, 1)
        ON CONFLICT (tenant_id, recipient, worker) DO UPDATE SET count = beacon_slot_recipient.count + 1;
    RETURN 'ok';
END
$$;

CREATE FUNCTION beacon_release_slot(p_tenant bigint, p_recipient text, p_worker text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE beacon_slot_tenant SET count = greatest(count - 1, 0)
        WHERE tenant_id = p_tenant AND worker = p_worker;
    DELETE FROM beacon_slot_recipient
        WHERE tenant_id = p_tenant AND recipient = p_recipient AND worker = p_worker AND count <= 1;
    IF NOT FOUND THEN
        UPDATE beacon_slot_recipient SET count = count - 1
            WHERE tenant_id = p_tenant AND recipient = p_recipient AND worker = p_worker;
    END IF;
END
$$;

-- A (re)connected listener registers its backend; slots of workers whose backend is gone are dropped.
CREATE FUNCTION beacon_register_worker(p_worker text, p_pid integer) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO beacon_stream_worker (id, listener_pid, listener_started, seen_at)
        SELECT p_worker, pid, backend_start, now() FROM pg_stat_activity WHERE pid = p_pid
        ON CONFLICT (id) DO UPDATE SET listener_pid = EXCLUDED.listener_pid,
            listener_started = EXCLUDED.listener_started, seen_at = now();
    DELETE FROM beacon_slot_tenant WHERE worker <> ALL(ARRAY(SELECT id FROM beacon_live_workers()));
    DELETE FROM beacon_slot_recipient WHERE worker <> ALL(ARRAY(SELECT id FROM beacon_live_workers()));
    DELETE FROM beacon_stream_worker w WHERE w.id <> p_worker
        AND w.id <> ALL(ARRAY(SELECT id FROM beacon_live_workers())) AND w.seen_at < now() - interval '1 day';
END
$$;
"""

REVERSE = """
DROP FUNCTION beacon_register_worker(text, integer);
DROP FUNCTION beacon_release_slot(bigint, text, text);
DROP FUNCTION beacon_acquire_slot(bigint, text, text, integer, integer);
DROP FUNCTION beacon_live_workers();
DROP TABLE beacon_slot_recipient;
DROP TABLE beacon_slot_tenant;
DROP TABLE beacon_stream_worker;
"""


class Migration(migrations.Migration):
    initial = True
    dependencies: list[tuple[str, str]] = []
    operations = [migrations.RunSQL(SQL, REVERSE)]
