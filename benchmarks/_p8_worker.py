"""P8 helper, run in a fresh process: one batch task of a shared account, driven by the parent.

Each process is what one Airflow worker running ``MpsBatchProcessImageOperator`` is: its own
interpreter, its own process-wide pacing buckets, the connection from
``AIRFLOW_CONN_TENCENTCLOUD_DEFAULT``. It imports everything first, prints ``ready``, then reads
commands from stdin, one per line, so the parent can start every process's run at the same moment:

    run <adaptive|fixed> <part> <submit_concurrency>   → one JSON line with the run's numbers
    quit

A run is ``execute()`` of the batch operator with ``wait_for_completion=False`` over the seeded
prefix ``raw/<part>/`` (submission only: the pacing is what P8 measures). Times are
``time.monotonic()``, which is system-wide on Linux, so the parent can compare processes.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness

harness.isolate_airflow()


def run(mode: str, part: str, concurrency: int) -> dict[str, Any]:
    from airflow_mps.hooks import _buckets
    from airflow_mps.hooks.mps import MpsHook

    _buckets.use_adaptive_pacing(mode == "adaptive")  # also forgets the previous run's buckets
    starts: list[float] = []
    ends: list[float] = []
    real = MpsHook.process_image

    def recorded(self: Any, request: Any) -> Any:
        starts.append(time.monotonic())
        out = real(self, request)
        ends.append(time.monotonic())
        return out

    op = harness.batch_operator(
        part,
        wait_for_completion=False,
        submit_concurrency=concurrency,
        task_id=f"p8_{part.replace('=', '_')}",
    )
    t0 = time.monotonic()
    MpsHook.process_image = recorded  # type: ignore[method-assign]
    try:
        summary = op.execute(harness.context())
    finally:
        MpsHook.process_image = real  # type: ignore[method-assign]
    buckets = [b for key, b in _buckets._REGISTRY.items() if key[-1] == "ProcessImage"]  # bench-only peek
    bucket = buckets[0] if buckets else None
    return {
        "mode": mode,
        "part": part,
        "started": t0,
        "first_submit": min(starts) if starts else None,
        "last_submit_end": max(ends) if ends else None,
        "submitted": int(summary.get("submitted", 0)),
        "answered": [round(t, 4) for t in ends],
        "failed": int(summary.get("failed", 0) or 0),
        "bucket": None
        if bucket is None
        else {
            "kind": type(bucket).__name__,
            "throttles_seen": bucket.throttles,
            "successes": bucket.successes,
            "final_rate": round(getattr(bucket, "pacing_rate", bucket.rate), 3),
            **{
                name: getattr(bucket, name)
                for name in (
                    "budget",
                    "group",
                    "storms",
                    "cuts",
                    "moves",
                    "widenings",
                    "probes",
                    "failed_probes",
                    "estimate",
                    "tickets_seen",
                )
                if hasattr(bucket, name)
            },
        },
    }


def _import_lazy_modules() -> None:
    """What a batch run imports on first use (the operator imports lazily, the SDK on its first
    request): imported here so that no process of a run spends its first second importing while
    the others submit — every process starts a run equally warm."""
    import importlib
    import pkgutil

    import airflow_mps.batch

    for module in pkgutil.iter_modules(airflow_mps.batch.__path__):
        importlib.import_module(f"airflow_mps.batch.{module.name}")
    for name in (
        "airflow_mps.models.keys",
        "airflow_mps.waits.batch",
        "airflow.sdk.observability.stats",
        "netrc",
        "tencentcloud.common.common_client",
        "tencentcloud.common.credential",
    ):
        importlib.import_module(name)


def main() -> int:
    # The protocol owns the real stdout; anything else printed (Airflow's logging) goes to stderr.
    proto = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout = sys.stderr
    # Everything a run needs, imported before "ready" so start-up cost never lands inside a run.
    from tencentcloud.mps.v20190612 import models, mps_client  # noqa: F401

    import airflow_mps.operators.batch  # noqa: F401
    from airflow_mps.hooks.mps import MpsHook

    MpsHook().get_settings()
    _import_lazy_modules()
    print("ready", file=proto, flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        if words[0] == "run":
            result = run(words[1], words[2], int(words[3]))
            print(json.dumps(result), file=proto, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
