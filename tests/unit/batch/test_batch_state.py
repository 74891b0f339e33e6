"""Bounded deferral state (issue 12): the batch trigger's kwargs and event stay small at any N because
the pending set and the results live in two objects next to the manifest."""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_mps.batch import state as batch_state
from airflow_mps.batch.progress import SUCCEEDED
from tests.hook_contract import PollsImageTasksAsync, ReadsAndWritesCosObjects

#: What a MySQL TEXT column holds is 64 KiB; the provider's own bound is half that, at any N.
LIMIT = 32 * 1024
BUCKET = "photos-1250000000"
DEST = "enhanced/dt=2026-11-01/"


class MemoryCos(ReadsAndWritesCosObjects):
    """The two calls the trigger and the operator make on COS, in memory."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.writes = 0

    def read_object(self, bucket: str, key: str, region: str | None = None) -> bytes:
        return self.objects[(bucket, key)]

    def write_object(
        self, bucket: str, key: str, data: Any, content_type: str | None = None, region: Any = None
    ) -> str:
        self.objects[(bucket, key)] = bytes(data)
        self.writes += 1
        return "etag"


class FinishedHook(PollsImageTasksAsync):
    """Async MPS stand-in: every task is FINISHed and succeeded."""

    def __init__(self, task_ids: list[str]) -> None:
        self.task_ids = task_ids
        self.listed = 0
        self.described = 0

    async def alist_image_tasks(self, status: str, start_time: Any = None, **_: Any) -> Any:
        self.listed += 1
        for task_id in self.task_ids:
            yield SimpleNamespace(task_id=task_id, create_time=None)

    async def adescribe_image_task(self, task_id: str) -> Any:
        self.described += 1
        out = SimpleNamespace(bucket=BUCKET, path=f"{DEST}{task_id}.jpg")
        return SimpleNamespace(done=True, succeeded=True, outputs=(out,), request_id="r")

    async def aclose(self) -> None:
        return None


def _rows(n: int) -> list[list[Any]]:
    return [
        [
            f"1250000000-WorkflowTask-{i:032x}",
            f"cos://{BUCKET}/raw/dt=2026-11-01/cam-{i % 7}/IMG_{i:06d}.png",
            None,
        ]
        for i in range(n)
    ]


def _carry(n: int) -> dict[str, Any]:
    return {
        "items": [[r[1], r[1].replace("raw", "enhanced")] for r in _rows(n)],
        "skipped": [],
        "rejected": {},
        "history": {},
        "submitted": n,
        "adopted": 0,
    }


def _trigger(cos: MemoryCos, hook: Any, n: int, **kwargs: Any) -> Any:
    from airflow_mps.triggers.batch import MpsImageBatchTrigger

    wait_at, token = batch_state.store_deferral(
        cos, BUCKET, DEST, "_mps_manifest.jsonl", carry=_carry(n), pending=_rows(n), known=[]
    )
    trigger = MpsImageBatchTrigger(
        state=wait_at.uri,
        state_token=token,
        poll_interval=0.01,
        end_time=time.time() + 600,
        window_start="2026-11-01T00:00:00Z",
        prior_calls=[3, 40],
        **kwargs,
    )
    rebuilt = type(trigger)(**trigger.serialize()[1])  # as a triggerer rebuilds it
    rebuilt._hook = lambda: hook  # type: ignore[method-assign]
    rebuilt._cos = lambda: cos  # type: ignore[method-assign]
    return rebuilt


async def _events(trigger: Any) -> list[dict[str, Any]]:
    return [e.payload async for e in trigger.run()]


def test_kwargs_and_event_stay_under_32_kib_at_20000_tasks() -> None:
    n = 20_000
    cos = MemoryCos()
    hook = FinishedHook([r[0] for r in _rows(n)])
    trigger = _trigger(cos, hook, n)
    kwargs = trigger.serialize()[1]
    assert len(json.dumps(kwargs)) <= LIMIT, len(json.dumps(kwargs))
    events = asyncio.run(_events(trigger))
    assert len(events) == 1 and events[0]["status"] == "success"
    assert len(json.dumps(events[0])) <= LIMIT, len(json.dumps(events[0]))
    assert events[0]["counts"] == {"total": n, SUCCEEDED: n, "failed": 0, "unfinished": 0}
    assert hook.described == n  # once per task
    # The results are where the event says, tied to this deferral by its token.
    where = batch_state.StateObject.parse(events[0]["state"])
    doc = batch_state.decode(cos.objects[(where.bucket, where.key)], events[0]["state_token"], "wait")
    assert len(doc["results"]) == n and doc["outcome"]["status"] == "success"
    carry, rows = batch_state.load_results(cos, BUCKET, DEST, "_mps_manifest.jsonl", events[0])
    assert len(carry["items"]) == n and len(rows) == n


def test_a_restarted_trigger_reports_results_written_before_it_died() -> None:
    cos = MemoryCos()
    first = _trigger(cos, FinishedHook([r[0] for r in _rows(3)]), 3)
    asyncio.run(_events(first))
    again_hook = FinishedHook([])
    again = type(first)(**first.serialize()[1])
    again._hook = lambda: again_hook  # type: ignore[method-assign]
    again._cos = lambda: cos  # type: ignore[method-assign]
    events = asyncio.run(_events(again))
    assert events[0]["status"] == "success" and events[0]["counts"][SUCCEEDED] == 3
    assert again_hook.listed == 0 and again_hook.described == 0  # nothing asked of MPS again


def test_checkpoints_keep_what_is_resolved_for_a_restart(monkeypatch: pytest.MonkeyPatch) -> None:
    import airflow_mps.triggers.batch as trigger_mod

    monkeypatch.setattr(trigger_mod, "CHECKPOINT_SECONDS", 0.0)
    cos = MemoryCos()
    rows = _rows(4)
    hook = FinishedHook([rows[0][0], rows[1][0]])  # two of four finish; the deadline stops the wait
    trigger = _trigger(cos, hook, 4)
    trigger.end_time = time.time() + 0.3
    writes_before = cos.writes
    events = asyncio.run(_events(trigger))
    assert events[0]["status"] == "timeout" and events[0]["counts"]["unfinished"] == 2
    assert cos.writes >= writes_before + 2  # at least one checkpoint, then the final results
    assert hook.described == 2


def test_a_state_overwritten_by_another_run_is_an_error_event_and_a_retryable_failure() -> None:
    from airflow.providers.common.compat.sdk import AirflowException

    from airflow_mps.operators.batch import MpsBatchProcessImageOperator

    cos = MemoryCos()
    trigger = _trigger(cos, FinishedHook([]), 2)
    batch_state.store_deferral(
        cos, BUCKET, DEST, "_mps_manifest.jsonl", carry=_carry(1), pending=[], known=[]
    )
    events = asyncio.run(_events(trigger))
    assert events[0]["status"] == "error" and events[0]["error"]["code"] == batch_state.STATE_ERROR
    assert "another deferral" in events[0]["error"]["message"]
    op = MpsBatchProcessImageOperator(
        task_id="batch", source=f"cos://{BUCKET}/raw/dt=2026-11-01/", destination=f"cos://{BUCKET}/{DEST}"
    )
    op.__dict__["hook"] = cos
    with pytest.raises(AirflowException, match="a retry starts over") as info:
        op.execute_complete({}, events[0])
    assert type(info.value).__name__ == "AirflowException"  # retryable, not AirflowFailException


def test_state_objects_live_next_to_the_manifest_and_round_trip() -> None:
    carry_at, wait_at = batch_state.state_objects(BUCKET, DEST, "_mps_manifest.jsonl")
    assert carry_at.uri == f"cos://{BUCKET}/{DEST}_mps_manifest.jsonl.carry.gz"
    assert wait_at.uri == f"cos://{BUCKET}/{DEST}_mps_manifest.jsonl.wait.gz"
    doc = batch_state.wait_doc("t", [["a", "cos://b/a.png", None]], [])
    assert batch_state.decode(batch_state.encode(doc), "t", "wait") == doc
    with pytest.raises(batch_state.StateError):
        batch_state.decode(b"not gzip", "t", "wait")


def test_streamed_encoding_is_plain_compact_json() -> None:
    import gzip

    doc = {
        "v": 1,
        "token": "t",
        "carry": {
            "items": [[f"cos://b/k{i}.png", f"o/k{i}.jpg"] for i in range(3000)],
            "x": {"a": [1, None]},
        },
        "pending": [[f"t{i}", "u", 1.5] for i in range(10)],
        "text": 'é😀"\\',
    }
    text = gzip.decompress(batch_state.encode(doc)).decode()
    assert text == json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
