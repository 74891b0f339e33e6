"""Retry adoption against the documented service at its strictest (issue 11): listings of FINISH and
PROCESSING only, rows that may name no input, and WAITING tasks no listing shows."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_mps.batch import adopt
from airflow_mps.batch.plan import BatchItem, CosLocation
from airflow_mps.errors import MpsInvalidParameterError, MpsResourceNotFoundError
from airflow_mps.models import ImageTaskInfo
from airflow_mps.ownership import MIN_BATCH_DESCRIBES, batch_describe_cap
from tests.hook_contract import AdoptsImageTasks, DescribesImageTasks

BUCKET = "b-1250000000"
DEST = CosLocation(BUCKET, "out/")
TASK = {"EncodeConfig": {"Format": "JPEG"}}


def _item(name: str) -> BatchItem:
    return BatchItem(BUCKET, f"raw/{name}.png", f"out/{name}.jpg")


def _info(key: str, bucket: str = BUCKET) -> dict[str, Any]:
    return {"Type": "COS", "CosInputInfo": {"Bucket": bucket, "Region": "ap-guangzhou", "Object": "/" + key}}


class StrictHook(AdoptsImageTasks):
    """Listings of PROCESSING/FINISH only (WAITING refused) and, unless ``echo``, no ``Input``."""

    def __init__(self, tasks: dict[str, dict[str, Any]], *, echo: bool = False) -> None:
        #: task id → {"status", "create", "key", "bucket", "image_task", "output"}
        self.tasks = tasks
        self.echo = echo
        self.listed: list[str] = []
        self.described: list[str] = []

    def list_image_tasks(self, status: str, start_time: Any = None, **_: Any) -> Any:
        if status not in ("PROCESSING", "FINISH"):
            raise MpsInvalidParameterError("InvalidParameterValue", f"Status {status} is not supported")
        self.listed.append(status)
        for task_id, t in self.tasks.items():
            if t["status"] == status:
                info = json.dumps(_info(t["key"], t.get("bucket", BUCKET))) if self.echo else None
                yield ImageTaskInfo(task_id=task_id, status=status, create_time=t["create"], input=info)

    def _describe_response(self, task_id: str) -> dict[str, Any]:
        self.described.append(task_id)
        t = self.tasks.get(task_id)
        if t is None:
            raise MpsResourceNotFoundError("ResourceNotFound.TaskNotExist", task_id)
        response: dict[str, Any] = {
            "TaskId": task_id,
            "Status": t["status"],
            "InputInfo": _info(t["key"], t.get("bucket", BUCKET)),
            "ImageTask": t.get("image_task", TASK),
            "ErrCode": 0,
            "ErrMsg": "",
        }
        if t.get("output"):
            response["ImageProcessTaskResultSet"] = [
                {"Status": "SUCCESS", "Output": {"Path": "/" + t["output"]}}
            ]
        return response


def _task(key: str, create: str, status: str = "PROCESSING", **extra: Any) -> dict[str, Any]:
    return {"key": key, "create": create, "status": status, **extra}


@pytest.mark.parametrize("echo", [True, False], ids=["input-echoed", "no-input"])
def test_unrecorded_tasks_are_found_with_or_without_input_in_the_listing(echo: bool) -> None:
    hook = StrictHook(
        {
            "mine-a": _task("raw/a.png", "2026-11-01T00:00:05Z"),
            "mine-b": _task("raw/b.png", "2026-11-01T00:00:06Z", "FINISH"),
            "other-a": _task(
                "raw/a.png", "2026-11-01T00:00:07Z", image_task={"EncodeConfig": {"Format": "PNG"}}
            ),
            "stranger": _task("raw/zzz.png", "2026-11-01T00:00:08Z"),
        },
        echo=echo,
    )
    found = adopt.reconcile(
        hook,
        [_item("a"), _item("b"), _item("c")],
        "2026-11-01T00:00:00Z",
        image_task=TASK,
        destination=DEST,
        workers=2,
    )
    assert found == {f"cos://{BUCKET}/raw/a.png": "mine-a", f"cos://{BUCKET}/raw/b.png": "mine-b"}
    assert hook.listed == ["PROCESSING", "FINISH"]  # never WAITING
    if echo:  # matched by Input: only candidates with our inputs are described
        assert sorted(hook.described) == ["mine-a", "mine-b", "other-a"]
    else:  # every row names nothing: each described once, and that detail also verifies it
        assert sorted(hook.described) == ["mine-a", "mine-b", "other-a", "stranger"]


def test_rows_without_input_are_described_newest_first_and_stop_once_all_are_found() -> None:
    tasks = {f"old-{n:03d}": _task(f"raw/x{n}.png", f"2026-11-01T00:01:{n % 60:02d}Z") for n in range(50)}
    tasks["mine"] = _task("raw/a.png", "2026-11-01T00:09:00Z")
    hook = StrictHook(tasks)
    found = adopt.reconcile(
        hook, [_item("a")], "2026-11-01T00:00:00Z", image_task=TASK, destination=DEST, workers=1
    )
    assert found == {f"cos://{BUCKET}/raw/a.png": "mine"}
    assert hook.described[0] == "mine" and len(hook.described) <= 4  # one chunk of 4 × workers


def test_the_describe_cap_bounds_the_work_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    tasks = {
        f"t{n:04d}": _task(f"raw/x{n}.png", f"2026-11-01T01:{n // 60 % 60:02d}:{n % 60:02d}Z")
        for n in range(700)
    }
    hook = StrictHook(tasks)
    with caplog.at_level("WARNING"):
        found = adopt.reconcile(
            hook, [_item("a")], "2026-11-01T00:00:00Z", image_task=TASK, destination=DEST, workers=4
        )
    assert found == {}
    assert len(hook.described) == batch_describe_cap(1) == MIN_BATCH_DESCRIBES  # ownership's one cap rule
    assert "describing the newest 500" in caplog.text and "200 older" in caplog.text


def test_known_tasks_are_never_described_again() -> None:
    hook = StrictHook({"recorded": _task("raw/a.png", "2026-11-01T00:00:05Z")})
    found = adopt.reconcile(
        hook,
        [_item("b")],
        "2026-11-01T00:00:00Z",
        image_task=TASK,
        destination=DEST,
        workers=1,
        known_ids={"recorded"},
    )
    assert found == {} and hook.described == []


def test_a_finished_task_whose_output_is_elsewhere_is_not_adopted() -> None:
    hook = StrictHook({"thumb": _task("raw/a.png", "2026-11-01T00:00:05Z", "FINISH", output="thumbs/a.jpg")})
    found = adopt.reconcile(
        hook, [_item("a")], "2026-11-01T00:00:00Z", image_task=TASK, destination=DEST, workers=1
    )
    assert found == {}


class Statuses(DescribesImageTasks):
    """``describe_image_task`` answering from a script of states (``gone``: MPS no longer knows it)."""

    def __init__(self, states: list[str]) -> None:
        self.states = states
        self.calls = 0

    def describe_image_task(self, task_id: str) -> Any:
        from types import SimpleNamespace

        state = self.states[min(self.calls, len(self.states) - 1)]
        self.calls += 1
        if state == "gone":
            raise MpsResourceNotFoundError("ResourceNotFound", task_id)
        return SimpleNamespace(state=state)


def test_settling_waits_for_the_newest_recorded_task_to_leave_waiting() -> None:
    clock = {"now": 0.0}
    hook = Statuses(["WAITING", "WAITING", "PROCESSING"])
    started = adopt.wait_until_started(
        hook,
        "t-last",
        until=100.0,
        interval=5.0,
        sleep=lambda s: clock.__setitem__("now", clock["now"] + s),
        now=lambda: clock["now"],
    )
    assert started and hook.calls == 3 and clock["now"] == 10.0


def test_settling_is_bounded() -> None:
    clock = {"now": 0.0}
    hook = Statuses(["WAITING"])
    started = adopt.wait_until_started(
        hook,
        "t-last",
        until=12.0,
        interval=5.0,
        sleep=lambda s: clock.__setitem__("now", clock["now"] + s),
        now=lambda: clock["now"],
    )
    assert not started and clock["now"] == 12.0
    assert adopt.wait_until_started(Statuses(["gone"]), "t", until=0.0, interval=1.0)


def test_no_describe_is_paid_when_every_missing_item_already_has_its_output() -> None:
    hook = StrictHook({"mine": _task("raw/a.png", "2026-11-01T00:00:05Z", "FINISH", output="out/a.jpg")})
    found = adopt.reconcile(
        hook, [_item("a")], "2026-11-01T00:00:00Z", image_task=TASK, destination=DEST, workers=1, needed=()
    )
    assert found == {} and hook.described == []
    echoed = StrictHook(dict(hook.tasks), echo=True)  # a row that names its input costs nothing to match
    found = adopt.reconcile(
        echoed, [_item("a")], "2026-11-01T00:00:00Z", image_task=TASK, destination=DEST, workers=1, needed=()
    )
    assert found == {f"cos://{BUCKET}/raw/a.png": "mine"}
