#!/usr/bin/env python
"""Django's command-line utility for Beacon.

Before Django loads: logs go to stderr (stdout carries only the command's result, so
``manage.py create_api_key acme | tail -1`` is the key), and without ``DATABASE_URL`` the embedded PostgreSQL
of ``make run`` (``.data/pg``) is started, unless ``REQUIRE_DATABASE_URL=1`` forbids it. Run outside the
project's virtualenv, it re-runs itself with ``.venv/bin/python``.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def _use_project_venv() -> None:
    """Re-execute with the checkout's ``.venv`` when this interpreter lacks Django (``python manage.py``)."""
    try:
        import django  # noqa: F401
    except ImportError:
        venv = ROOT / ".venv"
        venv_python = venv / "bin" / "python"
        # Compare environments, not executables: the venv's python is a symlink to the very interpreter it
        # was made from (`python3.11 manage.py` would otherwise look like the venv and stop here).
        if venv_python.exists() and Path(sys.prefix).resolve() != venv.resolve():
            os.execv(str(venv_python), [str(venv_python), *sys.argv])
        sys.exit("Django is not installed here: run `make install` first, then .venv/bin/python manage.py ...")


def main() -> None:
    _use_project_venv()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "service.settings")
    from service import embedded_db
    from service.observability import logs

    logs.STREAM = "ext://sys.stderr"
    embedded_db.ensure_database_url(ROOT)
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
