"""Running Django ORM work from async code without trusting the thread's tenant.

Each call runs on the worker's ``DB_THREADS`` threads (not the single thread-sensitive thread, so a slow
query or an idempotency wait never blocks other requests), starts from the ``public`` schema, and switches
schema only inside an explicit ``schema_context`` in the called function.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

import psycopg
import psycopg_pool
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, connection

OUTAGES = (
    OperationalError,
    InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg_pool.PoolTimeout,
    ConnectionError,
)
P = ParamSpec("P")
R = TypeVar("R")
_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _threads() -> ThreadPoolExecutor:
    """The process's ``DB_THREADS`` threads for ORM work, made on first use (after gunicorn's fork)."""
    global _executor
    if _executor is None:  # every ORM call comes here: the lock only while there is none yet
        with _executor_lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(settings.DB_THREADS, thread_name_prefix="beacon-db")
    return _executor


def _isolated(fn: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        close_old_connections()  # drops connections past CONN_MAX_AGE or broken by a database restart
        connection.set_schema_to_public()  # type: ignore[attr-defined]
        try:
            return fn(*args, **kwargs)
        finally:
            connection.set_schema_to_public()  # type: ignore[attr-defined]

    return wrapper


async def run_db(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run ``fn`` (blocking ORM code) on one of the worker's ``DB_THREADS`` threads (each with its own
    connection: they bound a worker's ORM connections) with a clean, public-schema connection."""
    return await sync_to_async(_isolated(fn), thread_sensitive=False, executor=_threads())(*args, **kwargs)


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) means the database cannot be reached or is restarting.

    Such failures answer ``503 unavailable`` with ``Retry-After`` instead of ``500``: the request was not
    wrong and may be retried. Django wraps psycopg's errors, so the cause chain is followed.
    """
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, OUTAGES):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
