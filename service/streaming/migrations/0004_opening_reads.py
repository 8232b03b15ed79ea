"""``beacon_opening_reads``: what opening streams read of one tenant, without failing for a tenant that is gone.

The batched slot statement (``service/streaming/slots.py``) reads, for each tenant of its batch, the newest and
oldest ids and the connecting recipients' unread counts. Naming a tenant's table in the statement itself made a
tenant whose schema was just dropped (still cached by a worker for a moment) fail the whole statement: the
other tenants' connects in the batch were refused and its releases lost. The function reads the table by name
and answers no rows when the schema or table does not exist, so one tenant cannot fail another's connects.
Rows: ``(NULL, newest, oldest)`` (ids ``NULL`` when the table is empty), then ``(recipient, unread count,
NULL)`` for each recipient of ``p_recipients`` with any.
"""

from django.db import migrations

SQL = r"""
CREATE FUNCTION beacon_opening_reads(p_schema text, p_recipients text[])
RETURNS TABLE (recipient text, n bigint, oldest bigint) LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY EXECUTE format(
        'SELECT NULL::text, max(id)::bigint, min(id)::bigint FROM %1$I.beacon_notification '
        'UNION ALL (SELECT recipient::text, count(*), NULL::bigint FROM %1$I.beacon_notification '
        'WHERE recipient = ANY($1) AND read_at IS NULL AND expires_at > now() GROUP BY recipient)',
        p_schema) USING p_recipients;
EXCEPTION WHEN undefined_table OR invalid_schema_name THEN
    RETURN;  -- the tenant was deleted: its connects read nothing (they end with the tenant's close)
END
$$;
"""

REVERSE = "DROP FUNCTION beacon_opening_reads(text, text[]);"


class Migration(migrations.Migration):
    dependencies = [("streaming", "0003_slots_set_based")]
    operations = [migrations.RunSQL(SQL, REVERSE)]
