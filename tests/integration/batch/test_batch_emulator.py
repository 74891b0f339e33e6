"""The batch operator end to end against the emulator: official SDKs over HTTP, real task lifecycle.

Each test seeds tiny PNGs under its own prefix, runs the operator (catching ``TaskDeferred`` and
driving the trigger with asyncio, or in non-deferrable mode), then checks the emulator's own counters
and the manifest it stored. Assertions are on counts, never on elapsed time.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import uuid
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_mps.emulator.testing import MemoryTaskStateStore
from tests.retry_support import RETRY_PATIENCE

BUCKET = "batch-1250000000"
FAILED_CODE = "ResourceNotFound.DownloadError"


@pytest.fixture(scope="module")
def png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 80, 40)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(params=["input-echoed", "no-input"])
def listing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """DescribeImageTasks as documented at its strictest (issue 11), whatever the emulator's build:
    ``Status`` FINISH or PROCESSING only (WAITING → InvalidParameterValue) and, in the ``no-input``
    run, rows without ``Input`` (its format is unpublished). Applied at the hook, so the provider's
    own paths are what is tested."""
    import dataclasses

    from airflow_mps.errors import MpsInvalidParameterError
    from airflow_mps.hooks.mps import MpsHook

    strip = request.param == "no-input"
    real, areal = MpsHook.list_image_tasks, MpsHook.alist_image_tasks

    def check(status: str) -> None:
        if status not in ("FINISH", "PROCESSING"):
            raise MpsInvalidParameterError("InvalidParameterValue", f"Status {status!r} is not supported")

    def strict(self: Any, status: str, *args: Any, **kwargs: Any) -> Any:
        check(status)
        rows = real(self, status, *args, **kwargs)
        return (dataclasses.replace(r, input=None) for r in rows) if strip else rows

    async def astrict(self: Any, status: str, *args: Any, **kwargs: Any) -> Any:
        check(status)
        async for row in areal(self, status, *args, **kwargs):
            yield dataclasses.replace(row, input=None) if strip else row

    monkeypatch.setattr(MpsHook, "list_image_tasks", strict)
    monkeypatch.setattr(MpsHook, "alist_image_tasks", astrict)
    return str(request.param)


@pytest.fixture
def conn(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AIRFLOW_CONN_TENCENTCLOUD_DEFAULT", emulator.connection_uri())
    emulator.cos_backend.create_bucket(BUCKET)
    return emulator


def _seed(emulator: Any, png: bytes, n: int) -> str:
    """``n`` images under a fresh partition prefix; returns the partition name."""
    part = f"dt={uuid.uuid4().hex[:10]}"
    for i in range(n):
        emulator.cos_backend.put_object(BUCKET, f"raw/{part}/sub{i % 3}/img_{i:04d}.png", png, "image/png")
    return part


def _operator(part: str, **kwargs: Any) -> Any:
    from airflow_mps.operators.batch import MpsBatchProcessImageOperator

    args: dict[str, Any] = {
        "task_id": "batch",
        "source": f"cos://{BUCKET}/raw/{part}/",
        "destination": f"cos://{BUCKET}/enhanced/{part}/",
        "image_task": {"EncodeConfig": {"Format": "JPEG", "Quality": 80}},
        "poll_interval": 0.5,
        "deferrable": True,
    }
    args.update(kwargs)
    op = MpsBatchProcessImageOperator(**args)
    op.hook.reconcile_deadline_seconds = RETRY_PATIENCE
    return op


def _context(store: MemoryTaskStateStore | None, try_number: int = 1) -> dict[str, Any]:
    ctx: dict[str, Any] = {"ti": SimpleNamespace(try_number=try_number)}
    if store is not None:
        ctx["task_state_store"] = store
    return ctx


async def _first_event(trigger: Any) -> Any:
    async for event in trigger.run():
        return event
    raise AssertionError("the trigger yielded nothing")


def _run(op: Any, ctx: dict[str, Any]) -> Any:
    """execute → (defer → trigger.run() → execute_complete) like the triggerer would."""
    from airflow.providers.common.compat.sdk import TaskDeferred

    try:
        return op.execute(ctx)
    except TaskDeferred as deferred:
        trigger = type(deferred.trigger)(**deferred.trigger.serialize()[1])  # as a triggerer rebuilds it
        event = asyncio.run(_first_event(trigger))
        return getattr(op, deferred.method_name)(ctx, event.payload)


def _manifest(emulator: Any, part: str) -> list[dict[str, Any]]:
    data = emulator.cos_backend.get_object(BUCKET, f"enhanced/{part}/_mps_manifest.jsonl").data
    return [json.loads(line) for line in data.decode().splitlines()]


def _state_doc(emulator: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The wait document a deferred batch stored (its location and token are in the trigger kwargs)."""
    from airflow_mps.batch.state import StateObject, decode

    where = StateObject.parse(kwargs["state"])
    return decode(
        emulator.cos_backend.get_object(where.bucket, where.key).data, kwargs["state_token"], "wait"
    )


