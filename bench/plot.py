"""The benchmark's picture: delivery latency percentiles and memory per stream against open streams, Beacon
beside the peers, written as a PNG next to the JSON (``python -m bench`` calls :func:`plot`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

STYLE = {"beacon": ("tab:blue", "o"), "starlette": ("tab:orange", "s"), "django": ("tab:green", "^")}


def _series(
    results: list[dict[str, Any]], scenario: str, x: str, y: str
) -> dict[str, list[tuple[float, float]]]:
    found: dict[str, list[tuple[float, float]]] = {}
    for r in results:
        if r.get("scenario") == scenario and r.get(x) is not None and r.get(y) is not None:
            found.setdefault(r["target"], []).append((float(r[x]), float(r[y])))
    return {k: sorted(v) for k, v in found.items()}


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (lat, mem) = plt.subplots(1, 2, figsize=(13, 5))
    for key, dash, label in (
        ("p50_ms_median", "-", "p50"),
        ("p99_ms_median", "--", "p99"),
        ("last_ms_median", ":", "last"),
    ):
        for target, points in _series(results, "broadcast", "subscribers", key).items():
            color, marker = STYLE.get(target, ("gray", "x"))
            xs, ys = zip(*points, strict=True)
            lat.plot(xs, ys, dash, color=color, marker=marker, label=f"{target} broadcast {label}")
    for key, marker, label in (("p50_ms", "P", "p50"), ("p99_ms", "X", "p99")):
        for target, points in _series(results, "latency", "streams", key).items():
            if target != "beacon":
                continue
            xs, ys = zip(*points, strict=True)
            lat.scatter(
                xs, ys, marker=marker, s=80, color="navy", label=f"beacon publish→receive {label}", zorder=3
            )
    lat.set_xlabel("open streams")
    lat.set_ylabel("ms (log)")
    lat.set_yscale("log")
    lat.set_title("Delivery latency against open streams")
    lat.grid(True, which="both", alpha=0.3)
    lat.legend(fontsize=7)
    for target, points in _series(results, "idle", "streams", "rss_per_stream_kb").items():
        color, marker = STYLE.get(target, ("gray", "x"))
        xs, ys = zip(*points, strict=True)
        mem.plot(xs, ys, "-", color=color, marker=marker, label=target)
    mem.set_xlabel("open streams")
    mem.set_ylabel("KB per idle stream (server RSS)")
    mem.set_title("Memory per stream against open streams")
    mem.set_ylim(bottom=0)
    mem.grid(True, alpha=0.3)
    mem.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
