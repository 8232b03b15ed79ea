"""Delivery metrics recorded once per loop tick equal one observation per write."""

from __future__ import annotations

import asyncio
import random

from prometheus_client import CollectorRegistry, Histogram

from service.observability import metrics
from service.streaming import delivery_metrics


def _buckets(histogram: Histogram) -> dict[str, float]:
    return {
        f"{s.name}{s.labels.get('le', '')}": s.value
        for metric in histogram.collect()
        for s in metric.samples
        if not s.name.endswith("_created")
    }


def test_observe_many_equals_one_observation_per_sample() -> None:
    bounds = (0.001, 0.005, 0.025, 0.1, 1.0)
    one, many = (
        Histogram("h", "h", buckets=bounds, registry=CollectorRegistry()),
        Histogram("h", "h", buckets=bounds, registry=CollectorRegistry()),
    )
    samples = [random.Random(3).choice([0.0, 0.001, 0.0049, 0.005, 0.3, 2.0, 7.5]) for _ in range(500)]
    samples += [0.001, 0.1, 1.0, 99.0]  # on the bounds and above the last
    for sample in samples:
        one.observe(sample)
    delivery_metrics.observe_many(many, samples)
    assert _buckets(one) == _buckets(many)


def test_a_ticks_deliveries_are_flushed_once() -> None:
    def count() -> float:
        return sum(
            s.value
            for m in metrics.EVENTS_DELIVERED.collect()
            for s in m.samples
            if s.name.endswith("_total") and s.labels.get("tenant") == "tick-test"
        )

    async def run() -> tuple[float, float]:
        before = count()
        for _ in range(1000):
            delivery_metrics.delivered("tick-test", 2, [0.001, 0.002])
        assert count() == before  # nothing written yet: one flush at the end of the tick
        await asyncio.sleep(0)
        return before, count()

    before, after = asyncio.run(run())
    assert after - before == 2000
