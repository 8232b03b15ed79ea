"""``purge_expired [--schema S] [--batch-size N] [--pushgateway URL]``: retention, run by the chart's CronJob.

In every tenant schema (or one), deletes in bounded batches, each its own short transaction:

- notifications whose ``expires_at`` has passed (their ``ttl``, at most the tenant's maximum retention);
- notifications older than the tenant's ``max_retention_seconds`` (rows stored before it was lowered);
- idempotency records older than 24 hours (contract: the replay window of an ``Idempotency-Key``).

Batches walk an index (``notif_expires``, the primary key, ``idem_created``) and take only row locks, so
publishing and reading go on meanwhile; no table is rewritten (autovacuum reuses the space). Output: one
tab-separated line per tenant, then a ``total`` line. ``--pushgateway`` also pushes ``beacon_purged_total``
to a Prometheus Pushgateway (a CronJob's pod lives too briefly to be scraped). Streams whose position was
purged get ``beacon.reset`` (``expired``) on resume.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.utils import timezone
from django_tenants.utils import schema_context

from service.notifications.publish import IDEMPOTENCY_WINDOW
from tenants.management.options import positive_int
from tenants.models import Tenant

DEFAULT_BATCH = 5000


@dataclass
class Purged:
    notifications: int = 0
    idempotency_records: int = 0


def _batches(sql: str, params: list[Any], batch: int) -> int:
    """Run a ``DELETE ... LIMIT batch`` statement until it deletes fewer rows; each run commits alone."""
    total = 0
    while True:
        with connection.cursor() as cursor:
            cursor.execute(sql, [*params, batch])
            deleted = cursor.rowcount
        total += deleted
        if deleted < batch:
            return total


def purge_schema(schema: str, now: datetime, max_retention: int | None, batch: int) -> Purged:
    """Delete what retention allows in one tenant schema (explicitly set, never the thread's current one)."""
    result = Purged()
    with schema_context(schema):
        result.notifications = _batches(
            "DELETE FROM beacon_notification WHERE id IN (SELECT id FROM beacon_notification "
            "WHERE expires_at <= %s ORDER BY expires_at LIMIT %s)",
            [now],
            batch,
        )
        if max_retention:
            cutoff = now - timedelta(seconds=max_retention)
            # Ids follow commit order and created_at follows ids closely: walk the primary key from the
            # oldest row and stop at the first one young enough (bounded by the rows to delete).
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT id FROM beacon_notification WHERE created_at >= %s ORDER BY id LIMIT 1", [cutoff]
                )
                found = cursor.fetchone()
            bound = found[0] if found else None
            result.notifications += _batches(
                "DELETE FROM beacon_notification WHERE id IN (SELECT id FROM beacon_notification "
                "WHERE created_at < %s AND (%s::bigint IS NULL OR id < %s) ORDER BY id LIMIT %s)",
                [cutoff, bound, bound],
                batch,
            )
        result.idempotency_records = _batches(
            "DELETE FROM beacon_idempotency WHERE id IN (SELECT id FROM beacon_idempotency "
            "WHERE created_at < %s ORDER BY created_at LIMIT %s)",
            [now - IDEMPOTENCY_WINDOW],
            batch,
        )
    return result


def push_totals(url: str, totals: Purged) -> None:
    """Push ``beacon_purged_total{kind}`` for this run to a Pushgateway (job ``beacon_purge``)."""
    from prometheus_client import CollectorRegistry, push_to_gateway
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.registry import Collector

    class RunCollector(Collector):
        def collect(self) -> Iterator[Any]:
            purged = CounterMetricFamily(
                "beacon_purged", "Rows deleted by the last purge_expired run.", labels=["kind"]
            )
            purged.add_metric(["notifications"], totals.notifications)
            purged.add_metric(["idempotency_records"], totals.idempotency_records)
            yield purged
            finished = GaugeMetricFamily(
                "beacon_purge_last_success_timestamp_seconds", "When purge_expired last finished."
            )
            finished.add_metric([], timezone.now().timestamp())
            yield finished

    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunCollector())
    push_to_gateway(url, job="beacon_purge", registry=registry, timeout=10)


class Command(BaseCommand):
    help = "Delete expired notifications and idempotency records past 24 h, in every tenant schema (or one)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("-s", "--schema", dest="schema_name", help="only this tenant schema")
        parser.add_argument(
            "--batch-size",
            type=positive_int,  # ASCII digits only, as every number Beacon reads (int() takes '١٢')
            default=DEFAULT_BATCH,
            help=f"rows per delete (default {DEFAULT_BATCH})",
        )
        parser.add_argument("--pushgateway", default="", metavar="URL", help="push beacon_purged_total there")

    def handle(
        self, *args: Any, schema_name: str | None, batch_size: int, pushgateway: str, **options: Any
    ) -> None:
        if not 1 <= batch_size <= 1_000_000:
            raise CommandError("--batch-size must be between 1 and 1000000")
        tenants = Tenant.objects.order_by("slug")
        if schema_name:
            tenants = tenants.filter(schema_name=schema_name)
            if not tenants.exists():
                raise CommandError(f"no tenant with schema {schema_name!r}")
        now = timezone.now()
        totals = Purged()
        for tenant in tenants:
            purged = purge_schema(tenant.schema_name, now, tenant.max_retention_seconds, batch_size)
            totals.notifications += purged.notifications
            totals.idempotency_records += purged.idempotency_records
            self.stdout.write(
                f"{tenant.slug}\t{purged.notifications} notifications\t"
                f"{purged.idempotency_records} idempotency records"
            )
        self.stdout.write(
            f"total\t{totals.notifications} notifications\t{totals.idempotency_records} idempotency records"
        )
        if pushgateway:
            try:
                push_totals(pushgateway, totals)
            except (
                OSError,
                ValueError,
                http.client.HTTPException,
            ) as exc:  # bad URL, refused, timed out, HTTP error
                # the rows are purged and reported above; only the push failed: say so in one line, non-zero
                raise CommandError(
                    f"purged, but could not push to --pushgateway {pushgateway!r}: {exc}"
                ) from None
