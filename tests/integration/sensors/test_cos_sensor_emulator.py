"""CosKeySensor, CosKeysUnchangedSensor and their triggers for real: CosHook → cos-python-sdk-v5 → HTTP →
the emulator's COS, through ``dag.test()`` in all three modes (poke, reschedule, deferrable) with the
object landing mid-wait, and by driving the triggers with asyncio (faults, deadline, loop blocking).

The DAGs live in tests/dags/cos_sensor_test_dags.py, registered as a DAG bundle.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_mps.emulator.testing import EmulatorServer
from airflow_mps.operators.mps import MpsProcessImageOperator

REPO = Path(__file__).resolve().parents[3]
TEST_DAGS = REPO / "tests" / "dags"
BUCKET = "sensors-1250000000"


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorServer]:
    saved = {
        k: os.environ.get(k)
        for k in (
            "AIRFLOW_CONN_TENCENTCLOUD_DEFAULT",
            "COS_TEST_POLL",
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST",
        )
    }
    with EmulatorServer(data_dir=tmp_path_factory.mktemp("cos-sensor-emu")) as server:
        os.environ["AIRFLOW_CONN_TENCENTCLOUD_DEFAULT"] = server.connection_uri()
        os.environ["COS_TEST_POLL"] = "0.2"
        local = "airflow.dag_processing.bundles.local.LocalDagBundle"
        os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(
            [
                {"name": "cos-sensor-test-dags", "classpath": local, "kwargs": {"path": str(TEST_DAGS)}},
                {"name": "dags-folder", "classpath": local, "kwargs": {}},
            ]
        )
        server.cos_backend.create_bucket(BUCKET)
        yield server
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def _clean_faults(emu: EmulatorServer) -> Iterator[None]:
    emu.faults.clear()
    yield
    emu.faults.clear()


@pytest.fixture(scope="module")
def dags(emu: EmulatorServer) -> dict[str, Any]:
    spec = importlib.util.spec_from_file_location(
        "cos_sensor_test_dags", TEST_DAGS / "cos_sensor_test_dags.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from airflow.sdk import DAG

    return {d.dag_id: d for d in vars(module).values() if isinstance(d, DAG)}


def _day() -> str:
    """A fresh partition per test (objects persist for the module)."""
    return f"t{uuid.uuid4().hex[:8]}"


def _put_later(emu: EmulatorServer, delay: float, keys: list[str]) -> threading.Timer:
    def put() -> None:
        for key in keys:
            emu.cos_backend.put_object(BUCKET, key, b"" if key.endswith("_SUCCESS") else b"image")

    timer = threading.Timer(delay, put)
    timer.start()
    return timer


def _xcom(dr: Any, task_id: str) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(
            XComModel.get_many(run_id=dr.run_id, key="return_value", task_ids=task_id, dag_ids=dr.dag_id)
        ).first()
        return None if row is None else XComModel.deserialize_value(row)


def _states(dr: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}


def _actions(emu: EmulatorServer, action: str) -> int:
    return int(emu.stats()["actions"].get(action, {}).get("received", 0))


#: Airflow >= 3.3 has task_state_store (the quiet sensor's memory across reschedules); probed on the
#: operator's ``durable`` flag, as the operator tests do.
_HAS_STORE = bool(MpsProcessImageOperator(task_id="probe", input="x").durable)


# ------------------------------------------------------------------------------------ dag.test
@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize("mode", ["poke", "reschedule", "deferrable"])
def test_marker_landing_mid_wait_in_every_mode(mode: str, emu: EmulatorServer, dags: dict[str, Any]) -> None:
    """The partition's images land, then its _SUCCESS marker, while both sensors wait: the key
    sensor sees the marker, the quiet sensor then waits for a second without change."""
    day = _day()
    key = f"raw/dt={day}/_SUCCESS"
    timer = _put_later(emu, 1.0, [f"raw/dt={day}/a.jpg", f"raw/dt={day}/b.jpg", key])
    started = time.monotonic()
    dr = dags[f"cos_sensor_{mode}"].test(
        run_conf={"key": f"cos://{BUCKET}/{key}", "prefix": f"cos://{BUCKET}/raw/dt={day}/"}
    )
    timer.join()
    if mode == "reschedule" and not _HAS_STORE:
        # Below Airflow 3.3 there is no task_state_store to remember the listing between reschedules,
        # so the quiet sensor refuses reschedule mode (it fails with that reason); the key sensor works.
        assert _states(dr) == {"wait_key": "success", "wait_quiet": "failed"}
        return
    assert str(dr.state) == "success", _states(dr)
    assert _states(dr) == {"wait_key": "success", "wait_quiet": "success"}
    assert _xcom(dr, "wait_key") == f"cos://{BUCKET}/{key}"
    assert _xcom(dr, "wait_quiet") == {"uri": f"cos://{BUCKET}/raw/dt={day}/", "objects": 3}
    assert time.monotonic() - started >= 2.0  # 1 s until the marker, then at least 1 s of quiet


@pytest.mark.usefixtures("airflow_db")
def test_wildcard_match_deferrable(emu: EmulatorServer, dags: dict[str, Any]) -> None:
    day = _day()
    emu.cos_backend.put_object(BUCKET, f"raw/dt={day}/notes.txt", b"x")
    timer = _put_later(emu, 0.8, [f"raw/dt={day}/photo.jpg"])
    dr = dags["cos_sensor_wildcard"].test(run_conf={"key": f"cos://{BUCKET}/raw/dt={day}/*.jpg"})
    timer.join()
    assert _states(dr) == {"wait_key": "success"}
    assert _xcom(dr, "wait_key") == f"cos://{BUCKET}/raw/dt={day}/photo.jpg"


@pytest.mark.usefixtures("airflow_db")
def test_timeout_in_every_mode_and_soft_fail(emu: EmulatorServer, dags: dict[str, Any]) -> None:
    dr = dags["cos_sensor_timeout"].test(run_conf={"key": f"cos://{BUCKET}/raw/dt={_day()}/_SUCCESS"})
    assert _states(dr) == {
        "never_poke": "failed",
        "never_reschedule": "failed",
        "never_deferrable": "failed",
        "never_soft": "skipped",
    }


@pytest.mark.usefixtures("airflow_db")
def test_rendered_empty_key_fails_before_any_cos_call(emu: EmulatorServer, dags: dict[str, Any]) -> None:
    before = _actions(emu, "cos:HeadObject") + _actions(emu, "cos:ListObjects")
    dr = dags["cos_sensor_deferrable"].test(run_conf={"key": "None", "prefix": f"cos://{BUCKET}/x/"})
    assert _states(dr)["wait_key"] == "failed"
    assert _actions(emu, "cos:HeadObject") + _actions(emu, "cos:ListObjects") == before


# ------------------------------------------------------------------------------------ triggers
def _events(trigger: Any) -> list[dict[str, Any]]:
    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    return asyncio.run(collect())


def test_key_trigger_polls_through_cos_throttling(emu: EmulatorServer) -> None:
    from airflow_mps.triggers.cos import CosKeyTrigger

    day = _day()
    emu.cos_backend.put_object(BUCKET, f"raw/dt={day}/_SUCCESS", b"")
    emu.faults.throttle("cos:HeadObject", count=30)  # more than the hook's own short retry budget
    events = _events(
        CosKeyTrigger(
            bucket_key=f"cos://{BUCKET}/raw/dt={day}/_SUCCESS", end_time=time.time() + 60, poll_interval=0.1
        )
    )
    assert [e["status"] for e in events] == ["success"]
    assert emu.stats()["actions"]["cos:HeadObject"]["received"] > 30


def test_quiet_trigger_on_a_missing_bucket_is_a_terminal_error(emu: EmulatorServer) -> None:
    from airflow_mps.triggers.cos import CosKeysUnchangedTrigger

    events = _events(
        CosKeysUnchangedTrigger(
            prefix="cos://nosuchbucket-1250000000/raw/",
            inactivity_period=1,
            end_time=time.time() + 30,
            poll_interval=0.1,
        )
    )
    assert [e["status"] for e in events] == ["error"]
    assert events[0]["error"]["retryable"] is False and "NoSuchBucket" in events[0]["error"]["message"]


def test_quiet_trigger_rebuilt_after_a_restart_keeps_an_unchanged_prefix_quiet(emu: EmulatorServer) -> None:
    """What the sensor handed over (its memory) survives a triggerer restart honestly: the same
    listing keeps counting from the sensor's first look; a changed one restarts the period."""
    from airflow_mps.hooks.cos import CosHook
    from airflow_mps.triggers.cos import CosKeysUnchangedTrigger
    from airflow_mps.waits.cos import summarize

    day = _day()
    emu.cos_backend.put_object(BUCKET, f"raw/dt={day}/a.jpg", b"a")
    summary = summarize(CosHook().list_objects(BUCKET, f"raw/dt={day}/"))
    memory = {"fingerprint": summary.fingerprint, "count": summary.count, "since": time.time() - 30}
    kwargs: dict[str, Any] = {
        "prefix": f"cos://{BUCKET}/raw/dt={day}/",
        "inactivity_period": 20,
        "memory": memory,
        "end_time": time.time() + 60,
        "poll_interval": 0.1,
    }
    _, serialized = CosKeysUnchangedTrigger(**kwargs).serialize()
    assert [e["status"] for e in _events(CosKeysUnchangedTrigger(**serialized))] == ["success"]

    emu.cos_backend.put_object(BUCKET, f"raw/dt={day}/a.jpg", b"a2")  # overwritten while "down"
    serialized["end_time"] = time.time() + 1.0
    assert [e["status"] for e in _events(CosKeysUnchangedTrigger(**serialized))] == ["timeout"]


