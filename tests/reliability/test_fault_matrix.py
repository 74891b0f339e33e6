"""Fault matrix: the emulator's fault injection driven through the real operators.

Each case seeds tiny images under its own partition, injects one kind of fault, runs
``MpsBatchProcessImageOperator`` (deferring, its trigger driven with asyncio exactly as a triggerer
rebuilds it from ``serialize()``) or ``MpsProcessImageOperator``, and asserts
- no image lost: every input is in the manifest as ``succeeded``, or ``failed`` with an MPS code;
- no duplicate submission: the emulator's own per-input submission counter never exceeds 1;
- every failure names its MPS code and RequestId.
Assertions are on counts; nothing is timed.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_mps.emulator.testing import MemoryTaskStateStore
from tests.retry_support import RETRY_PATIENCE

BUCKET = "faults-1250000000"
N = 16
FAIL_CODE = "SourceFileError.DownloadNotAccessible"  # a documented task ErrMsg (doc 266/50368)


@pytest.fixture(scope="module")
def png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (12, 12), (30, 120, 200)).save(buf, format="PNG")
    return buf.getvalue()


def _use(server: Any, monkeypatch: pytest.MonkeyPatch, **extras: Any) -> Any:
    uri = server.connection_uri() + "".join(f"&{k}={v}" for k, v in extras.items())
    monkeypatch.setenv("AIRFLOW_CONN_TENCENTCLOUD_DEFAULT", uri)
    server.cos_backend.create_bucket(BUCKET) if hasattr(server, "cos_backend") else None
    return server


@pytest.fixture
def conn(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    return _use(emulator, monkeypatch)


def _seed(put: Any, png: bytes, n: int = N, extra: dict[str, bytes] | None = None) -> str:
    part = f"dt={uuid.uuid4().hex[:10]}"
    for i in range(n):
        put(f"raw/{part}/img_{i:03d}.png", png)
    for name, data in (extra or {}).items():
        put(f"raw/{part}/{name}", data)
    return part


def _put(server: Any) -> Any:
    return lambda key, data: server.cos_backend.put_object(BUCKET, key, data, "image/png")


def _batch(part: str, **kwargs: Any) -> Any:
    from airflow_mps.operators.batch import MpsBatchProcessImageOperator

    args: dict[str, Any] = {
        "task_id": "batch",
        "source": f"cos://{BUCKET}/raw/{part}/",
        "destination": f"cos://{BUCKET}/enhanced/{part}/",
        "image_task": {"EncodeConfig": {"Format": "JPEG", "Quality": 80}},
        "poll_interval": 0.3,
        "deferrable": True,
        "submit_concurrency": 4,
        "max_failed_ratio": 1.0,
    }
    args.update(kwargs)
    op = MpsBatchProcessImageOperator(**args)
    op.hook.reconcile_deadline_seconds = RETRY_PATIENCE
    return op


def _ctx(store: Any, try_number: int = 1) -> dict[str, Any]:
    return {"ti": SimpleNamespace(try_number=try_number), "task_state_store": store}


async def _first_event(trigger: Any) -> Any:
    async for event in trigger.run():
        return event
    raise AssertionError("the trigger yielded nothing")


def _deferred(op: Any, ctx: dict[str, Any]) -> Any:
    from airflow.providers.common.compat.sdk import TaskDeferred

    with pytest.raises(TaskDeferred) as info:
        op.execute(ctx)
    return info.value


def _resume(op: Any, ctx: dict[str, Any], deferred: Any) -> Any:
    trigger = type(deferred.trigger)(**deferred.trigger.serialize()[1])  # as a (re)started triggerer
    event = asyncio.run(_first_event(trigger))
    return getattr(op, deferred.method_name)(ctx, event.payload)


def _run(op: Any, ctx: dict[str, Any]) -> Any:
    return _resume(op, ctx, _deferred(op, ctx))


def _manifest(server: Any, part: str) -> list[dict[str, Any]]:
    data = server.cos_backend.get_object(BUCKET, f"enhanced/{part}/_mps_manifest.jsonl").data
    return [json.loads(line) for line in data.decode().splitlines()]


def _check_no_loss_no_dupes(server: Any, part: str, expected_inputs: int) -> list[dict[str, Any]]:
    stats = server.stats()
    mine = {k: v for k, v in stats["submissions_by_input"].items() if part in k}
    assert all(v == 1 for v in mine.values()), f"duplicate submissions: {mine}"
    lines = _manifest(server, part)
    assert len(lines) == expected_inputs, f"lost images: {len(lines)} of {expected_inputs} in the manifest"
    for line in lines:
        assert line["state"] in ("succeeded", "failed"), line
        if line["state"] == "failed":
            assert line["error"]["code"], line
            assert line["error"]["request_id"], f"no RequestId for a failed image: {line}"
    return lines


# -------------------------------------------------------------------------------- request faults
FAULTS: list[tuple[str, dict[str, Any]]] = [
    (
        "throttling_storm_50pct",
        {"kind": "throttle", "action": "ProcessImage", "probability": 0.5, "duration": 3},
    ),
    ("internal_error_burst_on_describe", {"kind": "internal_error", "action": "Describe*", "count": 6}),
    ("http_502_on_process_image", {"kind": "http_502", "action": "ProcessImage", "count": 3}),
    ("http_503_on_describe", {"kind": "http_503", "action": "Describe*", "count": 4}),
    ("reset_before_body", {"kind": "reset_before", "action": "ProcessImage", "count": 3}),
    ("reset_after_body", {"kind": "reset_after", "action": "ProcessImage", "count": 2}),
    ("cos_throttled_listing", {"kind": "throttle", "action": "cos:*", "count": 2}),
]


#: Faults that leave ProcessImage's outcome unknown while no task was created. The hook never resubmits
#: on "nothing found" (a WAITING task cannot be listed): the try ends retryably and the next try (same
#: ledger) looks again and submits only what is missing (docs/reliability.md, retry classification).
AMBIGUOUS_NOTHING_CREATED = {"http_502_on_process_image", "reset_before_body"}


@pytest.mark.parametrize(("name", "fault"), FAULTS, ids=[f[0] for f in FAULTS])
def test_request_fault_loses_nothing_and_duplicates_nothing(
    name: str, fault: dict[str, Any], conn: Any, png: bytes
) -> None:
    from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

    part = _seed(_put(conn), png)
    spec = dict(fault)
    conn.faults.add(spec.pop("kind"), spec.pop("action"), **spec)
    store = MemoryTaskStateStore()
    op = _batch(part)
    op.hook.reconcile_deadline_seconds = 3.0  # the settle deadline, short for the test (default 60 s)
    if name in AMBIGUOUS_NOTHING_CREATED:
        with pytest.raises(AirflowException) as info:
            _run(op, _ctx(store))
        assert not isinstance(info.value, AirflowFailException), info.value
        assert "AmbiguousSubmission.NotFound" in str(info.value)
        op = _batch(part)  # Airflow's retry: a new operator object, the same task_state_store
        summary = _run(op, _ctx(store, try_number=2))
    else:
        summary = _run(op, _ctx(store))
    lines = _check_no_loss_no_dupes(conn, part, N)
    assert summary["succeeded"] == N and summary["failed"] == 0, summary
    assert {line["state"] for line in lines} == {"succeeded"}
    fired = sum(f["fired"] for f in conn.faults.list()) if fault.get("duration") else None
    errors = conn.stats()["errors"]
    faulted = sum(v.get("faulted", 0) for v in conn.stats()["actions"].values())
    assert faulted or errors or fired, f"{name}: the fault never fired ({conn.stats()['actions']})"


def test_responses_slower_than_the_client_timeout(
    emulator: Any, png: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ProcessImage answers after the client gave up (read timeout: ambiguous) — reconciled, not resubmitted."""
    conn = _use(emulator, monkeypatch, request_timeout=1)
    part = _seed(_put(conn), png, 6)
    conn.faults.slow(2.5, "ProcessImage", count=2)
    summary = _run(_batch(part, submit_concurrency=2), _ctx(MemoryTaskStateStore()))
    _check_no_loss_no_dupes(conn, part, 6)
    assert summary["succeeded"] == 6, summary
    assert conn.stats()["tasks_created"] == 6


