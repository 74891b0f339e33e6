"""Metrics of the batch operator for real (issue 14 item 6): the operator against the emulator through
the real hook and SDK, ``Stats`` replaced by a stub that records what it is given.

One partition of good images plus a corrupt one, ProcessImage throttled once: the first run submits
every image (each call timed once), the corrupt one fails in MPS, the throttled attempts are counted;
a rerun (deferred, so the counts also come through ``execute_complete``) skips the outputs that exist
and resubmits only the corrupt image. The single-image operator's twin is
test_operator_metrics_emulator.py.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("PIL")
from PIL import Image

from airflow_mps.emulator.testing import MemoryTaskStateStore
from airflow_mps.utils.metrics import (
    CALLS_THROTTLED,
    IMAGES_FAILED,
    IMAGES_SKIPPED,
    IMAGES_SUBMITTED,
    IMAGES_SUCCEEDED,
    SUBMIT_LATENCY,
)
from tests.metrics_support import StatsStub
from tests.retry_support import RETRY_PATIENCE

BUCKET = "batchmetrics-1250000000"
GOOD = 6
#: The MPS actions a non-deferred batch calls through its (watched) hook.
MPS_ACTIONS = ("ProcessImage", "DescribeImageTasks", "DescribeImageTaskDetail")


@pytest.fixture
def conn(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AIRFLOW_CONN_TENCENTCLOUD_DEFAULT", emulator.connection_uri())
    emulator.cos_backend.create_bucket(BUCKET)
    return emulator


def _seed(emulator: Any) -> str:
    """``GOOD`` PNGs and one corrupt PNG under a fresh partition; returns the partition."""
    part = f"dt={uuid.uuid4().hex[:10]}"
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (40, 120, 200)).save(buf, format="PNG")
    for i in range(GOOD):
        emulator.cos_backend.put_object(BUCKET, f"raw/{part}/img_{i}.png", buf.getvalue(), "image/png")
    # Same bytes as the reliability suite's: a PNG signature, then garbage (SourceFileError.ContentMalformed).
    emulator.cos_backend.put_object(
        BUCKET, f"raw/{part}/corrupt.png", b"\x89PNG\r\n\x1a\nthis is not a png", "image/png"
    )
    return part


def _operator(part: str, *, deferrable: bool) -> Any:
    from airflow.sdk import DAG

    from airflow_mps.operators.batch import MpsBatchProcessImageOperator

    with DAG("batch_metrics", schedule=None):
        op = MpsBatchProcessImageOperator(
            task_id="enhance",
            source=f"cos://{BUCKET}/raw/{part}/",
            destination=f"cos://{BUCKET}/enhanced/{part}/",
            image_task={"EncodeConfig": {"Format": "JPEG", "Quality": 80}},
            region="ap-guangzhou",
            max_failed_ratio=0.5,  # the corrupt image fails alone; the task succeeds
            poll_interval=0.2,
            deferrable=deferrable,
        )
    op.hook.reconcile_deadline_seconds = RETRY_PATIENCE
    return op


def _run(op: Any) -> dict[str, Any]:
    """execute → (defer → trigger.run() → execute_complete) like the triggerer would; the summary the
    operator pushed (also when its failure policy then failed the task)."""
    from airflow.providers.common.compat.sdk import AirflowFailException, TaskDeferred

    pushed: dict[str, Any] = {}
    ctx: dict[str, Any] = {
        "ti": SimpleNamespace(try_number=1, xcom_push=lambda key, value: pushed.__setitem__(key, value)),
        "task_state_store": MemoryTaskStateStore(),
    }
    try:
        try:
            op.execute(ctx)
        except TaskDeferred as deferred:
            trigger = type(deferred.trigger)(**deferred.trigger.serialize()[1])

            async def first() -> Any:
                async for event in trigger.run():
                    return event.payload
                raise AssertionError("the trigger yielded nothing")

            getattr(op, deferred.method_name)(ctx, asyncio.run(first()))
    except AirflowFailException:
        pushed["policy_failed"] = True
    return pushed


def _mps(emulator: Any, outcome: str, actions: tuple[str, ...] = MPS_ACTIONS) -> int:
    counters = emulator.stats()["actions"]
    return sum(int(counters.get(action, {}).get(outcome, 0)) for action in actions)


def test_every_batch_metric_against_the_emulator(conn: Any, stats: StatsStub) -> None:
    part = _seed(conn)
    conn.faults.throttle("ProcessImage", count=1)  # a submitter thread is refused once, then retries

    first = _run(_operator(part, deferrable=False))["summary"]
    assert (first["succeeded"], first["failed"], first["skipped"]) == (GOOD, 1, 0)
    calls = _mps(conn, "succeeded", ("ProcessImage",))  # ProcessImage calls answered with a task
    assert calls == GOOD + 1
    assert stats.total(IMAGES_SUBMITTED) == GOOD + 1
    assert stats.total(IMAGES_SUCCEEDED) == GOOD
    assert stats.total(IMAGES_FAILED) == 1
    # Tagged with the corrupt image's MPS error code, as the single-image operator tags it.
    [failed_tags] = [tags for kind, name, value, tags in stats.calls if name == IMAGES_FAILED and value]
    assert failed_tags["code"] == first["failed_inputs"][0]["code"] and failed_tags["code"]
    assert stats.total(IMAGES_SKIPPED) == 0
    # Every throttled attempt the worker's hook retried: the one injected, and any the pacing drew.
    assert stats.total(CALLS_THROTTLED) == _mps(conn, "throttled") >= 1
    # One timer sample per ProcessImage call, from the submitter.
    assert stats.total(SUBMIT_LATENCY) == calls
    latencies = [value for kind, name, value, _ in stats.calls if name == SUBMIT_LATENCY]
    assert all(isinstance(v, timedelta) and v >= timedelta(0) for v in latencies)
    expected = {"dag_id": "batch_metrics", "task_id": "enhance", "operator": "MpsBatchProcessImageOperator"}
    assert all({k: tags.get(k) for k in expected} == expected for _, _, _, tags in stats.calls)

    # The rerun, deferred: the good images' outputs exist (skipped), the corrupt one is submitted again,
    # fails again, and the policy fails the task (1 of 1) — after the counts were emitted.
    stats.calls.clear()
    before = _mps(conn, "succeeded", ("ProcessImage",))
    pushed = _run(_operator(part, deferrable=True))
    again = pushed["summary"]
    assert pushed.get("policy_failed") and (again["skipped"], again["submitted"], again["failed"]) == (
        GOOD,
        1,
        1,
    )
    assert stats.total(IMAGES_SKIPPED) == GOOD
    assert stats.tags_of(IMAGES_SKIPPED)[0]["reason"] == "output_exists"
    assert stats.total(IMAGES_SUBMITTED) == 1 and stats.total(IMAGES_FAILED) == 1
    assert stats.total(IMAGES_SUCCEEDED) == 0
    assert stats.total(SUBMIT_LATENCY) == _mps(conn, "succeeded", ("ProcessImage",)) - before == 1
