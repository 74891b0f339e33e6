"""Unit tests of the batch engine's pure parts: validation, layout, ledger shards, codec, trigger shape."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_mps.batch import ledger as ledger_mod
from airflow_mps.batch import plan
from airflow_mps.batch.progress import (
    FAILED,
    SUCCEEDED,
    UNFINISHED,
    BatchWaitState,
    pack,
    unpack,
)

SRC = "cos://photos-1250000000/raw/dt=2026-11-01/"
DST = "cos://photos-1250000000/enhanced/dt=2026-11-01/"


class DictStore:
    """A dict with the ``task_state_store`` interface; counts writes per key."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.writes: dict[str, int] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return json.loads(json.dumps(self.data[key])) if key in self.data else default

    def set(self, key: str, value: Any) -> None:
        self.data[key] = json.loads(json.dumps(value))
        self.writes[key] = self.writes.get(key, 0) + 1


def _operator(**kwargs: Any) -> Any:
    from airflow_mps.operators.batch import MpsBatchProcessImageOperator

    args = {
        "task_id": "batch",
        "source": SRC,
        "destination": DST,
        "image_task": {"EncodeConfig": {"Format": "JPEG"}},
    }
    args.update(kwargs)
    return MpsBatchProcessImageOperator(**args)


BAD_ARGUMENTS = [
    ({"source": "s3://photos/raw/"}, "source"),
    ({"source": "cos://photos-1250000000/raw"}, "source"),  # not a prefix
    ({"source": "cos:///raw/"}, "source"),
    ({"source": "cos://photos-1250000000/raw/../x/"}, "source"),
    ({"source": ["cos://photos-1250000000/raw/"]}, "source"),  # list entries must be objects
    ({"source": 42}, "source"),
    ({"destination": "cos://photos-1250000000/enhanced"}, "destination"),
    ({"destination": "https://example.com/x/"}, "destination"),
    ({"destination": "cos://photos-1250000000/raw/dt=2026-11-01/out/"}, "destination"),  # inside source
    ({"destination": SRC}, "destination"),  # same as source
    ({"max_failed_ratio": 1.5}, "max_failed_ratio"),
    ({"max_failed_ratio": -0.1}, "max_failed_ratio"),
    ({"max_failed_ratio": True}, "max_failed_ratio"),
    ({"submit_concurrency": 0}, "submit_concurrency"),
    ({"submit_concurrency": 65}, "submit_concurrency"),
    ({"submit_concurrency": 2.5}, "submit_concurrency"),
    ({"poll_interval": -1}, "poll_interval"),
    ({"poll_interval": 0}, "poll_interval"),
    ({"timeout": -5}, "timeout"),
    ({"max_images": 0}, "max_images"),
    ({"suffixes": ["jpg"]}, "suffixes"),
    ({"suffixes": [".j pg"]}, "suffixes"),
    ({"suffixes": []}, "suffixes"),
    ({"suffixes": [3]}, "suffixes"),
    ({"manifest_name": "a/b.jsonl"}, "manifest_name"),
    ({"image_task": "{not json"}, "image_task"),
    ({"image_task": {"EncodeConfig": {"Format": "GIF"}}}, "image_task.EncodeConfig.Format"),
    ({"image_task": {"EncodeConfg": {}}}, "image_task"),
    ({"image_task": {"EncodeConfig": {"Quality": 0}}}, "image_task"),
]