def _actions(emulator: Any) -> dict[str, dict[str, int]]:
    return emulator.stats()["actions"]


def _count(emulator: Any, action: str, outcome: str = "received") -> int:
    return int(_actions(emulator).get(action, {}).get(outcome, 0))


def _answered(emulator: Any, action: str) -> int:
    """Calls of ``action`` the emulator answered: received minus refused (throttled). On a starved
    machine a paced thread can wake late next to another and draw a RequestLimitExceeded, which the
    hook retries — a refused attempt is not a second call for the task."""
    return _count(emulator, action) - _count(emulator, action, "throttled")


def test_300_images_at_the_limit_with_latency(conn: Any, png: bytes) -> None:
    part = _seed(conn, png, 300)
    conn.faults.latency(150)
    summary = _run(_operator(part, submit_concurrency=8), _context(MemoryTaskStateStore()))
    stats = conn.stats()
    assert summary["total"] == 300 and summary["succeeded"] == 300 and summary["failed"] == 0
    assert stats["tasks_created"] == 300
    assert not stats["duplicate_submissions"]
    # Any throttled call was retried by the hook and none failed: every task created exactly once.
    assert _count(conn, "ProcessImage", "succeeded") == 300
    assert _count(conn, "ProcessImage", "failed") == 0
    # Completion detection: one detail per task plus a few listings.
    assert _answered(conn, "DescribeImageTaskDetail") == 300
    assert _count(conn, "DescribeImageTasks") <= 0.3 * 300
    lines = _manifest(conn, part)
    assert len(lines) == 300 and {line["state"] for line in lines} == {"succeeded"}
    assert lines[0]["output"].startswith(f"cos://{BUCKET}/enhanced/{part}/sub0/") and lines[0][
        "output"
    ].endswith(".jpg")


def test_the_submission_summary_says_how_the_account_was_paced(
    conn: Any, png: bytes, capfd: pytest.CaptureFixture[str]
) -> None:
    # A batch that ran below the limit must say why: its summary names the pacing (alone, sharing
    # after a storm, late to a full account, fixed) and what the service refused — counted by the
    # process's own bucket, so they must be the emulator's own counts of this batch's requests.
    from airflow_mps.hooks._buckets import reset_shared_buckets

    part = _seed(conn, png, 40)
    reset_shared_buckets()  # the session's bucket may still be sharing after an earlier test
    capfd.readouterr()
    summary = _run(_operator(part, submit_concurrency=4), _context(MemoryTaskStateStore()))
    assert summary["succeeded"] == 40
    logged = capfd.readouterr()
    text = logged.out + logged.err  # the task logger writes to the console here
    assert re.search(r"Submitted 40 tasks \(0 rejected\) in \d+\.\d+s \(\d+\.\d+/s\)", text)
    (pacing,) = re.findall(r"ProcessImage pacing: [^\n\[]*", text)
    received, throttled = _count(conn, "ProcessImage"), _count(conn, "ProcessImage", "throttled")
    assert received == 40 + throttled
    assert f"; ProcessImage: {received - throttled} accepted, {throttled} throttled (" in pacing
    if throttled == 0:  # nothing refused: nothing could have shown another process
        assert pacing.startswith("ProcessImage pacing: alone on the account at ")
        assert "(limit 20/s)" in pacing


