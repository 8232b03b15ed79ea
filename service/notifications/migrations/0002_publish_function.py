"""``beacon_publish``: a tenant's whole publish in one statement (one round trip).

Runs in every tenant schema (``SET search_path FROM CURRENT`` pins it to that schema). It takes the tenant's
ordering lock, counts the request in the rate window (raising SQLSTATE ``BR429`` when over: the transaction
rolls back and nothing is stored or counted), inserts the rows and, when given a channel, sends the one
announcement of the transaction with ``pg_notify``. The lock is therefore held for the function's run and
the commit only, never across client round trips.
"""

from django.db import migrations

SQL = r"""
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
    IF p_channel IS NOT NULL THEN
        -- Same payload as service.broker.postgres.encode: rows inline while they fit, else the id range.
        SELECT json_build_object('s', p_schema, 't', p_sent_at, 'n',
                   json_agg(json_build_array(x.id, x.r, x.t, x.b::integer, x.e, p_created, x.d) ORDER BY x.id))::text
            INTO payload
            FROM (SELECT unnest(ids) AS id, unnest(p_recipient) AS r, unnest(p_topic) AS t,
                         unnest(p_broadcast) AS b, unnest(p_event) AS e, unnest(p_data) AS d) AS x;
        IF octet_length(payload) > 7900 THEN
            payload := json_build_object('s', p_schema, 't', p_sent_at,
                                         'r', json_build_array(ids[1], ids[array_length(ids, 1)]))::text;
        END IF;
        PERFORM pg_notify(p_channel, payload);
    END IF;
    RETURN ids;
END
$$;
"""

REVERSE = """
DROP FUNCTION beacon_publish(bigint, integer, bigint, timestamptz, text, text[], text[], boolean[], text[],
                             text[], integer[], text, text, double precision);
"""


class Migration(migrations.Migration):
    dependencies = [("notifications", "0001_initial")]
    operations = [migrations.RunSQL(SQL, REVERSE)]
