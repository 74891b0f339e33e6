"""P9: what a deferred batch costs as it grows, with the API limits lifted (issue 12).

A batch of N images runs end to end as Airflow runs a deferred task, each role in its own fresh
process: the worker's ``execute()`` until ``TaskDeferred``; the triggerer's wait, the trigger rebuilt
from its kwargs; the worker's ``execute_complete()`` with the event. The emulator (a subprocess) has
no ProcessImage or Describe* limit and the client's pacing is lifted to match; ``task_state_store``
lives in files, outside the roles, as Airflow keeps it in its DB. Each role imports its modules before
its clock starts (the per-image cost is what grows). Measured per N:

* wall seconds and CPU seconds (all threads of the three roles; the emulator is another process),
  CPU milliseconds per image, peak RSS (``ru_maxrss``) of each role and the largest;
* the trigger's kwargs and its event, as JSON bytes (what Airflow stores in its metadata DB);
* the durable state: the ledger (``task_state_store``), the two state objects next to the manifest,
  and the manifest itself.

Targets: CPU per image at the large N within 20 % of the small N (flat), peak RSS at the large N
≤ 200 MB, kwargs and event ≤ 32 KiB at every N. Usage::

    python benchmarks/p9.py [--n 1000,20000] [--out benchmarks/results/p9.json]

or, registered in ``benchmarks/run.py``, ``p9_cost_growth(sizes)`` returns the scenario's
:class:`harness.Result` (value: CPU per image at the large N ÷ at the small N).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import harness  # noqa: E402

#: The bounds P9 checks (issue 12).
STATE_LIMIT_BYTES = 32 * 1024
RSS_LIMIT_MB = 200.0
CPU_GROWTH_LIMIT = 1.2
DEFAULT_SIZES = (1000, 20000)


class DirStore:
    """``task_state_store`` as Airflow keeps it — outside the worker — here one JSON file per key, so the
    roles (separate processes) share it and its size is not counted in a worker's memory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)

    def _file(self, key: str) -> Path:
        return self.path / (key.replace("/", "__") + ".json")

    def get(self, key: str, default: Any = None) -> Any:
        f = self._file(key)
        return json.loads(f.read_text()) if f.exists() else default

    def set(self, key: str, value: Any) -> None:
        self._file(key).write_text(json.dumps(value))

    def delete(self, key: str) -> None:
        self._file(key).unlink(missing_ok=True)

    def size(self) -> int:
        return sum(f.stat().st_size for f in self.path.glob("*.json"))


def _preload() -> None:
    """Import what every role uses before the clock starts: per-image costs are what P9 compares."""
    import qcloud_cos  # noqa: F401
    from tencentcloud.mps.v20190612 import models, mps_client, mps_client_async  # noqa: F401

    import airflow_mps.batch.overlap
    import airflow_mps.batch.resume
    import airflow_mps.batch.submit
    import airflow_mps.hooks.mps
    import airflow_mps.triggers.batch  # noqa: F401


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _role(role: str, part: str, n: int, work: Path) -> dict[str, Any]:
    """One role of a deferred batch, in this process, as Airflow runs it: the worker's ``execute``
    (until it defers), the triggerer's wait, the worker's ``execute_complete`` (a new task process)."""
    import asyncio

    from airflow.providers.common.compat.sdk import TaskDeferred

    _preload()
    base_rss = _rss_mb()
    op = harness.batch_operator(part, poll_interval=1, submit_concurrency=32)
    ctx: dict[str, Any] = {"ti": SimpleNamespace(try_number=1), "task_state_store": DirStore(work / "store")}
    wall0, cpu0 = time.perf_counter(), time.process_time()
    out: dict[str, Any] = {}
    if role == "execute":
        try:
            op.execute(ctx)
            raise RuntimeError("the batch did not defer")
        except TaskDeferred as deferred:
            path, kwargs = deferred.trigger.serialize()
            (work / "trigger.json").write_text(json.dumps({"path": path, "kwargs": kwargs}))
            out["trigger_kwargs_bytes"] = len(json.dumps(kwargs).encode())
    elif role == "trigger":
        from importlib import import_module

        spec = json.loads((work / "trigger.json").read_text())
        module, _, name = spec["path"].rpartition(".")
        trigger = getattr(import_module(module), name)(**spec["kwargs"])
        event = asyncio.run(harness.first_event(trigger)).payload
        (work / "event.json").write_text(json.dumps(event))
        out["trigger_event_bytes"] = len(json.dumps(event).encode())
        out["listing_calls"], out["detail_calls"] = event.get("listing_calls"), event.get("detail_calls")
    else:
        event = json.loads((work / "event.json").read_text())
        summary = op.execute_complete(ctx, event)
        out["succeeded"], out["failed"] = summary["succeeded"], summary["failed"]
    out.update(
        wall_seconds=time.perf_counter() - wall0,
        cpu_seconds=time.process_time() - cpu0,
        base_rss_mb=round(base_rss, 1),
        peak_rss_mb=round(_rss_mb(), 1),
    )
    if role == "complete":  # measuring, not the batch: after the clock and the RSS peak are read
        names = ("_mps_manifest.jsonl", "_mps_manifest.jsonl.carry.gz", "_mps_manifest.jsonl.wait.gz")
        prefix = f"enhanced/{part}/"
        out["objects"] = {name: len(op.hook.read_object(harness.BUCKET, prefix + name)) for name in names}
        out["ledger_bytes"] = ctx["task_state_store"].size()
    return out