@pytest.mark.parametrize(("kwargs", "field"), BAD_ARGUMENTS)
def test_invalid_arguments_fail_before_any_api_call(
    kwargs: dict[str, Any], field: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    op = _operator(**kwargs)
    monkeypatch.setattr(
        type(op),
        "hook",
        property(lambda self: pytest.fail("the hook must not be created for an invalid argument")),
    )
    with pytest.raises(AirflowFailException) as info:
        op.execute({})
    assert str(info.value).startswith(field), str(info.value)


def test_layout_mirrors_relative_paths_and_follows_the_format() -> None:
    dest = plan.parse_cos_location(DST, "destination", prefix=True)
    src = plan.parse_cos_location(SRC, "source", prefix=True)
    inputs = [plan.CosLocation(src.bucket, src.key + rel) for rel in ("a.png", "sub/b.JPEG", "c.v2.webp")]
    items = plan.plan_items(inputs, src.key, dest, "jpg").items
    assert [i.output_key for i in items] == [
        "enhanced/dt=2026-11-01/a.jpg",
        "enhanced/dt=2026-11-01/sub/b.jpg",
        "enhanced/dt=2026-11-01/c.v2.jpg",
    ]
    # The request's OutputPath ends with .{format}, as the API requires; MPS renders it to the key.
    assert [i.output_path for i in items][1] == "/enhanced/dt=2026-11-01/sub/b.{format}"
    # Without EncodeConfig.Format the output keeps the input's format, and {format} renders that
    # format's extension: .JPEG → .jpg (issue 12: the planned output is where the output lands).
    kept = plan.plan_items(inputs, src.key, dest, None).items
    assert [i.output_key for i in kept] == [
        "enhanced/dt=2026-11-01/a.png",
        "enhanced/dt=2026-11-01/sub/b.jpg",
        "enhanced/dt=2026-11-01/c.v2.webp",
    ]


def test_explicit_list_uses_the_common_directory_and_refuses_collisions() -> None:
    dest = plan.parse_cos_location(DST, "destination", prefix=True)
    source = plan.parse_source(["cos://in-1250000000/x/y/a.png", "cos://in-1250000000/x/z/b.png"])
    assert isinstance(source, list)
    items = plan.plan_items(source, None, dest, "jpg").items
    assert [i.output_key for i in items] == [
        "enhanced/dt=2026-11-01/y/a.jpg",
        "enhanced/dt=2026-11-01/z/b.jpg",
    ]
    # Two inputs that would write one output: both refused, for those images only (issue 12).
    clash = plan.parse_source(
        ["cos://in-1250000000/x/a.png", "cos://in-1250000000/x/a.bmp", "cos://in-1250000000/x/c.png"]
    )
    planned = plan.plan_items(clash, None, dest, "jpg")  # type: ignore[arg-type]
    assert [i.input_key for i in planned.items] == ["x/c.png"]
    assert [(r.input_uri, r.code) for r in planned.refused] == [
        ("cos://in-1250000000/x/a.png", plan.OUTPUT_COLLISION),
        ("cos://in-1250000000/x/a.bmp", plan.OUTPUT_COLLISION),
    ]
    assert [e[0] for e in planned.entries] == [loc.uri for loc in clash]  # type: ignore[union-attr]


def test_output_equal_to_input_is_refused() -> None:
    dest = plan.parse_cos_location("cos://in-1250000000/x/", "destination", prefix=True)
    source = plan.parse_source(["cos://in-1250000000/x/a.jpg", "cos://in-1250000000/x/sub/b.png"])
    planned = plan.plan_items(source, None, dest, "jpg")  # type: ignore[arg-type]
    assert [r.code for r in planned.refused] == [plan.OUTPUT_COLLISION]
    assert "is the input cos://in-1250000000/x/a.jpg" in planned.refused[0].message
    assert [i.input_key for i in planned.items] == ["x/sub/b.png"]


def test_suffix_filter_is_case_insensitive_and_skips_manifests_and_folders() -> None:
    keys = ["p/a.JPG", "p/b.png", "p/c.txt", "p/d/", "p/_mps_manifest.jsonl", "q/e.jpg", "p/f.WebP"]
    got = plan.filter_keys(keys, "p/", plan.normalize_suffixes(".jpg, .png, .webp"), "_mps_manifest.jsonl")
    assert got == ["p/a.JPG", "p/b.png", "p/f.WebP"]


def test_ledger_writes_shards_not_one_giant_value_and_reloads() -> None:
    store = DictStore()
    ledger = ledger_mod.SubmissionLedger(store)
    assert ledger.load().window_start is None
    ledger.begin("2026-11-01T00:00:00Z", fresh=True)
    for n in range(120):
        ledger.add(f"cos://b/{n}.png", f"task-{n}")
        ledger.maybe_flush()
    ledger.flush()
    shard_keys = sorted(k for k in store.data if k != ledger_mod.META_KEY)
    assert shard_keys == ["mps_batch/0000", "mps_batch/0001", "mps_batch/0002"]
    assert all(len(store.data[k]["t"]) <= ledger_mod.SHARD_SIZE for k in shard_keys)
    # No key is rewritten once per submission.
    assert max(store.writes.values()) < 20
    state = ledger_mod.SubmissionLedger(store).load()
    assert len(state.tasks) == 120 and state.tasks["cos://b/7.png"] == "task-7"
    assert state.window_start == "2026-11-01T00:00:00Z" and not state.completed


def test_ledger_retry_appends_and_keeps_history_and_completion_starts_a_new_generation() -> None:
    store = DictStore()
    first = ledger_mod.SubmissionLedger(store)
    first.load()
    first.begin("W", fresh=True)
    first.add("cos://b/a.png", "t1")
    first.flush()
    retry = ledger_mod.SubmissionLedger(store)
    assert retry.load().tasks == {"cos://b/a.png": "t1"}
    retry.begin("W", fresh=False)
    retry.add("cos://b/a.png", "t2")  # resubmitted after t1 failed
    retry.flush()
    state = ledger_mod.SubmissionLedger(store).load()
    assert state.tasks == {"cos://b/a.png": "t2"} and state.history == {"cos://b/a.png": ["t1"]}
    retry.mark_completed()
    done = ledger_mod.SubmissionLedger(store)
    assert done.load().completed
    done.begin("W2", fresh=True)
    again = ledger_mod.SubmissionLedger(store).load()
    assert again.tasks == {} and again.window_start == "W2" and again.generation == 1


def test_ledger_without_store_is_a_no_op() -> None:
    ledger = ledger_mod.SubmissionLedger(None)
    ledger.begin("W", fresh=True)
    ledger.add("a", "b")
    ledger.flush()
    assert not ledger.durable and ledger.load().tasks == {}


def _status(done: bool, ok: bool, path: str = "enhanced/a.jpg") -> Any:
    return SimpleNamespace(
        done=done,
        succeeded=done and ok,
        failed=done and not ok,
        outputs=(SimpleNamespace(bucket="photos-1250000000", path=path),) if ok else (),
        error_code=None if ok else "ResourceNotFound.DownloadError",
        error_message=None if ok else "x" * 1000,
        request_id="req-1",
    )


def test_wait_state_resolves_only_its_own_finished_tasks() -> None:
    state = BatchWaitState([("t1", "cos://b/1.png"), ("t2", "cos://b/2.png"), ("t3", "cos://b/3.png")])
    assert state.finished_in(["other", "t2", "t1"]) == ["t2", "t1"]
    assert not state.record("t3", _status(done=False, ok=True))
    assert state.record("t1", _status(done=True, ok=True))
    assert state.record("t2", _status(done=True, ok=False))
    assert state.progress_line() == "2/3 finished, 1 failed"
    rows = {r[0]: r for r in state.result_rows()}
    assert rows["t1"][2] == SUCCEEDED and rows["t1"][3] == ["photos-1250000000/enhanced/a.jpg"]
    assert rows["t2"][2] == FAILED and rows["t2"][4] == "ResourceNotFound.DownloadError"
    assert len(rows["t2"][5]) <= 300  # messages are cut
    assert rows["t3"][2] == UNFINISHED and not state.done


def test_direct_check_is_rate_limited() -> None:
    state = BatchWaitState([("t1", "a")], started=0.0)
    assert state.direct_check_due(now=10.0) == []
    assert state.direct_check_due(now=400.0) == ["t1"]
    assert state.direct_check_due(now=401.0) == []


def test_a_thousand_task_event_stays_small() -> None:
    rows = [
        [
            f"1250000000-WorkflowTask-{n:032x}",
            f"cos://photos-1250000000/raw/dt=2026-11-01/camera-{n % 7}/IMG_{n:06d}.png",
            SUCCEEDED,
            [f"photos-1250000000/enhanced/dt=2026-11-01/camera-{n % 7}/IMG_{n:06d}.jpg"],
            None,
            None,
            f"{n:08x}-1111-2222-3333-444455556666",
        ]
        for n in range(1000)
    ]
    text = pack(rows)
    assert unpack(text) == rows
    assert len(text) < 128 * 1024, len(text)


def test_trigger_serialize_round_trips_exactly() -> None:
    from airflow_mps.triggers.batch import MpsImageBatchTrigger

    end = time.time() + 60
    trigger = MpsImageBatchTrigger(
        tasks=[["t1", "cos://b/a.png"]],
        tencentcloud_conn_id="c",
        region="ap-guangzhou",
        poll_interval=2,
        end_time=end,
        window_start="2026-11-01T00:00:00Z",
        carry=pack({"x": 1}),
    )
    path, kwargs = trigger.serialize()
    assert path == "airflow_mps.triggers.batch.MpsImageBatchTrigger"
    rebuilt = MpsImageBatchTrigger(**kwargs)
    assert rebuilt.serialize() == (path, kwargs)
    assert kwargs["end_time"] == end and unpack(kwargs["tasks"]) == [["t1", "cos://b/a.png"]]
    json.dumps(kwargs)
