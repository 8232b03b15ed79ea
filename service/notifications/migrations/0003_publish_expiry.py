"""``beacon_publish`` announces each row's ``expires_at`` too (``service/broker/payload.py``), so a worker's
replay window (``service/streaming/window.py``) skips expired rows exactly as the database's replay does.

The function's signature is unchanged; ``CREATE OR REPLACE`` swaps its body in place (a database migrated
before this change gets the new announcement; a fresh one already has it from 0002, which builds its SQL from
the same format definition).
"""

import importlib

from django.db import migrations

_0002 = importlib.import_module("service.notifications.migrations.0002_publish_function")
SQL = _0002.SQL.replace("CREATE FUNCTION beacon_publish", "CREATE OR REPLACE FUNCTION beacon_publish", 1)


class Migration(migrations.Migration):
    dependencies = [("notifications", "0002_publish_function")]
    operations = [migrations.RunSQL(SQL, migrations.RunSQL.noop)]
