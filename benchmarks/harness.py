"""Shared plumbing for the benchmarks: an isolated Airflow home, emulator subprocesses, seeding, results.

Everything here is measurement scaffolding; the code under test is the provider itself
(``airflow_mps.operators.batch``, ``airflow_mps.triggers``, ``airflow_mps.hooks.mps``) driven exactly as
Airflow drives it (``execute()`` → ``TaskDeferred`` → ``trigger.run()`` → ``execute_complete()``).
"""

from __future__ import annotations

import asyncio
import io
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
BUCKET = "bench-1250000000"
#: The API's limits (design §7) and the injected round trip every scenario but P7 runs with. Describe*
#: at the strictest documented value (mps-api.md §0.12), the strict emulator's default (issue 11).
PROCESS_IMAGE_LIMIT = 20.0
DESCRIBE_LIMIT = 20.0
DEFAULT_LATENCY_MS = 150.0


def isolate_airflow() -> str:
    """Point Airflow at a throw-away home before it is first imported (never the user's own)."""
    home = tempfile.mkdtemp(prefix="airflow-mps-bench-")
    os.environ["AIRFLOW_HOME"] = home
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{home}/airflow.db"
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    import logging

    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)  # pool-size chatter under load
    for name in (
        "TENCENTCLOUD_SECRET_ID",
        "TENCENTCLOUD_SECRET_KEY",
        "TENCENTCLOUD_SESSION_TOKEN",
        "TENCENTCLOUD_TOKEN",
    ):
        os.environ.pop(name, None)
    return home


@dataclass
class Result:
    """One row of ``latest.json`` (the shape documented in docs/performance.md)."""

    id: str
    title: str
    value: float | None
    target: float | None
    better: str  # "higher" | "lower"
    baseline: float | None
    detail: dict[str, Any] = field(default_factory=dict)
    #: A second target of the same scenario (P6: RSS growth); ``met`` requires it too. Kept in detail.
    secondary_met: bool | None = None

    @property
    def met(self) -> bool | None:
        if self.value is None or self.target is None:
            return None
        ok = self.value >= self.target if self.better == "higher" else self.value <= self.target
        return ok and self.secondary_met is not False

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "value": _round(self.value),
            "target": self.target,
            "better": self.better,
            "met": self.met,
            "baseline": _round(self.baseline),
            "detail": {
                **self.detail,
                **({"secondary_met": self.secondary_met} if self.secondary_met is not None else {}),
            },
        }


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


# ---------------------------------------------------------------------------------------- emulator
@contextmanager
def emulator(
    *,
    workers: int = 64,
    task_duration_ms: str = "0",
    process_image_rate: int = int(PROCESS_IMAGE_LIMIT),
    describe_rate: int = int(DESCRIBE_LIMIT),
    latency_ms: float = 0.0,
) -> Iterator[Any]:
    """A fresh emulator subprocess (its own data dir, counters and rate windows) for one scenario.

    Latency is added through the admin endpoint after seeding (``set_latency``) so that seeding
    thousands of objects does not pay the injected round trip.
    """
    from airflow_mps.emulator.testing import EmulatorProcess

    with EmulatorProcess(
        workers=workers,
        task_duration_ms=task_duration_ms,
        process_image_rate=process_image_rate,
        describe_rate=describe_rate,
        latency_ms=latency_ms,
    ) as emu:
        yield emu


def set_latency(emu: Any, ms: float) -> None:
    if ms:
        emu.faults.latency(ms, "*")


def use_connection(emu: Any, process_image_rate: float | None = None) -> None:
    """Make ``tencentcloud_default`` point at ``emu`` (env var connection, as Airflow reads it)."""
    uri = emu.connection_uri()
    if process_image_rate is not None:
        uri += f"&process_image_rate={process_image_rate:g}"
    os.environ["AIRFLOW_CONN_TENCENTCLOUD_DEFAULT"] = uri


def action_counts(emu: Any) -> dict[str, dict[str, int]]:
    return dict(emu.stats()["actions"])


def count(stats: dict[str, dict[str, int]], action: str, outcome: str = "received") -> int:
    return int(stats.get(action, {}).get(outcome, 0))


def png_bytes(size: int = 16) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), (200, 80, 40)).save(buf, format="PNG")
    return buf.getvalue()


