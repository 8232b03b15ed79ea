"""Announce committed notifications to every worker, and listen for those announcements.

PostgreSQL LISTEN/NOTIFY is the default broker (``postgres.py``); ``BROKER_URL=redis://…`` selects Redis
pub/sub (``redis.py``) for deployments that outgrow NOTIFY. Both implement ``base.Broker`` and share the wire
format of ``payload.py``.
"""

from functools import cache

from service.broker.base import Broker


@cache
def default_broker() -> Broker:
    """The process's broker: Redis when ``BROKER_URL`` is set, else PostgreSQL LISTEN/NOTIFY."""
    from django.conf import settings

    if settings.BROKER_URL:
        from service.broker.redis import RedisBroker

        return RedisBroker(
            settings.BROKER_URL, settings.BROKER_CHANNEL, crash_file=settings.TEST_CRASH_AFTER_COMMIT
        )
    from service.broker.postgres import PostgresBroker

    return PostgresBroker(settings.DATABASE_URL, settings.BROKER_CHANNEL)