def measure(n: int, *, timeout: float = 3600.0) -> dict[str, Any]:
    """One N: a fresh emulator without limits, ``n`` seeded images, each role in a fresh process."""
    import tempfile

    with (
        harness.emulator(workers=16, process_image_rate=0, describe_rate=0) as emu,
        tempfile.TemporaryDirectory(prefix="p9-") as work,
    ):
        t = time.perf_counter()
        part = harness.seed(emu, n)
        seeded = time.perf_counter() - t
        env = {
            **os.environ,
            # The client's pacing lifted like the emulator's limits: ProcessImage and each Describe* action.
            "AIRFLOW_CONN_TENCENTCLOUD_DEFAULT": emu.connection_uri()
            + "&process_image_rate=100000&describe_rate=100000",
        }
        roles: dict[str, dict[str, Any]] = {}
        for role in ("execute", "trigger", "complete"):
            argv = [str(Path(__file__).resolve()), "--role", role, part, str(n), work]
            roles[role] = json.loads(
                harness.python_subprocess(argv, timeout=timeout, env=env).strip().splitlines()[-1]
            )
        stats = emu.stats()
    done = roles["complete"]
    objects = done.pop("objects")
    wall = sum(r["wall_seconds"] for r in roles.values())
    cpu = sum(r["cpu_seconds"] for r in roles.values())
    return {
        "n": n,
        "succeeded": done["succeeded"],
        "failed": done["failed"],
        "wall_seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        "cpu_ms_per_image": round(cpu / n * 1000, 3),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in roles.values()),
        "roles": {
            name: {k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()}
            for name, r in roles.items()
        },
        "trigger_kwargs_bytes": roles["execute"]["trigger_kwargs_bytes"],
        "trigger_event_bytes": roles["trigger"]["trigger_event_bytes"],
        "ledger_bytes": done["ledger_bytes"],
        "state_objects_bytes": {k: v for k, v in objects.items() if k.endswith(".gz")},
        "manifest_bytes": objects.get("_mps_manifest.jsonl"),
        "seed_seconds": round(seeded, 1),
        "tasks_created": stats.get("tasks_created"),
        "duplicate_submissions": stats.get("duplicate_submissions"),
    }


def p9_cost_growth(sizes: Any = None) -> harness.Result:
    """The scenario for ``benchmarks/run.py``: ``sizes.p9_n`` (small, large), default 1,000 and 20,000."""
    small, large = getattr(sizes, "p9_n", DEFAULT_SIZES)
    runs = [measure(small), measure(large)]
    growth = runs[1]["cpu_ms_per_image"] / runs[0]["cpu_ms_per_image"]
    bounded = all(
        r["trigger_kwargs_bytes"] <= STATE_LIMIT_BYTES and r["trigger_event_bytes"] <= STATE_LIMIT_BYTES
        for r in runs
    )
    return harness.Result(
        id="P9",
        title=f"CPU per image at {large:,} ÷ at {small:,} (limits lifted)",
        value=growth,
        target=CPU_GROWTH_LIMIT,
        better="lower",
        baseline=None,
        detail={"runs": runs, "rss_limit_mb": RSS_LIMIT_MB, "state_limit_bytes": STATE_LIMIT_BYTES},
        secondary_met=bounded and runs[1]["peak_rss_mb"] <= RSS_LIMIT_MB,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", default=",".join(map(str, DEFAULT_SIZES)), help="comma-separated batch sizes")
    parser.add_argument("--out", default=None, help="write the JSON here too")
    parser.add_argument("--role", nargs=4, metavar=("ROLE", "PART", "N", "WORKDIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role:
        harness.isolate_airflow()
        role, part, n, work = args.role
        print(json.dumps(_role(role, part, int(n), Path(work))))
        return 0
    harness.isolate_airflow()
    runs = [measure(int(n)) for n in args.n.split(",") if n.strip()]
    report: dict[str, Any] = {"runs": runs, "machine": harness.machine_info()}
    if len(runs) >= 2:
        report["cpu_per_image_growth"] = round(runs[-1]["cpu_ms_per_image"] / runs[0]["cpu_ms_per_image"], 3)
    report["met"] = {
        "state_bounded": all(
            r["trigger_kwargs_bytes"] <= STATE_LIMIT_BYTES and r["trigger_event_bytes"] <= STATE_LIMIT_BYTES
            for r in runs
        ),
        "rss_at_largest": runs[-1]["peak_rss_mb"] <= RSS_LIMIT_MB,
        "cpu_flat": report.get("cpu_per_image_growth", 1.0) <= CPU_GROWTH_LIMIT,
    }
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