def test_tasks_failing_inside_mps_carry_code_and_request_id(conn: Any, png: bytes) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    part = _seed(_put(conn), png)
    conn.faults.fail_tasks(err_code=60000, err_msg=FAIL_CODE, message="download failed", count=3)
    with pytest.raises(AirflowFailException) as info:
        _run(_batch(part, max_failed_ratio=0.0), _ctx(MemoryTaskStateStore()))
    assert FAIL_CODE in str(info.value) and "manifest" in str(info.value)
    lines = _check_no_loss_no_dupes(conn, part, N)
    failed = [line for line in lines if line["state"] == "failed"]
    assert len(failed) == 3 and {f["error"]["code"] for f in failed} == {FAIL_CODE}


def test_single_image_task_failure_message_has_code_task_and_request_id(conn: Any, png: bytes) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    from airflow_mps.operators.mps import MpsProcessImageOperator

    part = _seed(_put(conn), png, 1)
    conn.faults.fail_tasks(err_code=60000, err_msg=FAIL_CODE, message="download failed", count=1)
    op = MpsProcessImageOperator(
        task_id="one",
        input=f"cos://{BUCKET}/raw/{part}/img_000.png",
        image_task={"EncodeConfig": {"Format": "JPEG"}},
        deferrable=True,
        poll_interval=0.3,
        durable=False,
    )
    ctx = {
        "ti": SimpleNamespace(try_number=1, xcom_push=lambda *a, **k: None, start_date=None, stats_tags={}),
        "task_state_store": MemoryTaskStateStore(),
    }
    with pytest.raises(AirflowFailException) as info:
        _run(op, ctx)
    message = str(info.value)
    assert FAIL_CODE in message and "RequestId: " in message and "-WorkflowTask-" in message, message
    assert conn.stats()["tasks_created"] == 1


