"""CosKeySensor, CosKeysUnchangedSensor and their triggers with a scripted COS hook: validation before
any call, poke / reschedule memory / defer semantics, event handling, and the triggers' event loop
discipline. No sockets (the real path runs against the emulator in
tests/integration/sensors/test_cos_sensor_emulator.py)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    AirflowTaskTimeout,
    PokeReturnValue,
    TaskDeferred,
)

from airflow_mps.emulator.testing import MemoryTaskStateStore
from airflow_mps.errors import MpsAuthError, MpsThrottledError
from airflow_mps.sensors.cos import CosKeySensor, CosKeysUnchangedSensor
from airflow_mps.triggers import cos as cos_triggers
from airflow_mps.triggers.cos import CosKeysUnchangedTrigger, CosKeyTrigger
from airflow_mps.utils.deadlines import DEFERRAL_GRACE_SECONDS
from tests.hook_contract import ChecksCosObjectsFromTrigger

B = "photos-1250000000"
MARKER = f"cos://{B}/raw/dt=2026-11-01/_SUCCESS"


@dataclass(frozen=True)
class Obj:
    key: str
    size: int = 1
    etag: str = "e"
    last_modified: str = "2026-11-01T00:00:00.000Z"


class FakeCosHook(ChecksCosObjectsFromTrigger):
    """What the waits use of CosHook: ``object_exists`` and ``list_objects``, scripted; records the
    calls and the threads they ran on."""

    def __init__(self) -> None:
        self.objects: dict[str, Obj] = {}
        self.errors: list[BaseException] = []
        self.calls: list[tuple[str, str, str]] = []
        self.threads: set[int] = set()
        self.settings_resolved = 0

    def put(self, key: str, etag: str = "e") -> None:
        self.objects[key] = Obj(key, etag=etag)

    def _call(self, what: str, bucket: str, arg: str) -> None:
        self.calls.append((what, bucket, arg))
        self.threads.add(threading.get_ident())
        if self.errors:
            raise self.errors.pop(0)

    def object_exists(self, bucket: str, key: str, region: str | None = None) -> bool:
        self._call("head", bucket, key)
        return key in self.objects

    def list_objects(self, bucket: str, prefix: str = "", region: str | None = None) -> Iterator[Obj]:
        self._call("list", bucket, prefix)
        return iter([self.objects[k] for k in sorted(self.objects) if k.startswith(prefix)])

    async def aget_settings(self) -> None:
        self.settings_resolved += 1


class FakeTI:
    def __init__(self) -> None:
        self.start_date = datetime.now(timezone.utc)


def key_sensor(**kwargs: Any) -> tuple[CosKeySensor, FakeCosHook, Any]:
    args: dict[str, Any] = {"task_id": "wait", "bucket_key": MARKER, "poke_interval": 0.01, "timeout": 5}
    args.update(kwargs)
    sensor = CosKeySensor(**args)
    hook = FakeCosHook()
    sensor.__dict__["hook"] = hook
    return sensor, hook, {"ti": FakeTI()}


def quiet_sensor(**kwargs: Any) -> tuple[CosKeysUnchangedSensor, FakeCosHook, Any]:
    args: dict[str, Any] = {
        "task_id": "quiet",
        "prefix": f"cos://{B}/raw/",
        "inactivity_period": 0,
        "poke_interval": 0.01,
        "timeout": 5,
    }
    args.update(kwargs)
    sensor = CosKeysUnchangedSensor(**args)
    hook = FakeCosHook()
    sensor.__dict__["hook"] = hook
    return sensor, hook, {"ti": FakeTI()}


# ------------------------------------------------------------------------------------ surface
def test_template_fields_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    assert set(CosKeySensor.template_fields) == {"bucket_key", "tencentcloud_conn_id", "region"}
    assert set(CosKeysUnchangedSensor.template_fields) == {"prefix", "tencentcloud_conn_id", "region"}
    sensor = CosKeySensor(task_id="s", bucket_key=MARKER)
    assert sensor.tencentcloud_conn_id == "tencentcloud_default" and sensor.region is None
    assert sensor.wildcard_match is False
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")
    assert CosKeySensor(task_id="s", bucket_key=MARKER).deferrable is True
    assert CosKeysUnchangedSensor(task_id="q", prefix=f"cos://{B}/").deferrable is True
    assert CosKeySensor(task_id="s", bucket_key=MARKER, deferrable=False).deferrable is False
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "False")
    assert CosKeySensor(task_id="s", bucket_key=MARKER).deferrable is False


def test_no_logic_on_templated_fields_at_init() -> None:
    """A template is only rendered at run time (apache/airflow #33786): __init__ accepts anything."""
    sensor = CosKeySensor(task_id="s", bucket_key="cos://{{ params.bucket }}/raw/dt={{ ds }}/_SUCCESS")
    assert sensor.bucket_key.startswith("cos://{{")


def test_unchanged_sensor_refuses_bad_numbers_at_parse_time() -> None:
    with pytest.raises(ValueError, match="inactivity_period"):
        CosKeysUnchangedSensor(task_id="q", prefix=f"cos://{B}/", inactivity_period=-1)
    with pytest.raises(ValueError, match="inactivity_period"):
        CosKeysUnchangedSensor(task_id="q", prefix=f"cos://{B}/", inactivity_period="soon")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min_objects"):
        CosKeysUnchangedSensor(task_id="q", prefix=f"cos://{B}/", min_objects=-1)
    with pytest.raises(ValueError, match="min_objects"):
        CosKeysUnchangedSensor(task_id="q", prefix=f"cos://{B}/", min_objects=True)


# ------------------------------------------------------------------------------------ validation
@pytest.mark.parametrize("rendered", [None, "", "None", "null", "[]", f"cos://{B}/raw/dt=None/_SUCCESS"])
def test_rendered_empty_bucket_key_fails_before_any_call(rendered: Any) -> None:
    sensor, hook, ctx = key_sensor(bucket_key=rendered)
    with pytest.raises(AirflowFailException, match=r"^wait: bucket_key: "):
        sensor.execute(ctx)
    assert hook.calls == []


@pytest.mark.parametrize(
    ("bucket_key", "reason"),
    [
        ("s3://photos-1250000000/a", "not a cos:// URI"),
        ("cos://photos/raw/_SUCCESS", "invalid bucket"),
        (f"cos://{B}/raw/", "names a folder"),
    ],
)
def test_bad_bucket_key_fails_before_any_call_even_when_deferrable(bucket_key: str, reason: str) -> None:
    sensor, hook, ctx = key_sensor(bucket_key=bucket_key, deferrable=True)
    with pytest.raises(AirflowFailException, match=reason):
        sensor.execute(ctx)
    assert hook.calls == []


@pytest.mark.parametrize(("field", "value"), [("tencentcloud_conn_id", "None"), ("region", "null")])
def test_rendered_empty_connection_or_region_is_refused(field: str, value: str) -> None:
    sensor, hook, ctx = key_sensor(**{field: value})
    with pytest.raises(AirflowFailException, match=rf"^wait: {field} is '{value}'"):
        sensor.execute(ctx)
    assert hook.calls == []


def test_empty_region_means_the_connections_region() -> None:
    sensor, _, _ = key_sensor(region="")
    assert sensor._connection() == ("tencentcloud_default", None)


def test_bad_prefix_fails_before_any_call() -> None:
    sensor, hook, ctx = quiet_sensor(prefix="None")
    with pytest.raises(AirflowFailException, match=r"^quiet: prefix: 'None' is empty"):
        sensor.execute(ctx)
    assert hook.calls == []


# ------------------------------------------------------------------------------------ CosKeySensor
def test_key_sensor_pokes_until_the_marker_exists() -> None:
    sensor, hook, ctx = key_sensor()
    assert sensor.poke(ctx) is False
    hook.put("raw/dt=2026-11-01/_SUCCESS")
    done = sensor.poke(ctx)
    assert isinstance(done, PokeReturnValue) and done.is_done
    assert done.xcom_value == MARKER
    assert hook.calls == [("head", B, "raw/dt=2026-11-01/_SUCCESS")] * 2


def test_key_sensor_wildcard_lists_the_literal_prefix_and_returns_the_match() -> None:
    sensor, hook, ctx = key_sensor(bucket_key=f"cos://{B}/raw/dt=2026-11-01/*.jpg", wildcard_match=True)
    hook.put("raw/dt=2026-11-01/a.png")
    assert sensor.poke(ctx) is False
    hook.put("raw/dt=2026-11-01/b.jpg")
    assert sensor.execute(ctx) == f"cos://{B}/raw/dt=2026-11-01/b.jpg"
    assert set(hook.calls) == {("list", B, "raw/dt=2026-11-01/")}


def test_key_sensor_transient_errors_are_not_yet_terminal_ones_fail() -> None:
    sensor, hook, ctx = key_sensor()
    hook.errors = [MpsThrottledError("Cos.SlowDown", "COS HTTP 503", "r1"), OSError("reset")]
    assert sensor.poke(ctx) is False
    assert sensor.poke(ctx) is False
    hook.put("raw/dt=2026-11-01/_SUCCESS")
    assert sensor.poke(ctx)
    sensor2, hook2, ctx2 = key_sensor()
    hook2.errors = [MpsAuthError("AuthFailure", "COS HTTP 403: SignatureDoesNotMatch", "r2")]
    with pytest.raises(AirflowFailException, match=r"AuthFailure.*RequestId: r2"):
        sensor2.execute(ctx2)


def test_key_sensor_poke_mode_timeout_and_soft_fail() -> None:
    sensor, _, ctx = key_sensor(timeout=0.05)
    with pytest.raises(AirflowSensorTimeout):
        sensor.execute(ctx)
    sensor, _, ctx = key_sensor(timeout=0.05, soft_fail=True)
    with pytest.raises(AirflowSkipException):
        sensor.execute(ctx)


def test_deferrable_key_sensor_pokes_once_then_defers_with_an_absolute_deadline() -> None:
    sensor, hook, ctx = key_sensor(deferrable=True, timeout=600, poke_interval=30, region="ap-shanghai")
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(ctx)
    assert len(hook.calls) == 1  # one poke in the worker first
    trigger = deferred.value.trigger
    assert isinstance(trigger, CosKeyTrigger)
    path, kwargs = trigger.serialize()
    assert path == "airflow_mps.triggers.cos.CosKeyTrigger"
    assert kwargs["bucket_key"] == MARKER and kwargs["wildcard_match"] is False
    assert kwargs["region"] == "ap-shanghai" and kwargs["tencentcloud_conn_id"] == "tencentcloud_default"
    assert kwargs["poll_interval"] == 30.0
    assert before + 600 <= kwargs["end_time"] <= time.time() + 600
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout is not None
    assert deferred.value.timeout.total_seconds() == pytest.approx(600 + DEFERRAL_GRACE_SECONDS, abs=2)
    # The rebuilt trigger is the same trigger.
    assert CosKeyTrigger(**kwargs).serialize() == (path, kwargs)


def test_deferral_deadline_is_capped_by_execution_timeout() -> None:
    sensor, _, ctx = key_sensor(deferrable=True, timeout=3600, execution_timeout=timedelta(seconds=90))
    ctx["ti"].start_date = datetime.now(timezone.utc) - timedelta(seconds=30)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(ctx)
    end_time = deferred.value.trigger.serialize()[1]["end_time"]
    assert end_time == pytest.approx(time.time() + 60, abs=2)


def test_deferrable_key_sensor_found_at_once_does_not_defer() -> None:
    sensor, hook, ctx = key_sensor(deferrable=True)
    hook.put("raw/dt=2026-11-01/_SUCCESS")
    assert sensor.execute(ctx) == MARKER


def test_execute_complete_maps_events() -> None:
    sensor, _, ctx = key_sensor(deferrable=True)
    ok = {"status": "success", "uri": MARKER, "matched": MARKER, "objects": None, "error": None}
    assert sensor.execute_complete(ctx, ok) == MARKER
    timeout = {
        "status": "timeout",
        "uri": MARKER,
        "error": {"code": "Timeout", "message": f"{MARKER}: no object appeared before the deadline"},
    }
    with pytest.raises(AirflowSensorTimeout, match="no object appeared"):
        sensor.execute_complete(ctx, timeout)
    terminal = {
        "status": "error",
        "uri": MARKER,
        "error": {"code": "AuthFailure", "message": "denied", "request_id": "r3", "retryable": False},
    }
    with pytest.raises(AirflowFailException, match=r"\[AuthFailure\] denied \(RequestId: r3\)"):
        sensor.execute_complete(ctx, terminal)
    transient = {"status": "error", "uri": MARKER, "error": {"code": "X", "message": "y", "retryable": True}}
    with pytest.raises(AirflowException) as info:
        sensor.execute_complete(ctx, transient)
    assert not isinstance(info.value, AirflowFailException)  # Airflow may retry
    with pytest.raises(AirflowException, match="without an event"):
        sensor.execute_complete(ctx, None)


def test_execute_complete_timeout_is_a_task_timeout_when_execution_timeout_ran_out() -> None:
    sensor, _, ctx = key_sensor(deferrable=True, execution_timeout=timedelta(seconds=10))
    ctx["ti"].start_date = datetime.now(timezone.utc) - timedelta(seconds=11)
    with pytest.raises(AirflowTaskTimeout, match="execution_timeout"):
        sensor.execute_complete(ctx, {"status": "timeout", "uri": MARKER, "error": {}})


# ------------------------------------------------------------------------------------ CosKeysUnchangedSensor
def test_unchanged_sensor_execute_in_poke_mode() -> None:
    sensor, hook, ctx = quiet_sensor(inactivity_period=0.05, min_objects=1)
    hook.put("raw/a.jpg")
    assert sensor.execute(ctx) == {"uri": f"cos://{B}/raw/", "objects": 1}


def test_unchanged_sensor_reschedule_mode_keeps_its_memory_in_task_state_store() -> None:
    store = MemoryTaskStateStore()
    sensor, hook, ctx = quiet_sensor(mode="reschedule", inactivity_period=3600)
    ctx["task_state_store"] = store
    hook.put("raw/a.jpg")
    assert sensor.poke(ctx) is False
    saved = store.get(CosKeysUnchangedSensor.STATE_KEY)
    assert saved["uri"] == f"cos://{B}/raw/" and saved["count"] == 1

    # The next poke is a fresh sensor in a fresh process: it reads the memory back.
    saved["since"] -= 7200  # as if the first look was two hours ago
    store.set(CosKeysUnchangedSensor.STATE_KEY, saved)
    again, hook2, ctx2 = quiet_sensor(mode="reschedule", inactivity_period=3600)
    ctx2["task_state_store"] = store
    hook2.objects = dict(hook.objects)
    assert again.poke(ctx2)

    # A memory of another prefix (a changed template) is not used.
    other, hook3, ctx3 = quiet_sensor(mode="reschedule", prefix=f"cos://{B}/other/", inactivity_period=3600)
    ctx3["task_state_store"] = store
    hook3.put("other/x")
    assert other.poke(ctx3) is False
    assert store.get(CosKeysUnchangedSensor.STATE_KEY)["uri"] == f"cos://{B}/other/"


def test_unchanged_sensor_reschedule_mode_without_a_store_is_refused() -> None:
    sensor, hook, ctx = quiet_sensor(mode="reschedule")
    hook.put("raw/a.jpg")
    with pytest.raises(AirflowFailException, match="task_state_store"):
        sensor.poke(ctx)


def test_deferrable_unchanged_sensor_hands_its_memory_to_the_trigger() -> None:
    sensor, hook, ctx = quiet_sensor(deferrable=True, inactivity_period=600, min_objects=2)
    hook.put("raw/a.jpg")
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(ctx)
    trigger = deferred.value.trigger
    assert isinstance(trigger, CosKeysUnchangedTrigger)
    _, kwargs = trigger.serialize()
    assert kwargs["prefix"] == f"cos://{B}/raw/"
    assert kwargs["inactivity_period"] == 600.0 and kwargs["min_objects"] == 2
    assert sensor._memory is not None and kwargs["memory"] == sensor._memory.to_dict()
    assert set(kwargs["memory"]) == {"fingerprint", "count", "since"}  # small, whatever the listing
    assert sensor.execute_complete(ctx, {"status": "success", "uri": kwargs["prefix"], "objects": 2}) == {
        "uri": f"cos://{B}/raw/",
        "objects": 2,
    }


def test_sensor_modules_import_nothing_heavy() -> None:
    import airflow_mps.sensors.cos as module

    names = set(vars(module))
    assert "CosHook" not in names and "CosKeyTrigger" not in names
    assert not any(n.startswith("qcloud") for n in names)


# ------------------------------------------------------------------------------------ triggers
@pytest.fixture
def fake_shared_hook(monkeypatch: pytest.MonkeyPatch) -> FakeCosHook:
    """The triggers' shared hook, replaced by the scripted one (no connection, no socket)."""
    hook = FakeCosHook()
    entry = cos_triggers._SharedHook(hook)  # type: ignore[arg-type]  # duck-typed CosHook
    users: list[int] = []

    def acquire(conn_id: str, region: str | None) -> Any:
        entry.users += 1
        users.append(entry.users)
        return entry

    monkeypatch.setattr(cos_triggers, "_acquire", acquire)
    monkeypatch.setattr(cos_triggers, "_release", lambda conn_id, region, e: setattr(e, "users", e.users - 1))
    hook.entry = entry  # type: ignore[attr-defined]
    return hook


def _events(trigger: Any) -> list[dict[str, Any]]:
    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    return asyncio.run(collect())


def test_key_trigger_checks_off_the_loop_and_yields_one_event(fake_shared_hook: FakeCosHook) -> None:
    hook = fake_shared_hook
    loop_threads: set[int] = set()

    async def main() -> list[dict[str, Any]]:
        loop_threads.add(threading.get_ident())
        trigger = CosKeyTrigger(bucket_key=MARKER, end_time=time.time() + 10, poll_interval=0.05)

        async def land() -> None:
            await asyncio.sleep(0.15)
            hook.put("raw/dt=2026-11-01/_SUCCESS")

        lander = asyncio.ensure_future(land())
        events = [event.payload async for event in trigger.run()]
        await lander
        return events

    events = asyncio.run(main())
    assert [e["status"] for e in events] == ["success"]
    assert events[0]["matched"] == MARKER
    assert len(hook.calls) >= 2  # it waited: the marker appeared mid-wait
    assert hook.threads and not (hook.threads & loop_threads)  # every check ran in a worker thread
    assert hook.settings_resolved == 1  # the connection is resolved on the loop, with the async API
    assert hook.entry.users == 0  # type: ignore[attr-defined]


def test_key_trigger_timeout_and_terminal_error(fake_shared_hook: FakeCosHook) -> None:
    events = _events(CosKeyTrigger(bucket_key=MARKER, end_time=time.time() + 0.2, poll_interval=0.05))
    assert [e["status"] for e in events] == ["timeout"]
    assert events[0]["error"]["code"] == "Timeout"
    fake_shared_hook.errors = [MpsAuthError("AuthFailure", "denied", "r5")]
    events = _events(CosKeyTrigger(bucket_key=MARKER, end_time=time.time() + 5, poll_interval=0.05))
    assert [e["status"] for e in events] == ["error"]
    assert events[0]["error"]["request_id"] == "r5"


def test_trigger_rebuilt_after_its_deadline_makes_no_call(fake_shared_hook: FakeCosHook) -> None:
    trigger = CosKeyTrigger(bucket_key=MARKER, end_time=time.time() + 60, poll_interval=0.05)
    _, kwargs = trigger.serialize()
    kwargs["end_time"] = time.time() - 1  # the triggerer came back after the deadline
    events = _events(CosKeyTrigger(**kwargs))
    assert [e["status"] for e in events] == ["timeout"]
    assert fake_shared_hook.calls == []


def test_key_trigger_with_a_bad_key_is_an_error_event_without_a_call(fake_shared_hook: FakeCosHook) -> None:
    events = _events(CosKeyTrigger(bucket_key="None", end_time=time.time() + 5))
    assert [e["status"] for e in events] == ["error"]
    assert "bucket_key" in events[0]["error"]["message"]
    assert fake_shared_hook.calls == []


def test_unchanged_trigger_restart_is_honest(fake_shared_hook: FakeCosHook) -> None:
    """Rebuilt from its kwargs, the trigger keeps the sensor's `since` only for an identical listing."""
    from airflow_mps.waits.cos import summarize

    hook = fake_shared_hook
    hook.put("raw/a.jpg")
    summary = summarize(hook.list_objects(B, "raw/"))
    hook.calls.clear()
    memory = {"fingerprint": summary.fingerprint, "count": 1, "since": time.time() - 120}
    common: dict[str, Any] = {"prefix": f"cos://{B}/raw/", "inactivity_period": 60, "poll_interval": 0.05}

    events = _events(CosKeysUnchangedTrigger(memory=memory, end_time=time.time() + 5, **common))
    assert [e["status"] for e in events] == ["success"] and events[0]["objects"] == 1
    assert len(hook.calls) == 1  # quiet for 120 s already: done at the first look

    hook.put("raw/b.jpg")  # changed while the triggerer was down: the period restarts
    events = _events(CosKeysUnchangedTrigger(memory=memory, end_time=time.time() + 0.3, **common))
    assert [e["status"] for e in events] == ["timeout"]


def test_unchanged_trigger_waits_for_quiet(fake_shared_hook: FakeCosHook) -> None:
    hook = fake_shared_hook
    hook.put("raw/a.jpg")

    async def main() -> list[dict[str, Any]]:
        trigger = CosKeysUnchangedTrigger(
            prefix=f"cos://{B}/raw/", inactivity_period=0.3, end_time=time.time() + 10, poll_interval=0.05
        )

        async def writer() -> None:
            for name in ("b", "c"):
                await asyncio.sleep(0.1)
                hook.put(f"raw/{name}.jpg")

        task = asyncio.ensure_future(writer())
        started = time.monotonic()
        events = [event.payload async for event in trigger.run()]
        await task
        assert time.monotonic() - started >= 0.5  # 0.2 s of writes, then 0.3 s of quiet
        return events

    events = asyncio.run(main())
    assert [e["status"] for e in events] == ["success"] and events[0]["objects"] == 3


def test_shared_hook_registry_is_refcounted() -> None:
    async def main() -> list[int]:
        await cos_triggers._preload()
        first = cos_triggers._acquire("conn_a", None)
        second = cos_triggers._acquire("conn_a", None)
        other = cos_triggers._acquire("conn_a", "ap-shanghai")
        assert first is second and first is not other
        counts = [cos_triggers.active_cos_hooks()]
        cos_triggers._release("conn_a", None, first)
        counts.append(cos_triggers.active_cos_hooks())
        cos_triggers._release("conn_a", None, second)
        cos_triggers._release("conn_a", "ap-shanghai", other)
        counts.append(cos_triggers.active_cos_hooks())
        assert first.hook.retry_policy.max_retry_seconds == cos_triggers.HOOK_RETRY_SECONDS
        return counts

    assert asyncio.run(main()) == [2, 2, 0]
