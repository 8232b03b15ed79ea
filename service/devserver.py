"""``make run``: embedded PostgreSQL (unless DATABASE_URL is set), migrations, the demo tenant and key,
then gunicorn with uvicorn workers on port 8000. Ctrl-C stops gunicorn and the embedded database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    env = dict(os.environ)
    env.setdefault("DEMO", "1")
    env.setdefault("DEBUG", "0")
    server = None
    if not env.get("DATABASE_URL"):
        from service import embedded_db

        server = embedded_db.start(ROOT / ".data" / "pg", cleanup_mode="stop")
        env["DATABASE_URL"] = embedded_db.url(server)
        print(f"embedded PostgreSQL 16 running from {ROOT / '.data' / 'pg'}")
    python = sys.executable
    manage = [python, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate_schemas", "--shared", "-v", "0"], check=True, env=env, cwd=ROOT)
    subprocess.run([*manage, "migrate_schemas", "-v", "0"], check=True, env=env, cwd=ROOT)
    out = subprocess.run(
        [*manage, "ensure_demo"], check=True, env=env, cwd=ROOT, capture_output=True, text=True
    )
    key = out.stdout.strip().splitlines()[-1]
    print(
        f"""
Beacon is starting on http://localhost:8000/  (demo page; admin at /admin/ after `manage.py createsuperuser`)
Demo API key: {key}
Publish:
  curl -H "Authorization: Bearer {key}" -H 'Content-Type: application/json' \\
       -d '{{"recipient":"demo-user","data":{{"text":"hi"}}}}' localhost:8000/v1/notifications
""",
        flush=True,
    )
    gunicorn = subprocess.Popen(
        [python, "-m", "gunicorn", "-c", str(ROOT / "deploy" / "gunicorn.conf.py")], env=env, cwd=ROOT
    )
    try:
        return gunicorn.wait()
    except KeyboardInterrupt:
        gunicorn.send_signal(signal.SIGTERM)
        return gunicorn.wait()
    finally:
        if server is not None:
            server.cleanup()


if __name__ == "__main__":
    sys.exit(main())
