"""deploy/gunicorn.conf.py plus garbage-collector tuning in each worker: an experiment, not a deployment.

Each open stream keeps a handful of GC-tracked objects alive (task, coroutine frames, futures, timer
handles); with thousands of streams per worker, CPython's default thresholds (700, 10, 10) run full
collections that pause the event loop for 0.4-0.7 s each (measured), in the middle of connects and broadcasts. This file keeps every setting
of the deployment's config and adds, in ``post_worker_init``: ``gc.freeze()`` (start-up objects leave the
collector's view) and ``gc.set_threshold(BENCH_GC_THRESHOLD)`` (default 100000,50,100). With
``BENCH_GC_STATS_DIR`` set, each worker also writes how many collections of each generation ran and how
long they took (``gc-<pid>.json``, every second).

    python -m bench --beacon-config bench/experiments/gc_tuned.conf.py --scenarios idle,broadcast --peers ''
"""

import gc as _gc
import json as _json
import os as _os
import threading as _threading
import time as _time
from pathlib import Path as _Path

exec(_Path(__file__).resolve().parents[2].joinpath("deploy", "gunicorn.conf.py").read_text())


def post_worker_init(worker: object) -> None:
    stats_dir = _os.environ.get("BENCH_GC_STATS_DIR")
    if stats_dir:
        stats = {str(g): {"collections": 0, "seconds": 0.0, "max_seconds": 0.0} for g in range(3)}
        began: list[float] = [0.0]

        def on_gc(phase: str, info: dict) -> None:
            if phase == "start":
                began[0] = _time.perf_counter()
                return
            took = _time.perf_counter() - began[0]
            entry = stats[str(info["generation"])]
            entry["collections"] += 1
            entry["seconds"] += took
            entry["max_seconds"] = max(entry["max_seconds"], took)

        def dump() -> None:
            path = _Path(stats_dir, f"gc-{_os.getpid()}.json")
            while True:
                _time.sleep(1)
                path.write_text(_json.dumps(stats))

        _gc.callbacks.append(on_gc)
        _threading.Thread(target=dump, daemon=True, name="gc-stats").start()
    if _os.environ.get("BENCH_GC_FREEZE", "1") == "1":
        _gc.freeze()
    threshold = _os.environ.get("BENCH_GC_THRESHOLD", "100000,50,100")
    if threshold:
        _gc.set_threshold(*(int(x) for x in threshold.split(",")))