def test_corrupt_and_zero_byte_inputs_fail_alone(conn: Any, png: bytes) -> None:
    part = _seed(
        _put(conn), png, 6, extra={"corrupt.png": b"\x89PNG\r\n\x1a\nthis is not a png", "empty.png": b""}
    )
    summary = _run(_batch(part), _ctx(MemoryTaskStateStore()))
    lines = _check_no_loss_no_dupes(conn, part, 8)
    failed = {
        line["input"].rsplit("/", 1)[1]: line["error"]["code"] for line in lines if line["state"] == "failed"
    }
    assert set(failed) == {"corrupt.png", "empty.png"}, failed
    # Documented task failure codes (emulator-fidelity.md): a corrupt or empty file is malformed content.
    assert set(failed.values()) == {"SourceFileError.ContentMalformed"}, failed
    assert summary["succeeded"] == 6 and summary["failed"] == 2


def test_prefix_with_no_images(conn: Any) -> None:
    part = f"dt=none-{uuid.uuid4().hex[:6]}"
    conn.cos_backend.put_object(BUCKET, f"raw/{part}/README.txt", b"no images here", "text/plain")
    from airflow.providers.common.compat.sdk import AirflowFailException

    summary = _batch(part).execute(_ctx(MemoryTaskStateStore()))
    assert summary["total"] == 0 and summary["submitted"] == 0
    with pytest.raises(AirflowFailException, match="No image"):
        _batch(part, fail_on_empty=True).execute(_ctx(MemoryTaskStateStore()))
    assert conn.stats()["tasks_created"] == 0


def test_ten_thousand_keys_listing_only(conn: Any) -> None:
    """10,000 keys under one prefix: listed page by page (1,000 per page), none an image → 0 submissions."""
    part = f"dt=many-{uuid.uuid4().hex[:6]}"
    for i in range(10_000):
        conn.cos_backend.put_object(BUCKET, f"raw/{part}/f{i:05d}.txt", b"x", "text/plain")
    summary = _batch(part).execute(_ctx(MemoryTaskStateStore()))
    assert summary["total"] == 0
    listing = conn.stats()["actions"]
    list_calls = sum(v["received"] for k, v in listing.items() if "List" in k or k in ("cos:GetBucket",))
    assert list_calls >= 10, listing  # paged, not one giant answer
    assert conn.stats()["tasks_created"] == 0