def test_cos_trigger_never_blocks_the_event_loop(
    emu: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No synchronous connection lookup on the loop (apache/airflow #53447) and no slow callbacks,
    with COS answering slowly; the shared hook is gone with the last trigger."""
    from airflow.providers.common.compat.sdk import BaseHook

    from airflow_mps.triggers.cos import CosKeysUnchangedTrigger, CosKeyTrigger, active_cos_hooks

    day = _day()
    emu.cos_backend.put_object(BUCKET, f"raw/dt={day}/a.jpg", b"a")
    emu.faults.latency(300, "cos:*")
    on_loop: list[str] = []
    original = BaseHook.get_connection.__func__  # type: ignore[attr-defined]

    def guarded(cls: Any, conn_id: str) -> Any:
        try:
            asyncio.get_running_loop()
            on_loop.append(conn_id)
        except RuntimeError:
            pass
        return original(cls, conn_id)

    monkeypatch.setattr(BaseHook, "get_connection", classmethod(guarded))
    slow: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "Executing" in record.getMessage() and "took" in record.getMessage():
                slow.append(record.getMessage())

    handler = Catch()
    logging.getLogger("asyncio").addHandler(handler)
    try:

        async def main() -> tuple[list[dict[str, Any]], int]:
            asyncio.get_running_loop().slow_callback_duration = 0.1
            marker = f"cos://{BUCKET}/raw/dt={day}/_SUCCESS"
            triggers = [
                CosKeyTrigger(bucket_key=marker, end_time=time.time() + 30, poll_interval=0.1),
                CosKeyTrigger(bucket_key=marker, end_time=time.time() + 30, poll_interval=0.1),
                CosKeysUnchangedTrigger(
                    prefix=f"cos://{BUCKET}/raw/dt={day}/",
                    inactivity_period=1.5,
                    end_time=time.time() + 30,
                    poll_interval=0.1,
                ),
            ]

            async def one(trigger: Any) -> dict[str, Any]:
                (event,) = [event.payload async for event in trigger.run()]  # exactly one
                return event

            async def land() -> None:
                await asyncio.sleep(0.5)
                await asyncio.to_thread(emu.cos_backend.put_object, BUCKET, f"raw/dt={day}/_SUCCESS", b"")

            gathered = await asyncio.gather(land(), *(one(t) for t in triggers))
            return list(gathered[1:]), active_cos_hooks()

        events, hooks_left = asyncio.run(main(), debug=True)
    finally:
        logging.getLogger("asyncio").removeHandler(handler)
    assert [e["status"] for e in events] == ["success", "success", "success"]
    assert events[2]["objects"] == 2
    assert on_loop == []
    assert slow == []
    assert hooks_left == 0


def test_parse_cost_no_sdk_or_hook_at_import() -> None:
    """Parsing a DAG with COS sensors imports neither the COS SDK nor any hook or trigger module."""
    code = (
        "import sys; import airflow_mps.sensors.cos;"
        "heavy = [m for m in sys.modules if m.startswith(('qcloud_cos', 'tencentcloud', 'airflow_mps.hooks',"
        " 'airflow_mps.triggers', 'airflow_mps.operators'))];"
        "print(heavy)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout
