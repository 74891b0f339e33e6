"""A partition of hostile keys against the emulator (issue 12, "Must show"): every input ends as exactly
one task or one failed manifest line with its reason; a rerun pays nothing for what succeeded; a lost
ledger shard never leads to a second task. Listings are the documented service at its strictest
(FINISH/PROCESSING only, no ``Input``), the harder case for adoption.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import unicodedata
import uuid
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_mps.emulator.testing import MemoryTaskStateStore
from tests.retry_support import RETRY_PATIENCE

BUCKET = "hostile-1250000000"
OK = "ok"
MPS_FAILED = "mps-failed"

#: Relative key → what must become of it. Planning codes are ``Planning.*`` (docs/batch.md).
HOSTILE: dict[str, str] = {
    "space name.png": OK,
    "dir with space/a b.png": OK,
    "照片/猫.png": OK,
    "emoji/😀 smile.png": OK,
    "plus+sign.png": OK,
    "percent%20literal.png": OK,
    "hash#tag.png": OK,
    "question?mark.png": OK,
    "amp&ersand.png": OK,
    "mix +%#?&.png": OK,
    "quote'apos.png": OK,
    "semi;colon,comma=eq@at$dollar.png": OK,
    "paren (1) [2] ~tilde^caret.png": OK,
    unicodedata.normalize("NFC", "café.png"): OK,
    unicodedata.normalize("NFD", "café.png"): OK,  # another key (other bytes), another output
    "multi.dot.name.png": OK,
    ".png": OK,  # a name that is only an extension
    "UPPER.PNG": OK,
    "d1/d2/d3/d4/deep.png": OK,
    "long/" + "k" * 780 + ".png": OK,  # 807 bytes with the prefix; its output (812) still fits
    "long/" + "t" * 820 + ".png": "Planning.OutputTooLong",  # a valid 847-byte key; its output, 852
    "./dot.png": "Planning.UnsafeKey",
    "a//b.png": "Planning.UnsafeKey",  # normalised it would be a/b.png's output
    "a/b.png": OK,
    "p/../dotdot.png": "Planning.UnsafeKey",
    "{inputName}.png": "Planning.UnsafeKey",
    "c/./mid.png": "Planning.UnsafeKey",
    "U.JPG": "Planning.OutputCollision",
    "U.jpg": "Planning.OutputCollision",
    "x.png": "Planning.OutputCollision",
    "x.jpg": "Planning.OutputCollision",
    "y.bmp": "Planning.OutputCollision",
    "y.webp": "Planning.OutputCollision",
    "zero-byte.png": MPS_FAILED,
    "not-an-image.png": MPS_FAILED,
}
#: Listed keys that are not inputs at all: no line, no task.
NOT_INPUTS = ("notes.txt", "folder.png/", "dir/", "_mps_manifest.jsonl")


@pytest.fixture(scope="module")
def png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 90)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def conn(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The session emulator behind ``tencentcloud_default``, listings as strict as documented."""
    from airflow_mps.errors import MpsInvalidParameterError
    from airflow_mps.hooks.mps import MpsHook

    monkeypatch.setenv("AIRFLOW_CONN_TENCENTCLOUD_DEFAULT", emulator.connection_uri())
    emulator.cos_backend.create_bucket(BUCKET)
    real, areal = MpsHook.list_image_tasks, MpsHook.alist_image_tasks

    def check(status: str) -> None:
        if status not in ("FINISH", "PROCESSING"):
            raise MpsInvalidParameterError("InvalidParameterValue", f"Status {status!r} is not supported")

    def strict(self: Any, status: str, *args: Any, **kwargs: Any) -> Any:
        check(status)
        return (dataclasses.replace(r, input=None) for r in real(self, status, *args, **kwargs))

    async def astrict(self: Any, status: str, *args: Any, **kwargs: Any) -> Any:
        check(status)
        async for row in areal(self, status, *args, **kwargs):
            yield dataclasses.replace(row, input=None)

    monkeypatch.setattr(MpsHook, "list_image_tasks", strict)
    monkeypatch.setattr(MpsHook, "alist_image_tasks", astrict)
    return emulator


def _seed(emulator: Any, png: bytes) -> str:
    part = f"dt={uuid.uuid4().hex[:10]}"
    for rel, outcome in HOSTILE.items():
        data = b"" if rel == "zero-byte.png" else b"hello, not a PNG" if rel == "not-an-image.png" else png
        emulator.cos_backend.put_object(BUCKET, f"raw/{part}/{rel}", data, "image/png")
        assert outcome  # every key has an expected outcome
    for rel in NOT_INPUTS:
        emulator.cos_backend.put_object(BUCKET, f"raw/{part}/{rel}", b"x", "text/plain")
    return part


def _operator(part: str, **kwargs: Any) -> Any:
    from airflow_mps.operators.batch import MpsBatchProcessImageOperator

    args: dict[str, Any] = {
        "task_id": "hostile",
        "source": f"cos://{BUCKET}/raw/{part}/",
        "destination": f"cos://{BUCKET}/enhanced/{part}/",
        "image_task": {"EncodeConfig": {"Format": "JPEG", "Quality": 80}},
        "poll_interval": 0.5,
        "max_failed_ratio": 1.0,  # the verdict is not under test here; every line is
        "deferrable": True,
    }
    args.update(kwargs)
    op = MpsBatchProcessImageOperator(**args)
    op.hook.reconcile_deadline_seconds = RETRY_PATIENCE
    return op


def _run(op: Any, store: MemoryTaskStateStore, try_number: int = 1) -> dict[str, Any]:
    from airflow.providers.common.compat.sdk import TaskDeferred

    ctx = {"ti": SimpleNamespace(try_number=try_number), "task_state_store": store}
    try:
        return dict(op.execute(ctx))
    except TaskDeferred as deferred:
        trigger = type(deferred.trigger)(**deferred.trigger.serialize()[1])

        async def first() -> Any:
            async for event in trigger.run():
                return event
            raise AssertionError("no event")

        event = asyncio.run(first())
        return dict(getattr(op, deferred.method_name)(ctx, event.payload))


def _manifest(emulator: Any, part: str) -> list[dict[str, Any]]:
    data = emulator.cos_backend.get_object(BUCKET, f"enhanced/{part}/_mps_manifest.jsonl").data
    return [json.loads(line) for line in data.decode().splitlines()]


def _submissions(emulator: Any, part: str) -> dict[str, int]:
    """Input URI → tasks created for it, this partition only."""
    prefix = f"cos://{BUCKET}/raw/{part}/"
    return {k: v for k, v in emulator.stats()["submissions_by_input"].items() if k.startswith(prefix)}


def _check_lines(emulator: Any, part: str, lines: list[dict[str, Any]]) -> None:
    """One line per input, in input order, each what its key calls for."""
    prefix = f"cos://{BUCKET}/raw/{part}/"
    assert sorted(line["input"] for line in lines) == sorted(prefix + rel for rel in HOSTILE)
    for line in lines:
        rel = line["input"][len(prefix) :]
        expected = HOSTILE[rel]
        if expected == OK:
            assert line["state"] == "succeeded" and line["task_id"], (rel, line)
            assert line["outputs"] == [line["output"]], (rel, line)  # landed where planned, verbatim
            key = line["output"][len(f"cos://{BUCKET}/") :]
            assert emulator.cos_backend.get_object(BUCKET, key).data, rel
        elif expected == MPS_FAILED:
            assert line["state"] == "failed" and line["task_id"], (rel, line)
            assert line["error"]["code"] and not line["error"]["code"].startswith("Planning."), (rel, line)
        else:
            assert line["state"] == "failed" and line["task_id"] is None, (rel, line)
            assert line["error"]["code"] == expected and line["error"]["message"], (rel, line)


