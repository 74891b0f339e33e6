"""P6 helper, run in a fresh process: N ``MpsImageTaskTrigger``s in one event loop, as a triggerer runs them.

Reads the task ids (JSON list) from a file and the connection from ``AIRFLOW_CONN_TENCENTCLOUD_DEFAULT``.
After every trigger has started and one poll interval has passed (the start-up burst), it measures
``process_time / wall`` (the share of one core) and RSS over ``--window`` seconds, optionally under
cProfile, then cancels the triggers and prints one JSON line.

``--created-after`` (epoch seconds, the submission time) is what the operator hands its triggers: they
then share one ``DescribeImageTasks`` listing per round. ``--no-share`` measures per-task polling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="airflow-mps-bench-p6-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def main(
    ids: list[str],
    window: float,
    poll_interval: float,
    profile_path: str | None,
    created_after: float | None = None,
    share: bool = True,
) -> dict:
    import gc

    from airflow_mps.hooks.mps import MpsHook  # noqa: F401  (what a triggerer has loaded already)
    from airflow_mps.triggers.mps import MpsImageTaskTrigger

    gc.collect()
    rss_before = rss_mb()
    events: list[str] = []

    async def one(task_id: str) -> None:
        trigger = MpsImageTaskTrigger(
            mps_task_id=task_id,
            end_time=time.time() + 3600,
            poll_interval=poll_interval,
            created_after=created_after,
            share_polling=share,
        )
        async for event in trigger.run():
            events.append(event.payload["status"])
            return

    tasks = [asyncio.create_task(one(t)) for t in ids]
    # Start-up burst: every trigger polls once at once (paced by the hook at ~97/s), then settles.
    warmup = poll_interval + len(ids) / 97.0
    await asyncio.sleep(warmup)
    profiler = None
    if profile_path:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(window)
    cpu1, wall1 = time.process_time(), time.perf_counter()
    if profiler is not None:
        import io
        import pstats

        profiler.disable()
        buf = io.StringIO()
        pstats.Stats(profiler, stream=buf).sort_stats("tottime").print_stats(30)
        Path(profile_path).write_text(buf.getvalue())
    gc.collect()
    rss_after = rss_mb()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "cpu_share": (cpu1 - cpu0) / (wall1 - wall0),
        "window_s": round(wall1 - wall0, 2),
        "rss_before_mb": round(rss_before, 1),
        "rss_growth_mb": round(rss_after - rss_before, 1),
        "events": len(events),
        "warmup_s": round(warmup, 1),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("ids_file")
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--poll-interval", type=float, default=10.0)
    parser.add_argument("--profile", default=None)
    parser.add_argument("--created-after", type=float, default=None)
    parser.add_argument("--no-share", action="store_true")
    args = parser.parse_args()
    task_ids = json.loads(Path(args.ids_file).read_text())
    print(
        json.dumps(
            asyncio.run(
                main(
                    task_ids,
                    args.window,
                    args.poll_interval,
                    args.profile,
                    args.created_after,
                    not args.no_share,
                )
            )
        )
    )