def seed(emu: Any, n: int, data: bytes | None = None, *, prefix: str | None = None) -> str:
    """Put ``n`` images under a fresh ``raw/<part>/`` prefix through the COS SDK; returns ``<part>``."""
    part = prefix or f"dt={uuid.uuid4().hex[:10]}"
    data = data if data is not None else png_bytes()
    client = emu.cos_client()
    keys = [f"raw/{part}/img_{i:05d}.png" for i in range(n)]
    emu.ensure_bucket(BUCKET)  # a PUT Object never creates a bucket (COS, and the strict emulator)

    def put(key: str) -> None:
        client.put_object(Bucket=BUCKET, Key=key, Body=data, ContentType="image/png")

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, keys))
    return part


# ------------------------------------------------------------------------------ driving operators
def context() -> dict[str, Any]:
    from types import SimpleNamespace

    from airflow_mps.emulator.testing import MemoryTaskStateStore

    return {"ti": SimpleNamespace(try_number=1), "task_state_store": MemoryTaskStateStore()}


def batch_operator(part: str, **kwargs: Any) -> Any:
    from airflow_mps.operators.batch import MpsBatchProcessImageOperator

    args: dict[str, Any] = {
        "task_id": "bench_batch",
        "source": f"cos://{BUCKET}/raw/{part}/",
        "destination": f"cos://{BUCKET}/enhanced/{part}/",
        "image_task": {"EncodeConfig": {"Format": "JPEG", "Quality": 80}},
        "deferrable": True,
        "poll_interval": 2,
    }
    args.update(kwargs)
    return MpsBatchProcessImageOperator(**args)


async def first_event(trigger: Any) -> Any:
    async for event in trigger.run():
        return event
    raise RuntimeError("the trigger yielded no event")


@dataclass
class BatchTimings:
    summary: dict[str, Any]
    slot_seconds: float  # time in execute() (+ execute_complete()) — a worker slot is held
    trigger_seconds: float  # time in the triggerer (no worker slot)
    total_seconds: float
    first_submit: float | None
    event: dict[str, Any] | None


def run_batch(op: Any) -> BatchTimings:
    """execute → (TaskDeferred → rebuilt trigger → execute_complete), timing each phase."""
    from airflow.providers.common.compat.sdk import TaskDeferred

    from airflow_mps.hooks.mps import MpsHook

    first: list[float] = []
    real = MpsHook.process_image

    def timed(self: Any, request: Any) -> Any:
        if not first:
            first.append(time.perf_counter())
        return real(self, request)

    ctx = context()
    MpsHook.process_image = timed  # type: ignore[method-assign]
    t0 = time.perf_counter()
    try:
        try:
            summary = op.execute(ctx)
            t1 = time.perf_counter()
            return BatchTimings(summary, t1 - t0, 0.0, t1 - t0, first[0] if first else None, None)
        except TaskDeferred as deferred:
            t1 = time.perf_counter()
            trigger = type(deferred.trigger)(**deferred.trigger.serialize()[1])  # as a triggerer does
            event = asyncio.run(first_event(trigger))
            t2 = time.perf_counter()
            summary = getattr(op, deferred.method_name)(ctx, event.payload)
            t3 = time.perf_counter()
            return BatchTimings(
                summary, (t1 - t0) + (t3 - t2), t2 - t1, t3 - t0, first[0] if first else None, event.payload
            )
    finally:
        MpsHook.process_image = real  # type: ignore[method-assign]


# ------------------------------------------------------------------------------------ machine info
def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": _memory_gb(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_commit": _git_commit(),
    }
    from importlib import metadata

    versions = {}
    for dist in (
        "apache-airflow",
        "apache-airflow-task-sdk",
        "tencentcloud-sdk-python-mps",
        "tencentcloud-sdk-python-common",
        "cos-python-sdk-v5",
        "httpx",
        "pillow",
    ):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    info["versions"] = versions
    return info


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return out.stdout.strip() or None
    except OSError:
        return None


def rss_mb(pid: int | None = None) -> float:
    """Resident set size of a process (Linux ``/proc``), MB."""
    status = Path(f"/proc/{pid or 'self'}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def python_subprocess(args: list[str], *, timeout: float, env: dict[str, str] | None = None) -> str:
    """Run ``python <args>`` with this interpreter; return stdout (raise with stderr on failure)."""
    proc = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or os.environ.copy(),
        cwd=REPO_ROOT,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc.stdout
