"""Unit tests of MpsImageTaskTrigger's logic (deadline, error classes, event shape) with a scripted hook.

The real path (async SDK → HTTP → emulator) is covered in tests/integration/test_operator_mps_emulator.py; here a
small scripted hook stands in so every branch can be driven deterministically without sleeping.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from airflow_mps.errors import MpsResourceNotFoundError, MpsThrottledError, MpsTransientError
from airflow_mps.models import ImageTaskStatus
from airflow_mps.triggers.mps import MpsImageTaskTrigger


def _status(state: str, *, err: str | None = None, task_id: str = "t-1") -> ImageTaskStatus:
    body: dict[str, Any] = {"Status": state, "RequestId": "req-describe"}
    if state == "FINISH":
        body["ImageProcessTaskResultSet"] = [
            {
                "Status": "FAIL" if err else "SUCCESS",
                "ErrMsg": err or "",
                "Message": "input not found" if err else "",
                "Output": {
                    "Path": "/out/a.webp",
                    "OutputStorage": {"Type": "COS", "CosOutputStorage": {"Bucket": "b-1", "Region": "ap-guangzhou"}},
                    "SignedUrl": "http://x/out/a.webp?sign=1",
                },
            }
        ]
    return ImageTaskStatus.from_api(body, task_id=task_id)


class ScriptedHook:
    """Answers adescribe_image_task from a script: ImageTaskStatus values are returned, exceptions raised."""

    def __init__(self, script: list[Any]) -> None:
        self.script = list(script)
        self.calls = 0

    async def adescribe_image_task(self, task_id: str) -> ImageTaskStatus:
        self.calls += 1
        item = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(item, BaseException):
            raise item
        return item


def _run(trigger: MpsImageTaskTrigger, hook: ScriptedHook) -> list[dict[str, Any]]:
    trigger._hook = lambda: hook  # type: ignore[method-assign]

    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    return asyncio.run(collect())


def _trigger(**kw: Any) -> MpsImageTaskTrigger:
    args: dict[str, Any] = {"mps_task_id": "t-1", "end_time": time.time() + 60, "poll_interval": 0.05}
    args.update(kw)
    return MpsImageTaskTrigger(**args)


def test_serialize_round_trip_is_exact() -> None:
    trig = MpsImageTaskTrigger(
        mps_task_id="t-9",
        end_time=1_800_000_000.25,
        tencentcloud_conn_id="my_conn",
        region="ap-shanghai",
        poll_interval=3,
        request_id="req-submit",
    )
    classpath, kwargs = trig.serialize()
    assert classpath == "airflow_mps.triggers.mps.MpsImageTaskTrigger"
    rebuilt = MpsImageTaskTrigger(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs["end_time"] == 1_800_000_000.25
    # Every value is plain JSON (the triggerer stores kwargs in the database).
    import json

    assert json.loads(json.dumps(kwargs)) == kwargs


def test_success_event_carries_result_and_request_id() -> None:
    hook = ScriptedHook([_status("WAITING"), _status("PROCESSING"), _status("FINISH")])
    events = _run(_trigger(request_id="req-submit"), hook)
    assert len(events) == 1
    ev = events[0]
    assert ev["status"] == "success"
    assert ev["mps_task_id"] == "t-1"
    assert ev["request_id"] == "req-submit"
    assert ev["error"] is None
    assert ev["result"]["outputs"][0]["bucket"] == "b-1"
    assert ev["result"]["outputs"][0]["path"] == "out/a.webp"
    assert hook.calls == 3


def test_failed_task_yields_failed_event_at_once() -> None:
    hook = ScriptedHook([_status("FINISH", err="ResourceNotFound.DownloadError")])
    events = _run(_trigger(), hook)
    assert [e["status"] for e in events] == ["failed"]
    assert events[0]["error"]["code"] == "ResourceNotFound.DownloadError"
    assert events[0]["error"]["message"] == "input not found"
    assert hook.calls == 1


def test_transient_errors_are_polled_through() -> None:
    hook = ScriptedHook(
        [
            MpsTransientError("InternalError", "boom", "req-a"),
            MpsThrottledError("RequestLimitExceeded", "slow down", "req-b"),
            ConnectionResetError("reset"),
            _status("FINISH"),
        ]
    )
    events = _run(_trigger(), hook)
    assert [e["status"] for e in events] == ["success"]
    assert hook.calls == 4


def test_terminal_error_yields_error_event_at_once() -> None:
    hook = ScriptedHook([MpsResourceNotFoundError("ResourceNotFound", "no such task", "req-x")])
    events = _run(_trigger(), hook)
    assert len(events) == 1
    assert events[0]["status"] == "error"
    assert events[0]["error"] == {
        "code": "ResourceNotFound",
        "message": "no such task",
        "request_id": "req-x",
        "retryable": False,
    }
    assert hook.calls == 1


def test_deadline_yields_timeout_event_with_last_status() -> None:
    hook = ScriptedHook([_status("PROCESSING")])
    events = _run(_trigger(end_time=time.time() + 0.3, poll_interval=0.05), hook)
    assert [e["status"] for e in events] == ["timeout"]
    assert events[0]["result"]["state"] == "PROCESSING"
    assert hook.calls >= 1


def test_transient_errors_until_deadline_end_in_timeout_not_error() -> None:
    hook = ScriptedHook([MpsTransientError("InternalError", "down", "req-a")])
    events = _run(_trigger(end_time=time.time() + 0.3, poll_interval=0.05), hook)
    assert [e["status"] for e in events] == ["timeout"]


def test_rebuilt_trigger_keeps_the_original_deadline() -> None:
    """A triggerer restart rebuilds from serialize(): the deadline is absolute, so a trigger whose
    deadline passed while it was down times out without a single poll, not after a fresh timeout."""
    original = _trigger(end_time=time.time() - 1, poll_interval=30)
    rebuilt = MpsImageTaskTrigger(**original.serialize()[1])
    hook = ScriptedHook([_status("PROCESSING")])
    events = _run(rebuilt, hook)
    assert [e["status"] for e in events] == ["timeout"]
    assert hook.calls == 0


def test_two_triggers_on_the_same_task_both_finish() -> None:
    """HA triggerers may run the same trigger twice; polling is read-only so both just finish."""
    hook = ScriptedHook([_status("PROCESSING"), _status("PROCESSING"), _status("FINISH")])
    t1, t2 = _trigger(), _trigger()
    t1._hook = lambda: hook  # type: ignore[method-assign]
    t2._hook = lambda: hook  # type: ignore[method-assign]

    async def both() -> list[list[dict[str, Any]]]:
        async def one(t: MpsImageTaskTrigger) -> list[dict[str, Any]]:
            return [e.payload async for e in t.run()]

        return list(await asyncio.gather(one(t1), one(t2)))

    results = asyncio.run(both())
    assert [[e["status"] for e in r] for r in results] == [["success"], ["success"]]


@pytest.mark.parametrize("interval", [0.0, -1.0])
def test_poll_interval_never_busy_loops(interval: float) -> None:
    from airflow_mps.triggers.mps import MIN_POLL_INTERVAL, jittered

    assert jittered(interval) >= MIN_POLL_INTERVAL


class HangingHook:
    """A DescribeImageTaskDetail call that never answers (a stalled connection); records cancellation."""

    def __init__(self) -> None:
        self.calls = 0
        self.cancelled = 0
        self.closed = 0

    async def adescribe_image_task(self, task_id: str) -> ImageTaskStatus:
        self.calls += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        self.closed += 1


def test_deadline_holds_while_a_poll_is_in_flight() -> None:
    """A poll that stalls past the deadline is cut off at the deadline: the trigger yields its timeout
    event instead of waiting for the SDK's own request timeout (and the hook's retries) to run out."""
    hook = HangingHook()
    trigger = _trigger(end_time=time.time() + 0.2)
    trigger._hook = lambda: hook  # type: ignore[method-assign]

    async def collect() -> list[dict[str, Any]]:
        # The outer bound only turns a hang into a test failure; the trigger must finish long before.
        return await asyncio.wait_for(_collect(trigger), timeout=30)

    events = asyncio.run(collect())
    assert [e["status"] for e in events] == ["timeout"]
    assert hook.calls == 1 and hook.cancelled == 1 and hook.closed == 1


async def _collect(trigger: MpsImageTaskTrigger) -> list[dict[str, Any]]:
    return [e.payload async for e in trigger.run()]


def test_cancellation_propagates_and_closes_the_client() -> None:
    """The triggerer cancels a trigger whose task was cleared: CancelledError must propagate (never be
    swallowed into an event) and the async client must still be closed."""
    hook = HangingHook()
    trigger = _trigger()
    trigger._hook = lambda: hook  # type: ignore[method-assign]

    async def main() -> None:
        task = asyncio.ensure_future(_collect(trigger))
        while hook.calls == 0:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert hook.cancelled == 1 and hook.closed == 1


def test_serialize_carries_no_secret_and_only_known_keys() -> None:
    _, kwargs = _trigger(request_id="r").serialize()
    assert set(kwargs) == {"mps_task_id", "end_time", "tencentcloud_conn_id", "region", "poll_interval", "request_id"}


def test_first_run_imports_the_sdk_off_the_event_loop() -> None:
    """The Tencent SDK is imported lazily (never at DAG parse); the first trigger in a triggerer process
    must not do that import on the event loop, where it would stall every other trigger."""
    import subprocess
    import sys

    code = (
        "import asyncio, sys, threading, time\n"
        "from airflow_mps.triggers.mps import MpsImageTaskTrigger\n"
        "on_loop = []\n"
        "class Spy:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'tencentcloud' or name.startswith('airflow_mps.hooks'):\n"
        "            if threading.current_thread() is threading.main_thread():\n"
        "                on_loop.append(name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Spy())\n"
        "async def main():\n"
        "    t = MpsImageTaskTrigger(mps_task_id='t-1', end_time=time.time() + 0.5, poll_interval=0.05)\n"
        "    return [e.payload['status'] async for e in t.run()]\n"
        "print(asyncio.run(main()), sorted(set(on_loop)))\n"
    )
    env = {
        **__import__("os").environ,
        # Nothing listens on port 9: every poll is a refused connection until the deadline.
        "AIRFLOW_CONN_TENCENTCLOUD_DEFAULT": "tencentcloud://AKIDx:keyx@/?region=ap-guangzhou&endpoint=127.0.0.1%3A9&protocol=http",
    }
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "['timeout'] []", out.stdout + out.stderr[-2000:]


def test_jitter_spreads_polls_within_ten_percent() -> None:
    import random

    from airflow_mps.triggers.mps import jittered

    random.seed(7)
    values = [jittered(10.0) for _ in range(200)]
    assert all(9.0 <= v <= 11.0 for v in values)
    assert len({round(v, 3) for v in values}) > 100  # not in lockstep