def test_status_calls_per_image_stay_low(conn: Any, png: bytes, listing: str) -> None:
    """P2 without ``Input`` in listings too: completion needs only task ids from the FINISH rows."""
    part = _seed(conn, png, 150)
    summary = _run(_operator(part, poll_interval=2), _context(MemoryTaskStateStore()))
    assert summary["succeeded"] == 150
    # One answered detail call per image. A refused (throttled) attempt is not one: on a starved
    # machine a paced thread can wake late next to another and draw a RequestLimitExceeded, retried.
    assert _answered(conn, "DescribeImageTaskDetail") == 150  # one answered detail call per image
    describe = _answered(conn, "DescribeImageTasks") + _answered(conn, "DescribeImageTaskDetail")
    assert describe <= 1.3 * 150, describe


def test_retry_after_a_crash_half_way_submits_nothing_twice(conn: Any, png: bytes, listing: str) -> None:
    from airflow_mps.hooks.mps import MpsHook

    part = _seed(conn, png, 60)
    store = MemoryTaskStateStore()
    op = _operator(part, submit_concurrency=4)
    real = MpsHook.process_image
    calls = {"n": 0}

    def crashing(self: Any, request: Any) -> Any:
        calls["n"] += 1
        if calls["n"] > 30:
            raise SystemExit("worker killed")  # not an MpsError: the try dies
        return real(self, request)

    MpsHook.process_image = crashing  # type: ignore[method-assign]
    try:
        with pytest.raises(BaseException):  # noqa: B017 - the simulated crash
            op.execute(_context(store))
    finally:
        MpsHook.process_image = real  # type: ignore[method-assign]
    # Lose the records of the last few submissions, as if the worker died before flushing them.
    shard = store.data["mps_batch/0000"]
    lost = sorted(shard["t"])[-5:]
    for key in lost:
        del shard["t"][key]
    assert conn.stats()["tasks_created"] == 30

    summary = _run(_operator(part, submit_concurrency=4), _context(store, try_number=2))
    stats = conn.stats()
    assert summary["succeeded"] == 60 and summary["adopted"] == 30 and summary["submitted"] == 30
    assert stats["tasks_created"] == 60
    assert not stats["duplicate_submissions"]


def test_rerun_submits_nothing_and_overwrite_resubmits(conn: Any, png: bytes) -> None:
    part = _seed(conn, png, 20)
    first = _run(_operator(part), _context(MemoryTaskStateStore()))
    assert first["succeeded"] == 20
    created = conn.stats()["tasks_created"]
    again = _run(_operator(part), _context(MemoryTaskStateStore()))
    assert again["skipped"] == 20 and again["submitted"] == 0
    assert conn.stats()["tasks_created"] == created
    assert {line["state"] for line in _manifest(conn, part)} == {"skipped"}
    forced = _run(_operator(part, overwrite=True), _context(MemoryTaskStateStore()))
    assert forced["submitted"] == 20 and forced["succeeded"] == 20
    assert conn.stats()["tasks_created"] == created + 20


@pytest.mark.parametrize("ratio", [0.0, 0.1])
def test_partial_failure_policy(conn: Any, png: bytes, ratio: float) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    part = _seed(conn, png, 100)
    conn.faults.fail_tasks(err_code=70001, err_msg=FAILED_CODE, message="download failed", count=5)
    op = _operator(part, max_failed_ratio=ratio)
    if ratio == 0.0:
        with pytest.raises(AirflowFailException, match=r"5 of 100 images failed") as info:
            _run(op, _context(MemoryTaskStateStore()))
        assert FAILED_CODE in str(info.value)
    else:
        summary = _run(op, _context(MemoryTaskStateStore()))
        assert summary["failed"] == 5 and summary["succeeded"] == 95
        assert len(summary["failed_inputs"]) == 5
    lines = _manifest(conn, part)  # written before the policy applied, with every task finished
    assert len(lines) == 100
    failed = [line for line in lines if line["state"] == "failed"]
    assert len(failed) == 5 and all(line["error"]["code"] == FAILED_CODE for line in failed)
    assert sum(line["state"] == "succeeded" for line in lines) == 95


