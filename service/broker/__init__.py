"""Announce committed notifications to every worker, and listen for those announcements.

PostgreSQL LISTEN/NOTIFY is the broker today (``postgres.py``); the small interface in ``base.py`` is what a
Redis or NATS broker would implement for deployments that outgrow it.
"""

from functools import cache

from service.broker.base import Broker


@cache
def default_broker() -> Broker:
    """The process's broker (PostgreSQL LISTEN/NOTIFY on ``DATABASE_URL``)."""
    from django.conf import settings

    from service.broker.postgres import PostgresBroker

    return PostgresBroker(settings.DATABASE_URL)
