"""ORM work from async code runs on at most ``DB_THREADS`` threads per process (``service/db.py``): each thread
keeps a connection, so this bounds a worker's connections (docs/deploy.md, Sizing). In-process."""

from __future__ import annotations

import asyncio
import threading
import time

from django.conf import settings

from service.db import run_db


def test_orm_work_runs_on_at_most_db_threads_named_threads(django_db_blocker) -> None:
    names: set[str] = set()
    running, most = 0, 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
            names.add(threading.current_thread().name)
        time.sleep(0.02)  # long enough that the calls overlap when threads are free
        with lock:
            running -= 1

    async def many() -> None:
        await asyncio.gather(*(run_db(work) for _ in range(4 * settings.DB_THREADS + 8)))

    with django_db_blocker.unblock():
        asyncio.run(many())
    assert most == settings.DB_THREADS  # all of them used, never more
    assert len(names) == settings.DB_THREADS and all(n.startswith("beacon-db") for n in names), names
