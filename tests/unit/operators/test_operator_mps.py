"""Unit tests of MpsProcessImageOperator's decisions (validation, submit-or-reconnect, waiting modes,
error mapping, XCom, lineage) with a scripted hook and an in-memory task_state_store.

The same flows run for real (SDK → HTTP → emulator, dag.test) in tests/integration/operators/test_operator_mps_emulator.py;
here each branch is driven deterministically and the call counts are asserted.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException, TaskDeferred

from airflow_mps.errors import (
    MpsInvalidParameterError,
    MpsResourceNotFoundError,
    MpsTransientError,
)
from airflow_mps.hooks.mps import Submission
from airflow_mps.models import ImageTaskStatus
from airflow_mps.operators.mps import MpsProcessImageOperator
from airflow_mps.triggers.mps import MpsImageTaskTrigger
from airflow_mps.utils.lineage import lineage_datasets, openlineage_from_pairs
from airflow_mps.utils.results import build_task_xcom, result_from_event
from tests.hook_contract import FindsImageTasks, SubmitsImageTasks

REGION = "ap-guangzhou"

#: Whether the operator persists its TaskId through ``task_state_store`` (Airflow's own
#: ``ResumableJobMixin``, Airflow >= 3.3). Probed on the operator itself, not on a version string:
#: common-compat's stand-in for older Airflow leaves ``durable`` False and every try submits.
HAS_TASK_STATE_STORE = bool(MpsProcessImageOperator(task_id="probe", input="x").durable)
needs_store = pytest.mark.skipif(
    not HAS_TASK_STATE_STORE,
    reason="task_state_store / ResumableJobMixin absent (Airflow < 3.3): every try submits, nothing is stored",
)
without_store = pytest.mark.skipif(
    HAS_TASK_STATE_STORE, reason="behaviour of Airflow < 3.3 (no task_state_store); this Airflow has one"
)


def status(state: str, task_id: str = "task-1", err: str | None = None) -> ImageTaskStatus:
    body: dict[str, Any] = {"Status": state, "RequestId": "req-d"}
    if state == "FINISH":
        body["ImageProcessTaskResultSet"] = [
            {
                "Status": "FAIL" if err else "SUCCESS",
                "ErrMsg": err or "",
                "Message": "bad input" if err else "",
                "Output": None
                if err
                else {
                    "Path": "/enhanced/a.webp",
                    "OutputStorage": {
                        "Type": "COS",
                        "CosOutputStorage": {"Bucket": "out-1250000000", "Region": REGION},
                    },
                    "SignedUrl": "http://127.0.0.1/enhanced/a.webp?sig",
                },
            }
        ]
    return ImageTaskStatus.from_api(body, task_id=task_id)


class FakeHook(SubmitsImageTasks):
    """Scripted MpsHook: records calls; describe answers from a per-task script."""

    def __init__(self, store: FakeStore | None = None) -> None:
        self.submitted: list[Any] = []
        self.described: list[str] = []
        self.scripts: dict[str, list[Any]] = {}
        self.store = store
        self.store_at_first_describe: dict[str, Any] | None = None

    def process_image(self, request: Any) -> Submission:
        self.submitted.append(request)
        return Submission(task_id=f"task-{len(self.submitted)}", request_id=f"req-s{len(self.submitted)}")

    def describe_image_task(self, task_id: str) -> ImageTaskStatus:
        if self.store_at_first_describe is None and self.store is not None:
            self.store_at_first_describe = dict(self.store.data)
        self.described.append(task_id)
        script = self.scripts.get(task_id) or [status("FINISH", task_id)]
        item = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(item, BaseException):
            raise item
        return item


class FakeStore:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any, **_: Any) -> None:
        self.data[key] = value


class FakeTI:
    def __init__(self) -> None:
        self.xcoms: dict[str, Any] = {}
        self.stats_tags: dict[str, str] = {}
        self.start_date = datetime.now(timezone.utc)

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


def make(**kwargs: Any) -> tuple[MpsProcessImageOperator, FakeHook, dict[str, Any]]:
    args: dict[str, Any] = {
        "task_id": "process",
        "input": "cos://in-1250000000/raw/a.jpg",
        "output_storage": "cos://out-1250000000",
        "output_dir": "/enhanced/",
        "image_task": {"EncodeConfig": {"Format": "webp"}},
        "region": REGION,
        "poll_interval": 0.01,
    }
    args.update(kwargs)
    op = MpsProcessImageOperator(**args)
    store = FakeStore()
    hook = FakeHook(store)
    op.__dict__["hook"] = hook
    context: dict[str, Any] = {"ti": FakeTI(), "task_state_store": store}
    return op, hook, context


def retry(op: MpsProcessImageOperator, context: dict[str, Any]) -> dict[str, Any]:
    """A new try of the same task instance: same store, fresh TI XComs."""
    return {"ti": FakeTI(), "task_state_store": context["task_state_store"]}


# ---------------------------------------------------------------------------------------------- init
def test_templated_fields_are_not_validated_in_init() -> None:
    op = MpsProcessImageOperator(task_id="t", input="{{ params.image }}", image_task="{{ params.cfg }}")
    assert op.input == "{{ params.image }}"
    assert set(op.template_fields) == {
        "tencentcloud_conn_id",
        "input",
        "output_storage",
        "output_dir",
        "output_path",
        "image_task",
        "definition",
        "resource_id",
        "schedule_id",
        "add_on_parameter",
        "std_ext_info",
        "region",
    }
    assert op.template_fields_renderers == {"image_task": "json", "add_on_parameter": "json"}


def test_defaults_follow_airflow_config(monkeypatch: pytest.MonkeyPatch) -> None:
    assert MpsProcessImageOperator(task_id="a", input="x").deferrable is False
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")
    assert MpsProcessImageOperator(task_id="b", input="x").deferrable is True


@pytest.mark.parametrize("bad", [{"poll_interval": 0}, {"timeout": -1}])
def test_non_templated_waiting_args_are_checked_at_init(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        MpsProcessImageOperator(task_id="t", input="x", **bad)


# ---------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"input": "ftp://nope/a.jpg"}, "input"),
        ({"image_task": {"EncodeConfig": {"Format": "gif"}}}, "image_task.EncodeConfig.Format"),
        ({"image_task": {"EncodeConfig": {"Quality": 101}}}, "image_task.EncodeConfig.Quality"),
        ({"schedule_id": "abc"}, "schedule_id"),
    ],
)
def test_invalid_arguments_fail_before_any_api_call(overrides: dict[str, Any], field: str) -> None:
    op, hook, ctx = make(**overrides)
    with pytest.raises(AirflowFailException) as info:
        op.execute(ctx)
    assert field.split(".")[0] in str(info.value)
    assert hook.submitted == [] and hook.described == []
    assert ctx["task_state_store"].data == {}


# ---------------------------------------------------------------------------------------------- sync
@needs_store
def test_sync_persists_task_id_before_waiting() -> None:
    op, hook, ctx = make()
    hook.scripts["task-1"] = [status("WAITING"), status("PROCESSING"), status("FINISH")]
    op.execute(ctx)
    stored = hook.store_at_first_describe[op.external_id_key]
    assert stored["mps_task_id"] == "task-1" and stored["request_id"] == "req-s1"


def test_sync_waits_and_returns_outputs() -> None:
    """Signed URLs are bearer links: the XCom keeps the key with ``None`` unless the user opts in."""
    op, hook, ctx = make()
    hook.scripts["task-1"] = [status("WAITING"), status("PROCESSING"), status("FINISH")]
    result = op.execute(ctx)
    assert len(hook.submitted) == 1
    assert hook.described == ["task-1"] * 3
    assert result == {
        "mps_task_id": "task-1",
        "status": "SUCCESS",
        "request_id": "req-s1",
        "outputs": [
            {
                "bucket": "out-1250000000",
                "region": REGION,
                "path": "enhanced/a.webp",
                "uri": "cosn://out-1250000000/enhanced/a.webp",
                "signed_url": None,
            }
        ],
        "error": None,
    }
    assert ctx["ti"].xcoms["mps_task_id"] == "task-1"
    assert ctx["ti"].xcoms["_link_MpsTaskLink"].endswith("?taskId=task-1")


def test_sync_failed_task_fails_without_retry_naming_code_task_and_request() -> None:
    op, hook, ctx = make()
    hook.scripts["task-1"] = [status("FINISH", err="ResourceNotFound.DownloadError")]
    with pytest.raises(AirflowFailException) as info:
        op.execute(ctx)
    text = str(info.value)
    assert "ResourceNotFound.DownloadError" in text and "task-1" in text and "req-s1" in text
    assert "bad input" in text


def test_sync_polls_through_transient_errors() -> None:
    op, hook, ctx = make()
    hook.scripts["task-1"] = [MpsTransientError("InternalError", "x", "r"), status("FINISH")]
    assert op.execute(ctx)["status"] == "SUCCESS"
    assert hook.described == ["task-1", "task-1"]


def test_sync_deadline_is_a_retryable_failure() -> None:
    op, hook, ctx = make(timeout=0.05)
    hook.scripts["task-1"] = [status("PROCESSING")]
    with pytest.raises(AirflowException) as info:
        op.execute(ctx)
    assert not isinstance(info.value, AirflowFailException)
    assert "deadline" in str(info.value)


def test_terminal_submission_error_fails_without_retry() -> None:
    op, hook, ctx = make()

    def refuse(request: Any) -> Submission:
        raise MpsInvalidParameterError("InvalidParameter.InputInfo", "bad", "req-z")

    hook.process_image = refuse  # type: ignore[method-assign]
    with pytest.raises(AirflowFailException, match=r"InvalidParameter.InputInfo.*req-z"):
        op.execute(ctx)


# ---------------------------------------------------------------------------------------------- retries
@needs_store
def test_retry_reconnects_to_running_task_instead_of_resubmitting() -> None:
    op, hook, ctx = make()
    hook.scripts["task-1"] = [status("PROCESSING")]
    with pytest.raises(AirflowException):  # first try: dies while waiting (deadline)
        op.timeout = 0.02
        op.execute(ctx)
    op.timeout = None
    hook.scripts["task-1"] = [status("PROCESSING"), status("FINISH")]
    result = op.execute(retry(op, ctx))
    assert len(hook.submitted) == 1
    assert result["mps_task_id"] == "task-1" and result["status"] == "SUCCESS"


@needs_store
def test_retry_after_success_returns_the_stored_result() -> None:
    op, hook, ctx = make()
    op.execute(ctx)
    second = retry(op, ctx)
    result = op.execute(second)
    assert len(hook.submitted) == 1
    assert result["mps_task_id"] == "task-1" and result["outputs"][0]["path"] == "enhanced/a.webp"
    assert second["ti"].xcoms["mps_task_id"] == "task-1"


@needs_store
@pytest.mark.parametrize(
    "prior",
    [status("FINISH", err="FailedOperation.X"), MpsResourceNotFoundError("ResourceNotFound", "gone", "r")],
    ids=["failed", "not-found"],
)
def test_retry_resubmits_after_terminal_failure_or_unknown_task(prior: Any) -> None:
    op, hook, ctx = make()
    ctx["task_state_store"].set(
        op.external_id_key,
        {
            "mps_task_id": "task-0",
            "request_id": "r0",
            "fingerprint": op.request_fingerprint(op.build_request()),
        },
    )
    hook.scripts["task-0"] = [prior]
    result = op.execute(ctx)
    assert len(hook.submitted) == 1 and result["mps_task_id"] == "task-1"
    assert ctx["task_state_store"].data[op.external_id_key]["mps_task_id"] == "task-1"


@needs_store
def test_retry_with_transient_error_on_stored_task_never_resubmits() -> None:
    op, hook, ctx = make()
    ctx["task_state_store"].set(
        op.external_id_key,
        {
            "mps_task_id": "task-0",
            "request_id": "r0",
            "fingerprint": op.request_fingerprint(op.build_request()),
        },
    )
    hook.scripts["task-0"] = [MpsTransientError("InternalError", "down", "r")]
    with pytest.raises(AirflowException) as info:
        op.execute(ctx)
    assert not isinstance(info.value, AirflowFailException)
    assert hook.submitted == []


def test_changed_arguments_submit_a_new_task() -> None:
    op, hook, ctx = make()
    op.execute(ctx)
    op.image_task = {"EncodeConfig": {"Format": "png"}}
    result = op.execute(retry(op, ctx))
    assert len(hook.submitted) == 2 and result["mps_task_id"] == "task-2"


def test_without_task_state_store_every_try_submits() -> None:
    op, hook, ctx = make()
    ctx.pop("task_state_store")
    op.execute(ctx)
    op.execute({"ti": FakeTI()})
    assert len(hook.submitted) == 2


# ---------------------------------------------------------------------------------------------- Airflow < 3.3
# No task_state_store: the operator documents "every try submits; the hook's reconciliation applies".
# Each test hands the operator a store anyway (as a context might carry one) to show it is not used.
@without_store
def test_before_3_3_durable_is_ignored_with_a_warning() -> None:
    with pytest.warns(UserWarning, match="durable"):
        op = MpsProcessImageOperator(task_id="t", input="x", durable=True)
    assert op.durable is False


@without_store
def test_before_3_3_a_retry_after_dying_while_waiting_submits_a_new_task() -> None:
    op, hook, ctx = make(timeout=0.02)
    hook.scripts["task-1"] = [status("PROCESSING")]
    with pytest.raises(AirflowException) as info:  # first try: its deadline passes while waiting
        op.execute(ctx)
    assert not isinstance(info.value, AirflowFailException)
    assert ctx["ti"].xcoms["mps_task_id"] == "task-1"
    op.timeout = None
    second = retry(op, ctx)
    result = op.execute(second)
    assert len(hook.submitted) == 2 and result["mps_task_id"] == "task-2" and result["status"] == "SUCCESS"
    assert second["ti"].xcoms["mps_task_id"] == "task-2"
    assert "task-1" not in hook.described[hook.described.index("task-2") :]
    assert ctx["task_state_store"].data == {}


@without_store
def test_before_3_3_a_retry_after_success_submits_again() -> None:
    op, hook, ctx = make()
    op.execute(ctx)
    result = op.execute(retry(op, ctx))
    assert len(hook.submitted) == 2 and result["mps_task_id"] == "task-2"
    assert ctx["task_state_store"].data == {}


@without_store
def test_before_3_3_every_deferral_hands_the_trigger_a_new_task() -> None:
    op, hook, ctx = make(deferrable=True)
    with pytest.raises(TaskDeferred) as first:
        op.execute(ctx)
    with pytest.raises(TaskDeferred) as second:
        op.execute(retry(op, ctx))
    assert (first.value.trigger.mps_task_id, second.value.trigger.mps_task_id) == ("task-1", "task-2")
    assert hook.described == [] and ctx["task_state_store"].data == {}


@without_store
def test_before_3_3_fire_and_forget_submits_on_every_try() -> None:
    op, hook, ctx = make(wait_for_completion=False)
    op.execute(ctx)
    again = op.execute(retry(op, ctx))
    assert len(hook.submitted) == 2 and again == {
        "mps_task_id": "task-2",
        "status": "SUBMITTED",
        "request_id": "req-s2",
        "outputs": [],
        "error": None,
    }
    assert hook.described == []


@without_store
def test_before_3_3_no_marker_and_no_adoption_listing() -> None:
    """The submit → store window does not exist without a store: no marker is written and a retry never
    lists MPS to adopt a task (the hook's own submission reconciliation is the protection)."""
    op, hook, ctx = make_window()
    op.execute(ctx)
    op.execute(retry(op, ctx))
    assert hook.listings == 0 and len(hook.submitted) == 2
    assert ctx["task_state_store"].data == {}


# ---------------------------------------------------------------------------------------------- deferrable
def test_deferrable_defers_with_absolute_deadline() -> None:
    op, hook, ctx = make(deferrable=True, timeout=600)
    before = time.time()
    with pytest.raises(TaskDeferred) as info:
        op.execute(ctx)
    deferred = info.value
    trig = deferred.trigger
    assert isinstance(trig, MpsImageTaskTrigger)
    assert trig.mps_task_id == "task-1" and trig.request_id == "req-s1"
    assert before + 600 <= trig.end_time <= time.time() + 600
    assert deferred.method_name == "execute_complete"
    assert deferred.timeout > timedelta(seconds=600)
    assert hook.described == []
    assert ctx["ti"].xcoms["mps_task_id"] == "task-1"


@needs_store
def test_deferrable_stores_before_deferring() -> None:
    op, _hook, ctx = make(deferrable=True)
    with pytest.raises(TaskDeferred):
        op.execute(ctx)
    assert ctx["task_state_store"].data[op.external_id_key]["mps_task_id"] == "task-1"


def test_deferrable_deadline_respects_execution_timeout() -> None:
    op, _hook, ctx = make(deferrable=True, timeout=3600, execution_timeout=timedelta(seconds=120))
    with pytest.raises(TaskDeferred) as info:
        op.execute(ctx)
    start = ctx["ti"].start_date.timestamp()
    assert info.value.trigger.end_time == pytest.approx(start + 120, abs=1)


@needs_store
def test_deferred_retry_whose_task_succeeded_does_not_defer_or_resubmit() -> None:
    op, hook, ctx = make(deferrable=True)
    with pytest.raises(TaskDeferred):
        op.execute(ctx)
    result = op.execute(retry(op, ctx))  # e.g. the resume failed; the task has finished meanwhile
    assert len(hook.submitted) == 1 and result["status"] == "SUCCESS"


def test_execute_complete_maps_events() -> None:
    op, _, ctx = make(deferrable=True)
    ok = op.execute_complete(
        ctx,
        {
            "status": "success",
            "mps_task_id": "t",
            "request_id": "r",
            "result": status("FINISH", "t").to_dict(),
            "error": None,
        },
    )
    assert (
        ok["status"] == "SUCCESS"
        and ok["request_id"] == "r"
        and ok["outputs"][0]["bucket"] == "out-1250000000"
    )
    failed = {
        "status": "failed",
        "mps_task_id": "t",
        "request_id": "r",
        "result": None,
        "error": {"code": "FailedOperation.Y", "message": "m", "request_id": "rd"},
    }
    with pytest.raises(AirflowFailException, match=r"FailedOperation.Y.*RequestId: rd"):
        op.execute_complete(ctx, failed)
    with pytest.raises(AirflowException) as timeout:
        op.execute_complete(ctx, {"status": "timeout", "mps_task_id": "t", "error": {}})
    assert not isinstance(timeout.value, AirflowFailException)
    with pytest.raises(AirflowFailException):
        result_from_event(
            {"status": "error", "mps_task_id": "t", "error": {"code": "AuthFailure", "retryable": False}},
            what="x",
        )
    with pytest.raises(AirflowException) as transient:
        result_from_event(
            {"status": "error", "mps_task_id": "t", "error": {"code": "InternalError", "retryable": True}},
            what="x",
        )
    assert not isinstance(transient.value, AirflowFailException)
    with pytest.raises(AirflowException):
        result_from_event(None, what="x")


# ---------------------------------------------------------------------------------------------- fire-and-forget
def test_fire_and_forget_returns_after_submission() -> None:
    op, hook, ctx = make(wait_for_completion=False, deferrable=True)
    result = op.execute(ctx)
    assert result == {
        "mps_task_id": "task-1",
        "status": "SUBMITTED",
        "request_id": "req-s1",
        "outputs": [],
        "error": None,
    }
    assert hook.described == []


@needs_store
def test_fire_and_forget_retry_reports_the_stored_task() -> None:
    op, hook, ctx = make(wait_for_completion=False, deferrable=True)
    op.execute(ctx)
    hook.scripts["task-1"] = [status("PROCESSING")]
    again = op.execute(retry(op, ctx))
    assert len(hook.submitted) == 1 and again["status"] == "PROCESSING"


# ---------------------------------------------------------------------------------------------- XCom / lineage
def test_build_task_xcom_shapes() -> None:
    assert build_task_xcom("t", request_id=None)["status"] == "SUBMITTED"
    failed = build_task_xcom(
        "t", request_id="r", status=status("FINISH", "t", err="E.X"), error={"code": "E.X", "message": "m"}
    )
    assert failed["status"] == "FAILED" and failed["error"] == {"code": "E.X", "message": "m"}


def test_lineage_dataset_mapping() -> None:
    ins, outs = lineage_datasets(
        {"Type": "COS", "CosInputInfo": {"Bucket": "in-1", "Region": REGION, "Object": "/raw/dt=1/a.jpg"}},
        [{"bucket": "out-1", "path": "enhanced/a.webp"}, {"uri": "cosn://o2/b.png"}],
    )
    assert ins == [("cosn://in-1", "raw/dt=1/a.jpg")]
    assert outs == [("cosn://out-1", "enhanced/a.webp"), ("cosn://o2", "b.png")]
    assert lineage_datasets({"Type": "URL", "UrlInputInfo": {"Url": "https://img.example.com/p/a.png?x=1"}})[
        0
    ] == [("https://img.example.com", "/p/a.png")]
    assert lineage_datasets({"Type": "AWS-S3", "S3InputInfo": {"S3Bucket": "s", "S3Object": "k/a.jpg"}})[
        0
    ] == [("s3://s", "k/a.jpg")]
    assert lineage_datasets(None) == ([], [])


def test_openlineage_degrades_without_provider() -> None:
    try:
        import airflow.providers.openlineage  # noqa: F401
    except ImportError:
        assert openlineage_from_pairs([("cosn://b", "k")], []) is None
        op, _hook, ctx = make()
        op.execute(ctx)
        assert op.get_openlineage_facets_on_complete(None) is None
    else:  # pragma: no cover - only where the provider is installed
        lineage = openlineage_from_pairs([("cosn://b", "k")], [("cosn://o", "p")])
        assert lineage.inputs[0].namespace == "cosn://b"


# ---------------------------------------------------------------------------------------------- submit → store window
class ListingHook(FakeHook, FindsImageTasks):
    """FakeHook whose DescribeImageTasks lists every task it created (plus any extra rows).

    ``find_tasks_for`` is the real ``MpsHook`` method (the matching rules under test) driven over this
    fake's listing and ``details`` (raw DescribeImageTaskDetail responses, default: a FINISHed task that
    echoes nothing).
    """

    def __init__(self, store: FakeStore | None = None) -> None:
        super().__init__(store)
        self.extra: list[Any] = []
        self.listings = 0
        self.details: dict[str, dict[str, Any]] = {}
        self.reconcile_clock_skew_seconds = 5.0
        self.reconcile_settle_seconds = 1.0
        self.reconcile_deadline_seconds = 60.0
        #: How many FINISH listings still show none of our tasks (they are WAITING: not listable).
        self.waiting_listings = 0

    def find_tasks_for(self, request: Any, since: Any, **kwargs: Any) -> list[str]:
        from airflow_mps.hooks.mps import MpsHook

        return MpsHook.find_tasks_for(self, request, since, **kwargs)  # type: ignore[arg-type]

    def _finder_args(self, *args: Any) -> Any:
        from airflow_mps.hooks.mps import MpsHook

        return MpsHook._finder_args(self, *args)  # type: ignore[arg-type]

    def _describe_response(self, task_id: str) -> dict[str, Any]:
        self.described.append(task_id)
        return self.details.get(task_id, {"Status": "FINISH", "RequestId": "req-d"})

    def list_image_tasks(self, status: str, start_time: Any = None, **_: Any) -> Any:
        import json

        from airflow_mps.models import ImageTaskInfo

        self.listings += 1
        if status != "FINISH":
            return iter(())
        if self.waiting_listings > 0:
            self.waiting_listings -= 1
            return iter(self.extra)
        rows = [
            ImageTaskInfo(task_id=f"task-{i}", status="FINISH", input=json.dumps(req.to_api()["InputInfo"]))
            for i, req in enumerate(self.submitted, start=1)
        ]
        return iter(rows + self.extra)


class StoreFailsOnce(FakeStore):
    """The store write right after the submission fails once (execution API down / worker killed there)."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key
        self.failed = False

    def set(self, key: str, value: Any, **kw: Any) -> None:
        if key == self.key and not self.failed:
            self.failed = True
            raise RuntimeError("worker died between ProcessImage and the task_state_store write")
        super().set(key, value, **kw)


def make_window(**kwargs: Any) -> tuple[MpsProcessImageOperator, ListingHook, dict[str, Any]]:
    op, _hook, _ctx = make(**kwargs)
    store = StoreFailsOnce(op.external_id_key)
    hook = ListingHook(store)
    op.__dict__["hook"] = hook
    return op, hook, {"ti": FakeTI(), "task_state_store": store}


@needs_store
def test_death_between_submit_and_store_is_adopted_not_resubmitted() -> None:
    op, hook, ctx = make_window()
    with pytest.raises(RuntimeError):
        op.execute(ctx)
    assert len(hook.submitted) == 1 and op.external_id_key not in ctx["task_state_store"].data
    result = op.execute(retry(op, ctx))
    assert len(hook.submitted) == 1, "the retry submitted a duplicate"
    assert result["mps_task_id"] == "task-1" and result["status"] == "SUCCESS"
    assert ctx["task_state_store"].data[op.external_id_key]["adopted"] is True
    hook.listings = 0
    op.execute(retry(op, ctx))  # recorded now: no listing, no submission
    assert hook.listings == 0 and len(hook.submitted) == 1


@needs_store
def test_recorded_submissions_never_list() -> None:
    op, hook, ctx = make_window()
    ctx["task_state_store"].failed = True  # every store write succeeds
    op.execute(ctx)
    op.execute(retry(op, ctx))
    assert hook.listings == 0 and len(hook.submitted) == 1


@needs_store
def test_unrecorded_submission_that_created_nothing_submits_once() -> None:
    op, hook, ctx = make_window()

    def refuse(request: Any) -> Submission:
        raise MpsTransientError("InternalError", "down", "req-z")

    hook.process_image = refuse  # type: ignore[method-assign]
    with pytest.raises(AirflowException):
        op.execute(ctx)
    del hook.process_image
    ctx["task_state_store"].failed = True
    _age_marker(op, ctx, 120)  # the retry comes after a retry_delay longer than the hook's patience
    result = op.execute(retry(op, ctx))
    assert len(hook.submitted) == 1 and result["mps_task_id"] == "task-1"
    assert hook.listings == 2  # PROCESSING and FINISH: WAITING is not listable


def _age_marker(op: MpsProcessImageOperator, ctx: dict[str, Any], seconds: float) -> None:
    """Move the pending marker ``seconds`` into the past (the earlier try ran that long ago)."""
    ctx["task_state_store"].data[op.pending_key]["since"] -= seconds


class FakeClock:
    """``time`` for ``airflow_mps.operators.mps``: ``sleep`` advances ``time()`` instead of waiting."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    import airflow_mps.operators.mps as mps_module

    fake = FakeClock()
    monkeypatch.setattr(mps_module, "time", fake)
    return fake


@needs_store
def test_a_retry_soon_after_the_death_waits_for_a_waiting_task_instead_of_resubmitting(
    clock: FakeClock,
) -> None:
    """Found by the SIGKILL trials: a worker dies after ProcessImage created the task, Airflow retries
    within seconds (a short retry_delay), the task is still WAITING (not listable). The retry must look
    again, not conclude that nothing was created and submit a second task."""
    op, hook, ctx = make_window()
    with pytest.raises(RuntimeError):
        op.execute(ctx)
    clock.now += 2  # the retry starts 2 s after the marker
    hook.waiting_listings = 3  # the task leaves WAITING after the third listing
    result = op.execute(retry(op, ctx))
    assert len(hook.submitted) == 1, "the retry submitted a duplicate"
    assert result["mps_task_id"] == "task-1" and ctx["task_state_store"].data[op.external_id_key]["adopted"]
    assert clock.sleeps == [1.0, 2.0, 4.0]  # the hook's settle wait, doubling


@needs_store
def test_a_fresh_marker_with_nothing_listable_submits_once_the_hook_patience_has_passed(
    clock: FakeClock,
) -> None:
    """Nothing ever turns up: the retry keeps looking until the marker is reconcile_deadline_seconds
    old (never longer), then submits exactly once."""
    op, hook, ctx = make_window()

    def refuse(request: Any) -> Submission:
        raise MpsTransientError("InternalError", "down", "req-z")

    hook.process_image = refuse  # type: ignore[method-assign]
    with pytest.raises(AirflowException):
        op.execute(ctx)
    del hook.process_image
    ctx["task_state_store"].failed = True
    marker = ctx["task_state_store"].data[op.pending_key]["since"]
    clock.now = marker + 5
    op.execute(retry(op, ctx))
    assert len(hook.submitted) == 1
    assert sum(clock.sleeps) == pytest.approx(55.0) and max(clock.sleeps) <= 10.0
    assert clock.now == pytest.approx(marker + 60.0)


@needs_store
def test_another_pipelines_task_with_the_same_input_is_not_adopted() -> None:
    from airflow_mps.models import ImageTaskInfo

    op, hook, ctx = make_window()
    with pytest.raises(RuntimeError):
        op.execute(ctx)
    theirs = "thumb-1"
    hook.extra = [
        ImageTaskInfo(
            task_id=theirs,
            status="FINISH",
            input='{"Type":"COS","CosInputInfo":{"Bucket":"in-1250000000","Region":"ap-guangzhou","Object":"/raw/a.jpg"}}',
        )
    ]
    hook.details[theirs] = {
        "Status": "FINISH",
        "ImageTask": {"EncodeConfig": {"Format": "png", "Quality": 10}},
    }
    result = op.execute(retry(op, ctx))
    assert result["mps_task_id"] == "task-1" and len(hook.submitted) == 1


@needs_store
def test_two_candidates_fail_without_guessing_or_resubmitting() -> None:
    from airflow_mps.models import ImageTaskInfo

    op, hook, ctx = make_window()
    with pytest.raises(RuntimeError):
        op.execute(ctx)
    same = '{"Type":"COS","CosInputInfo":{"Bucket":"in-1250000000","Region":"ap-guangzhou","Object":"/raw/a.jpg"}}'
    hook.extra = [ImageTaskInfo(task_id="task-x", status="FINISH", input=same)]
    with pytest.raises(AirflowFailException, match=r"task-1, task-x"):
        op.execute(retry(op, ctx))
    assert len(hook.submitted) == 1


@needs_store
def test_an_identical_request_just_before_the_marker_is_not_taken_for_ours() -> None:
    """The listing window reaches back by the clock-skew allowance; a sibling's identical task created
    before our marker's second must not make the adoption ambiguous when ours was created after it."""
    from datetime import datetime, timezone

    from airflow_mps.models import ImageTaskInfo

    op, hook, ctx = make_window()
    with pytest.raises(RuntimeError):
        op.execute(ctx)
    since = ctx["task_state_store"].data[op.pending_key]["since"]
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    same = '{"Type":"COS","CosInputInfo":{"Bucket":"in-1250000000","Region":"ap-guangzhou","Object":"/raw/a.jpg"}}'
    hook.extra = [
        ImageTaskInfo(
            task_id="sibling",
            status="FINISH",
            input=same,
            create_time=datetime.fromtimestamp(since - 3, tz=timezone.utc).strftime(fmt),
        ),
    ]
    listed = hook.list_image_tasks

    def with_times(status: str, **kw: Any) -> Any:
        for row in listed(status, **kw):
            if row.task_id == "task-1":
                row = ImageTaskInfo(
                    task_id="task-1",
                    status="FINISH",
                    input=row.input,
                    create_time=datetime.fromtimestamp(since + 1, tz=timezone.utc).strftime(fmt),
                )
            yield row

    hook.list_image_tasks = with_times  # type: ignore[method-assign]
    result = op.execute(retry(op, ctx))
    assert result["mps_task_id"] == "task-1" and len(hook.submitted) == 1


# ------------------------------------------------------------------- ambiguous submission, nothing found
def _ambiguous_not_found(*_: Any) -> Submission:
    from airflow_mps.errors import AMBIGUOUS_NOT_FOUND, MpsAmbiguousSubmissionError

    raise MpsAmbiguousSubmissionError(AMBIGUOUS_NOT_FOUND, "nothing listed yet", "req-x")


@needs_store
def test_ambiguous_not_found_with_a_stored_marker_lets_airflow_retry() -> None:
    """A WAITING task is invisible to the listing: the try fails retryably, the marker stays, and the
    next try looks for the task before it submits (never a blind resubmission in the same try)."""
    from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

    op, hook, ctx = make()
    hook.process_image = _ambiguous_not_found  # type: ignore[method-assign]  # scripted failure
    with pytest.raises(AirflowException) as info:
        op.execute(ctx)
    assert not isinstance(info.value, AirflowFailException)
    assert "AmbiguousSubmission.NotFound" in str(info.value)
    assert op.pending_key in ctx["task_state_store"].data


@without_store
def test_ambiguous_not_found_without_a_store_fails_for_good() -> None:
    """Below Airflow 3.3 nothing durable remembers the attempt, so a retry could only resubmit blindly."""
    from airflow.providers.common.compat.sdk import AirflowFailException

    op, hook, ctx = make()
    ctx.pop("task_state_store")
    hook.process_image = _ambiguous_not_found  # type: ignore[method-assign]  # scripted failure
    with pytest.raises(AirflowFailException):
        op.execute(ctx)
