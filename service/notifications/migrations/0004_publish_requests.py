"""``beacon_publish`` with ``p_requests``: how many API requests the call stores, counted in the tenant's rate
window. A worker's concurrent publishes of one tenant share one call (group commit: one ordering lock, one
rate-window update, one NOTIFY and one commit for all of them; ``service/notifications/publish.py``,
``Coalescer``), and each request still counts once against ``publish_rate_per_second``.

The 14-argument function of 0002/0003 stays: pods of the previous release call it during a rolling upgrade
(it counts one request per call, which is what each of their calls is).
"""

import importlib

from django.db import migrations

_0002 = importlib.import_module("service.notifications.migrations.0002_publish_function")


def _with_requests(sql: str) -> str:
    replacements = [
        (
            "p_channel text, p_schema text, p_sent_at double precision\n)",
            "p_channel text, p_schema text, p_sent_at double precision, p_requests integer\n)",
        ),
        ("VALUES (p_tenant, p_window, 1)", "VALUES (p_tenant, p_window, p_requests)"),
        ("THEN w.count + 1 ELSE 1 END", "THEN w.count + p_requests ELSE p_requests END"),
    ]
    for old, new in replacements:
        assert sql.count(old) == 1, old
        sql = sql.replace(old, new)
    return sql


SQL = _with_requests(_0002.SQL)
REVERSE = """
DROP FUNCTION beacon_publish(bigint, integer, bigint, timestamptz, text, text[], text[], boolean[], text[],
                             text[], integer[], text, text, double precision, integer);
"""


class Migration(migrations.Migration):
    dependencies = [("notifications", "0003_publish_expiry")]
    operations = [migrations.RunSQL(SQL, REVERSE)]