def test_non_deferrable_mode(conn: Any, png: bytes) -> None:
    part = _seed(conn, png, 25)
    summary = _operator(part, deferrable=False).execute(_context(None))
    assert summary["succeeded"] == 25 and summary["total"] == 25
    assert len(_manifest(conn, part)) == 25
    assert conn.stats()["tasks_created"] == 25


def test_empty_prefix_succeeds_or_fails_on_flag(conn: Any) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    part = f"dt=empty-{uuid.uuid4().hex[:6]}"
    summary = _run(_operator(part), _context(MemoryTaskStateStore()))
    assert summary["total"] == 0 and summary["submitted"] == 0
    with pytest.raises(AirflowFailException, match="No image"):
        _run(_operator(part, fail_on_empty=True), _context(MemoryTaskStateStore()))


def test_retry_does_not_adopt_another_pipelines_tasks_for_the_same_inputs(
    conn: Any, png: bytes, listing: str
) -> None:
    """Two operators read one partition (enhanced JPEGs and PNG thumbnails). The enhanced one dies
    before submitting anything; meanwhile the thumbnail one processes every image. The enhanced
    retry lists the tasks created since its window start: they carry the same inputs, but they are
    not its tasks (another ImageTask, other outputs), so it must submit its own."""
    from airflow_mps.hooks.mps import MpsHook

    part = _seed(conn, png, 6)
    store = MemoryTaskStateStore()
    real = MpsHook.process_image

    def dying(self: Any, request: Any) -> Any:
        raise SystemExit("worker killed before the first submission")

    MpsHook.process_image = dying  # type: ignore[method-assign]
    try:
        with pytest.raises(BaseException):  # noqa: B017 - the simulated crash
            _operator(part).execute(_context(store))
    finally:
        MpsHook.process_image = real  # type: ignore[method-assign]
    assert "mps_batch/meta" in store.data  # the window start was recorded before submitting

    thumbs = _run(
        _operator(
            part,
            task_id="thumbs",
            destination=f"cos://{BUCKET}/thumbs/{part}/",
            image_task={"EncodeConfig": {"Format": "PNG"}},
        ),
        _context(MemoryTaskStateStore()),
    )
    assert thumbs["succeeded"] == 6
    created = conn.stats()["tasks_created"]

    summary = _run(_operator(part), _context(store, try_number=2))
    assert summary["adopted"] == 0 and summary["submitted"] == 6 and summary["succeeded"] == 6
    assert conn.stats()["tasks_created"] == created + 6
    for line in _manifest(conn, part):
        assert line["outputs"] and all(
            o.startswith(f"cos://{BUCKET}/enhanced/{part}/") for o in line["outputs"]
        )


_LOOP_PROBE = r"""
import asyncio, json, sys, threading

imports = []


class Probe:
    # Records every first import of the Tencent Cloud SDK and the thread doing it.
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tencentcloud":
            imports.append((name, threading.get_ident()))
        return None


import httpx  # noqa: F401  (a triggerer has it loaded already: the task SDK's API client uses it)

sys.meta_path.insert(0, Probe())
from airflow_mps.triggers.batch import MpsImageBatchTrigger

loop = {}


async def main():
    loop["thread"] = threading.get_ident()
    trigger = MpsImageBatchTrigger(tasks=[[sys.argv[1], "cos://b-1/k.png"]], poll_interval=0.2)
    async for event in trigger.run():
        return event


event = asyncio.run(main())
print(json.dumps({
    "status": event.payload["status"],
    "imported": len(imports),
    "on_loop": sorted({name for name, thread in imports if thread == loop["thread"]}),
}))
"""


