"""``python -m bench.peers.tutorial.setup N``: migrate, create N users with logged-in sessions.

Prints one JSON line: ``{"users": [[user_id, session_key], ...]}``.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta


def main(count: int) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.peers.tutorial.settings")
    import django

    django.setup()
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session
    from django.core.management import call_command
    from django.utils import timezone
    from django.utils.crypto import get_random_string

    call_command("migrate", verbosity=0, interactive=False)
    password = make_password(None)
    users = User.objects.bulk_create([User(username=f"bench-{i}", password=password) for i in range(count)])
    store = SessionStore()
    expire = timezone.now() + timedelta(days=1)
    sessions = []
    out = []
    for user in users:
        key = get_random_string(32, "abcdefghijklmnopqrstuvwxyz0123456789")
        data = store.encode(
            {
                SESSION_KEY: str(user.pk),
                BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
                HASH_SESSION_KEY: user.get_session_auth_hash(),
            }
        )
        sessions.append(Session(session_key=key, session_data=data, expire_date=expire))
        out.append([user.pk, key])
    Session.objects.bulk_create(sessions)
    print(json.dumps({"users": out}))


if __name__ == "__main__":
    main(int(sys.argv[1]))
