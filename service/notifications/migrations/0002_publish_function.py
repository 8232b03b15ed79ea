"""``beacon_publish``: a tenant's whole publish in one statement (one round trip).

Runs in every tenant schema (``SET search_path FROM CURRENT`` pins it to that schema). It takes the tenant's
ordering lock, counts the request in the rate window (raising SQLSTATE ``BR429`` when over: the transaction
rolls back and nothing is stored or counted), inserts the rows and, when given a channel, sends the one
announcement of the transaction with ``pg_notify``. The lock is therefore held for the function's run and
the commit only, never across client round trips.
"""

from django.db import migrations

from service.broker.payload import plpgsql_announce

SQL_TEMPLATE = r"""
CREATE FUNCTION beacon_publish(
    p_tenant bigint, p_rate integer, p_window bigint, p_now timestamptz, p_created text,
    p_recipient text[], p_topic text[], p_broadcast boolean[], p_event text[], p_data text[], p_ttl integer[],
    p_channel text, p_schema text, p_sent_at double precision
) RETURNS bigint[] LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    used integer;
    ids bigint[];
    payload text;
BEGIN
    PERFORM pg_advisory_xact_lock(25189, p_tenant::integer);
    INSERT INTO public.tenants_publishwindow AS w (tenant_id, window_start, count)
        VALUES (p_tenant, p_window, 1)
        ON CONFLICT (tenant_id) DO UPDATE SET
            count = CASE WHEN w.window_start = EXCLUDED.window_start THEN w.count + 1 ELSE 1 END,
            window_start = EXCLUDED.window_start
        RETURNING w.count INTO used;
    IF used > p_rate THEN
        RAISE EXCEPTION 'over the publish rate' USING ERRCODE = 'BR429';
    END IF;
    WITH inserted AS (
        INSERT INTO beacon_notification (recipient, topic, broadcast, event, data, created_at, expires_at, read_at)
        SELECT r, t, b, e, d::jsonb, p_now, p_now + make_interval(secs => ttl), NULL
        FROM unnest(p_recipient, p_topic, p_broadcast, p_event, p_data, p_ttl) AS u(r, t, b, e, d, ttl)
        RETURNING id
    )
    SELECT array_agg(id ORDER BY id) INTO ids FROM inserted;
__ANNOUNCE__
    RETURN ids;
END
$$;
"""
# The announcement's JSON comes from the one definition of the format (service/broker/payload.py).
SQL = SQL_TEMPLATE.replace("__ANNOUNCE__", plpgsql_announce().strip("\n"))

REVERSE = """
DROP FUNCTION beacon_publish(bigint, integer, bigint, timestamptz, text, text[], text[], boolean[], text[],
                             text[], integer[], text, text, double precision);
"""


class Migration(migrations.Migration):
    dependencies = [("notifications", "0001_initial")]
    operations = [migrations.RunSQL(SQL, REVERSE)]
