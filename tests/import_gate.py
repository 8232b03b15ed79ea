"""An ASGI app whose import does not end: holds gunicorn's master in its import window (``preload_app``), so
that test_devserver's signal lands there on any machine. The import says so by creating the file named by
``BEACON_TEST_IMPORT_GATE``.

It waits the way much imported code runs: inside a bare ``except`` (``try: import ujson`` / ``except:``
is common in libraries), which would swallow an exception raised by a signal handler."""

import os
import time
from pathlib import Path

Path(os.environ["BEACON_TEST_IMPORT_GATE"]).touch()
deadline = time.monotonic() + 120  # the test's signal ends the process long before this
while time.monotonic() < deadline:
    try:  # noqa: SIM105 - the bare except is the point of this module
        time.sleep(0.05)
    except BaseException:
        pass
