"""Worker registration: tie this worker's connection slots to a PostgreSQL backend that lives as long as it.

The slots of ``beacon_acquire_slot`` count only for workers whose registered backend is still in
``pg_stat_activity`` (migration ``streaming/0001``), so a worker killed with SIGKILL stops counting as soon as
PostgreSQL sees its socket close: no heartbeat writes, nothing while idle.
"""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool


async def register_worker(pool: AsyncConnectionPool, worker_id: str, backend_pid: int) -> None:
    """Record ``backend_pid`` as ``worker_id``'s liveness backend and drop the slots of dead workers."""
    async with pool.connection() as conn:
        await conn.execute("SELECT beacon_register_worker(%s, %s)", [worker_id, backend_pid])
