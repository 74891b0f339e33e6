"""Unit tests of MpsImageTaskSensor's poke / defer semantics with a scripted hook (the real path runs
against the emulator in tests/integration/operators/test_operator_mps_emulator.py)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    PokeReturnValue,
    TaskDeferred,
)

from airflow_mps.errors import MpsAuthError, MpsThrottledError
from airflow_mps.sensors.mps import MpsImageTaskSensor
from tests.unit.operators.test_operator_mps import FakeHook, FakeTI, status


def make(**kwargs: Any) -> tuple[MpsImageTaskSensor, FakeHook, dict[str, Any]]:
    args: dict[str, Any] = {"task_id": "wait", "mps_task_id": "task-1", "poke_interval": 0.01, "timeout": 5}
    args.update(kwargs)
    sensor = MpsImageTaskSensor(**args)
    hook = FakeHook()
    sensor.__dict__["hook"] = hook
    return sensor, hook, {"ti": FakeTI()}


def test_template_fields() -> None:
    assert set(MpsImageTaskSensor.template_fields) == {"mps_task_id", "tencentcloud_conn_id", "region"}


def test_poke_true_only_on_success_and_returns_result() -> None:
    sensor, hook, ctx = make()
    hook.scripts["task-1"] = [status("WAITING"), status("PROCESSING"), status("FINISH")]
    assert sensor.poke(ctx) is False
    assert sensor.poke(ctx) is False
    done = sensor.poke(ctx)
    assert isinstance(done, PokeReturnValue) and done.is_done
    assert done.xcom_value["status"] == "SUCCESS"
    assert done.xcom_value["outputs"][0]["uri"] == "cosn://out-1250000000/enhanced/a.webp"
    assert ctx["ti"].xcoms["mps_task_id"] == "task-1"


def test_failed_task_fails_the_sensor_never_counts_as_done() -> None:
    sensor, hook, ctx = make()
    hook.scripts["task-1"] = [status("FINISH", err="FailedOperation.Bad")]
    with pytest.raises(AirflowFailException, match=r"FailedOperation\.Bad"):
        sensor.execute(ctx)


def test_failed_task_with_soft_fail_skips() -> None:
    sensor, hook, ctx = make(soft_fail=True)
    hook.scripts["task-1"] = [status("FINISH", err="FailedOperation.Bad")]
    with pytest.raises(AirflowSkipException):
        sensor.execute(ctx)


def test_transient_errors_are_not_yet_and_terminal_errors_fail() -> None:
    sensor, hook, ctx = make()
    hook.scripts["task-1"] = [MpsThrottledError("RequestLimitExceeded", "x", "r"), status("FINISH")]
    assert sensor.execute(ctx)["status"] == "SUCCESS"
    assert len(hook.described) == 2
    sensor2, hook2, ctx2 = make()
    hook2.scripts["task-1"] = [MpsAuthError("AuthFailure.SignatureFailure", "bad sig", "r9")]
    with pytest.raises(AirflowFailException, match=r"AuthFailure\.SignatureFailure"):
        sensor2.execute(ctx2)


def test_poke_mode_timeout_is_airflows() -> None:
    sensor, hook, ctx = make(timeout=0.05)
    hook.scripts["task-1"] = [status("PROCESSING")]
    with pytest.raises(AirflowSensorTimeout):
        sensor.execute(ctx)


def test_empty_task_id_fails_clearly() -> None:
    sensor, hook, ctx = make(mps_task_id="  ")
    with pytest.raises(AirflowFailException, match="mps_task_id"):
        sensor.execute(ctx)
    assert hook.described == []


def test_deferrable_pokes_once_then_defers_with_sensor_timeout_deadline() -> None:
    sensor, hook, ctx = make(deferrable=True, timeout=300, poke_interval=7)
    hook.scripts["task-1"] = [status("PROCESSING")]
    before = time.time()
    with pytest.raises(TaskDeferred) as info:
        sensor.execute(ctx)
    trig = info.value.trigger
    assert trig.mps_task_id == "task-1" and trig.poll_interval == 7
    assert before + 300 <= trig.end_time <= time.time() + 300
    assert info.value.timeout >= timedelta(seconds=300)
    assert len(hook.described) == 1


def test_deferrable_already_done_returns_without_deferring() -> None:
    sensor, _hook, ctx = make(deferrable=True)
    assert sensor.execute(ctx)["status"] == "SUCCESS"


def test_execute_complete_maps_events_and_soft_fail() -> None:
    sensor, _hook, ctx = make(deferrable=True)
    ok = sensor.execute_complete(
        ctx, {"status": "success", "mps_task_id": "t", "result": status("FINISH", "t").to_dict()}
    )
    assert ok["status"] == "SUCCESS"
    with pytest.raises(AirflowSensorTimeout):
        sensor.execute_complete(ctx, {"status": "timeout", "mps_task_id": "t"})
    failed = {"status": "failed", "mps_task_id": "t", "error": {"code": "FailedOperation.Z", "message": "m"}}
    with pytest.raises(AirflowFailException, match=r"FailedOperation\.Z"):
        sensor.resume_execution("execute_complete", {"event": failed}, ctx)
    soft, _h, ctx2 = make(deferrable=True, soft_fail=True)
    with pytest.raises(AirflowSkipException):
        soft.resume_execution("execute_complete", {"event": failed}, ctx2)
    with pytest.raises(AirflowSkipException):
        soft.resume_execution("execute_complete", {"event": {"status": "timeout", "mps_task_id": "t"}}, ctx2)


def test_deferrable_deadline_respects_execution_timeout() -> None:
    """Airflow does not enforce execution_timeout while a task is deferred (task_runner: "TODO: handle
    timeout in case of deferral"; apache/airflow #32580), so the sensor carries it into the trigger."""
    sensor, hook, ctx = make(deferrable=True, timeout=3600, execution_timeout=timedelta(seconds=120))
    hook.scripts["task-1"] = [status("PROCESSING")]
    with pytest.raises(TaskDeferred) as info:
        sensor.execute(ctx)
    start = ctx["ti"].start_date.timestamp()
    assert info.value.trigger.end_time == pytest.approx(start + 120, abs=1)
    assert info.value.timeout <= timedelta(seconds=120 + 60 + 1)


def test_deadline_event_past_execution_timeout_is_a_retryable_task_timeout() -> None:
    """At the execution_timeout bound the sensor fails like a poking sensor would (AirflowTaskTimeout,
    retried), not with AirflowSensorTimeout (which fails without retry, or skips with soft_fail)."""
    from airflow.providers.common.compat.sdk import AirflowTaskTimeout

    sensor, _hook, ctx = make(deferrable=True, timeout=3600, execution_timeout=timedelta(seconds=120))
    ctx["ti"].start_date -= timedelta(seconds=121)
    with pytest.raises(AirflowTaskTimeout):
        sensor.execute_complete(ctx, {"status": "timeout", "mps_task_id": "t"})
    soft, _h, ctx2 = make(
        deferrable=True, soft_fail=True, timeout=3600, execution_timeout=timedelta(seconds=120)
    )
    ctx2["ti"].start_date -= timedelta(seconds=121)
    with pytest.raises(AirflowTaskTimeout):
        soft.execute_complete(ctx2, {"status": "timeout", "mps_task_id": "t"})