def test_trigger_never_imports_the_sdk_on_the_event_loop(conn: Any, png: bytes) -> None:
    """The SDK (models.py alone is 3.6 MB) is imported on the triggerer's first MPS call; doing that
    on the loop stalls every other trigger of the process. Checked in a fresh interpreter by the
    thread that performs each import, not by timing."""
    import os
    import subprocess
    import sys

    from airflow_mps.hooks.mps import MpsHook
    from airflow_mps.models import ProcessImageRequest

    conn.cos_backend.put_object(BUCKET, "loop/a.png", png, "image/png")
    task_id = (
        MpsHook()
        .process_image(ProcessImageRequest.build(input=f"cos://{BUCKET}/loop/a.png", region="ap-guangzhou"))
        .task_id
    )
    env = {**os.environ, "AIRFLOW_CONN_TENCENTCLOUD_DEFAULT": conn.connection_uri()}
    out = subprocess.run(
        [sys.executable, "-c", _LOOP_PROBE, task_id], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == "success" and result["imported"] > 0
    assert result["on_loop"] == [], result["on_loop"]


def test_trigger_closes_its_async_client(conn: Any, png: bytes) -> None:
    """Each trigger run opens an httpx client; a triggerer runs thousands of them over its life."""
    from airflow_mps.hooks.mps import MpsHook
    from airflow_mps.models import ProcessImageRequest
    from airflow_mps.triggers.batch import MpsImageBatchTrigger

    conn.cos_backend.put_object(BUCKET, "loop/b.png", png, "image/png")
    task_id = (
        MpsHook()
        .process_image(ProcessImageRequest.build(input=f"cos://{BUCKET}/loop/b.png", region="ap-guangzhou"))
        .task_id
    )
    hooks: list[Any] = []
    trigger = MpsImageBatchTrigger(tasks=[[task_id, f"cos://{BUCKET}/loop/b.png"]], poll_interval=0.2)
    original = trigger._hook

    def spy() -> Any:
        hooks.append(original())
        return hooks[-1]

    trigger._hook = spy  # type: ignore[method-assign]
    event = asyncio.run(_first_event(trigger))
    assert event.payload["status"] == "success"
    assert len(hooks) == 1 and len(hooks[0]._async_clients) == 0


def test_tasks_finished_while_submitting_are_described_before_deferring(conn: Any, png: bytes) -> None:
    """The overlap: the Describe budget works during the submission, the trigger gets only the tail
    (plus the results known so far), and still each task is described exactly once."""
    from airflow.providers.common.compat.sdk import TaskDeferred

    n = 120  # 6 s of submission at the 20/s limit, with the 0.5 s poll interval of _operator()
    part = _seed(conn, png, n)
    conn.faults.latency(150)
    op = _operator(part, submit_concurrency=8)
    ctx = _context(MemoryTaskStateStore())
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    kwargs = deferred.value.trigger.serialize()[1]
    doc = _state_doc(conn, kwargs)  # the tail and the known results live next to the manifest
    pending, known = doc["pending"], doc["known"]
    assert known and pending, (len(known), len(pending))  # the last submissions always form a tail
    assert len(known) + len(pending) == n
    assert {row[0] for row in known}.isdisjoint(row[0] for row in pending)
    assert _answered(conn, "DescribeImageTaskDetail") == len(known)
    assert all(len(row) == 3 and row[2] is not None for row in pending)  # creation floors: a narrow listing
    trigger = type(deferred.value.trigger)(**kwargs)
    event = asyncio.run(_first_event(trigger))
    summary = op.execute_complete(ctx, event.payload)
    assert summary["succeeded"] == n and summary["failed"] == 0
    assert _answered(conn, "DescribeImageTaskDetail") == n  # once per task, overlap and trigger together
    assert conn.stats()["tasks_created"] == n
    lines = _manifest(conn, part)
    assert len(lines) == n and all(line["outputs"] for line in lines)


def test_non_deferrable_mode_overlaps_too_and_describes_each_task_once(conn: Any, png: bytes) -> None:
    part = _seed(conn, png, 60)
    conn.faults.latency(150)
    summary = _operator(part, deferrable=False).execute(_context(MemoryTaskStateStore()))
    assert summary["succeeded"] == 60 and summary["total"] == 60
    assert _answered(conn, "DescribeImageTaskDetail") == 60
    assert len(_manifest(conn, part)) == 60