# -------------------------------------------------------------------------------- process faults
def test_emulator_killed_and_restarted_mid_batch(
    tmp_path: Path, png: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 the MPS/COS emulator after submission, restart it on the same port and data dir: the
    (rebuilt) trigger finds every task, nothing is submitted twice."""
    from airflow_mps.emulator.testing import EmulatorProcess

    proc = EmulatorProcess(tmp_path / "emu", task_duration_ms="300:600")
    proc.start()
    try:
        monkeypatch.setenv("AIRFLOW_CONN_TENCENTCLOUD_DEFAULT", proc.connection_uri())
        part = f"dt={uuid.uuid4().hex[:10]}"
        cos = proc.cos_client()
        cos.create_bucket(Bucket=BUCKET)
        for i in range(N):
            cos.put_object(Bucket=BUCKET, Key=f"raw/{part}/img_{i:03d}.png", Body=png)
        op, ctx = _batch(part), _ctx(MemoryTaskStateStore())
        deferred = _deferred(op, ctx)
        assert proc.stats()["tasks_created"] == N
        proc.kill()
        proc.start()
        summary = _resume(op, ctx, deferred)
        assert summary["succeeded"] == N, summary
        stats = proc.stats()
        assert stats["tasks_created"] == 0  # counters restart with the process; tasks persisted
        body = (
            cos.get_object(Bucket=BUCKET, Key=f"enhanced/{part}/_mps_manifest.jsonl")["Body"]
            .get_raw_stream()
            .read()
        )
        lines = [json.loads(x) for x in body.decode().splitlines()]
        assert len(lines) == N and {x["state"] for x in lines} == {"succeeded"}
        assert len({x["task_id"] for x in lines}) == N
    finally:
        proc.stop()


WORKER = f"RETRY_PATIENCE = {RETRY_PATIENCE!r}  # tests/retry_support.py\n" + textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    from types import SimpleNamespace

    class FileStore:
        '''task_state_store with the real one's durability: every set() is fsync'ed to disk.'''
        def __init__(self, path):
            self.path = Path(path)
        def _load(self):
            return json.loads(self.path.read_text()) if self.path.exists() else {}
        def get(self, key, default=None):
            return self._load().get(key, default)
        def set(self, key, value):
            data = self._load(); data[key] = value
            tmp = self.path.with_suffix(".tmp")
            with open(tmp, "w") as fh:
                json.dump(data, fh); fh.flush(); os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        def delete(self, key):
            data = self._load(); data.pop(key, None); self.path.write_text(json.dumps(data))

    from airflow_mps.operators.batch import MpsBatchProcessImageOperator
    source, dest, store, try_number = sys.argv[1:5]
    op = MpsBatchProcessImageOperator(task_id="batch", source=source, destination=dest,
        image_task={"EncodeConfig": {"Format": "JPEG"}}, deferrable=False, poll_interval=0.3,
        submit_concurrency=2)
    op.hook.reconcile_deadline_seconds = RETRY_PATIENCE  # it retries at once
    ctx = {"ti": SimpleNamespace(try_number=int(try_number)), "task_state_store": FileStore(store)}
    print(json.dumps(op.execute(ctx)))
    """
)


def test_worker_killed_mid_submission_then_retried_in_a_fresh_process(
    emulator: Any, png: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL the worker process while it submits; the retry (a new process, try 2) adopts what the
    durable ledger and the listing reconciliation know, and submits only the rest."""
    conn = _use(emulator, monkeypatch)
    n = 40
    part = _seed(_put(conn), png, n)
    conn.faults.latency(60, "ProcessImage")  # slow the submission enough to kill it half way
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    store = tmp_path / "task_state_store.json"
    env = {**os.environ, "AIRFLOW_CONN_TENCENTCLOUD_DEFAULT": conn.connection_uri()}
    argv = [
        sys.executable,
        str(script),
        f"cos://{BUCKET}/raw/{part}/",
        f"cos://{BUCKET}/enhanced/{part}/",
        str(store),
    ]
    first = subprocess.Popen([*argv, "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while conn.stats()["tasks_created"] < n // 3 and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)
    finally:
        first.wait(30)
    assert first.returncode == -signal.SIGKILL, first.stderr.read()[-2000:]
    created_at_kill = conn.stats()["tasks_created"]
    assert 0 < created_at_kill < n, created_at_kill
    conn.faults.clear()
    emulator.wait_idle(10)
    created_before_retry = conn.stats()["tasks_created"]  # a request in flight at the kill may still land
    second = subprocess.run([*argv, "2"], env=env, capture_output=True, text=True, timeout=180)
    assert second.returncode == 0, second.stderr[-3000:]
    summary = json.loads(second.stdout.strip().splitlines()[-1])
    _check_no_loss_no_dupes(conn, part, n)
    assert summary["succeeded"] == n and summary["adopted"] + summary["submitted"] == n, summary
    assert summary["adopted"] >= created_before_retry, (summary, created_before_retry)
    assert conn.stats()["tasks_created"] == n