def test_hostile_partition_one_task_or_one_reason_each_and_reruns_pay_nothing(conn: Any, png: bytes) -> None:
    part = _seed(conn, png)
    tasked = [rel for rel, outcome in HOSTILE.items() if outcome in (OK, MPS_FAILED)]
    assert len(HOSTILE) >= 30

    summary = _run(_operator(part), MemoryTaskStateStore())
    assert summary["total"] == len(HOSTILE)
    _check_lines(conn, part, _manifest(conn, part))
    first = _submissions(conn, part)
    assert sorted(first) == sorted(f"cos://{BUCKET}/raw/{part}/{rel}" for rel in tasked)
    assert set(first.values()) == {1}  # exactly one task each

    # A rerun (a new run: fresh ledger) pays nothing for what succeeded. Inputs whose MPS task failed
    # have no output and are submitted again (docs/batch.md, "Reruns and failed inputs"); inputs
    # refused while planning fail again, without a task.
    again = _run(_operator(part), MemoryTaskStateStore())
    assert again["skipped"] == sum(1 for o in HOSTILE.values() if o == OK)
    assert again["submitted"] == sum(1 for o in HOSTILE.values() if o == MPS_FAILED)
    second = _submissions(conn, part)
    for rel, outcome in HOSTILE.items():
        uri = f"cos://{BUCKET}/raw/{part}/{rel}"
        assert second.get(uri, 0) == {OK: 1, MPS_FAILED: 2}.get(outcome, 0), (rel, second.get(uri))
    lines = _manifest(conn, part)
    assert {line["state"] for line in lines if HOSTILE[line["input"].rsplit(f"{part}/", 1)[1]] == OK} == {
        "skipped"
    }


def test_hostile_partition_after_a_lost_ledger_shard_pays_no_task_twice(conn: Any, png: bytes) -> None:
    from airflow_mps.hooks.mps import MpsHook

    part = _seed(conn, png)
    store = MemoryTaskStateStore()
    real = MpsHook.process_image
    calls = {"n": 0}

    def crashing(self: Any, request: Any) -> Any:
        calls["n"] += 1
        if calls["n"] > 14:
            raise SystemExit("worker killed")  # not an MpsError: the try dies mid-submission
        return real(self, request)

    MpsHook.process_image = crashing  # type: ignore[method-assign]
    try:
        with pytest.raises(BaseException):  # noqa: B017 - the simulated crash
            _run(_operator(part, submit_concurrency=2), store)
    finally:
        MpsHook.process_image = real  # type: ignore[method-assign]
    created = sum(_submissions(conn, part).values())
    assert created >= 10
    # Lose a whole shard, as if the worker died before any of its records were flushed.
    lost = store.data.pop("mps_batch/0000")
    assert lost["t"], lost

    summary = _run(_operator(part, submit_concurrency=2), store, try_number=2)
    assert summary["total"] == len(HOSTILE)
    counts = _submissions(conn, part)
    lines = {line["input"]: line for line in _manifest(conn, part)}
    for rel, outcome in HOSTILE.items():
        uri = f"cos://{BUCKET}/raw/{part}/{rel}"
        if outcome == OK:  # never a second task, whether its record was lost or never written
            assert counts.get(uri) == 1, (rel, counts.get(uri))
        elif outcome == MPS_FAILED:  # a retry tries a failed image again, once, keeping the history
            assert counts.get(uri) in (1, 2), (rel, counts.get(uri))
            assert counts[uri] == 1 or len(lines[uri].get("previous_task_ids", ())) == 1, lines[uri]
        else:
            assert uri not in counts, rel
    lost_ok = [u for u in lost["t"] if HOSTILE[u.rsplit(f"{part}/", 1)[1]] == OK]
    assert summary["adopted"] >= len(lost_ok)  # found by listing (no Input) and adopted, not resubmitted
    _check_lines(conn, part, list(lines.values()))
