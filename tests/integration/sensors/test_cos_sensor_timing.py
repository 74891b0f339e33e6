"""COS sensor and trigger behaviour that needs the wall clock: a quiet period that really elapses, a
stalled call really cut off at the deadline. Same scripted hook as tests/unit/sensors/test_cos_sensor.py.

Moved from tests/unit/sensors/test_cos_sensor.py: they wait in real time (time.sleep of 0.25 s and 0.5 s),
which unit tests may not (issue 10 item 7).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from airflow.providers.common.compat.sdk import PokeReturnValue

from airflow_mps.triggers.cos import CosKeyTrigger
from tests.unit.sensors.test_cos_sensor import MARKER, B, FakeCosHook, fake_shared_hook, quiet_sensor

__all__ = ["fake_shared_hook"]  # a fixture, used by name


def test_unchanged_sensor_poke_mode_keeps_its_memory_between_pokes() -> None:
    sensor, hook, ctx = quiet_sensor(inactivity_period=0.2)
    hook.put("raw/a.jpg")
    assert sensor.poke(ctx) is False  # first look: the period starts now
    first = sensor._memory
    assert first is not None and first.count == 1
    hook.put("raw/b.jpg")
    assert sensor.poke(ctx) is False  # changed: restarts
    assert sensor._memory is not None and sensor._memory.count == 2 and sensor._memory.since > first.since
    time.sleep(0.25)
    done = sensor.poke(ctx)
    assert isinstance(done, PokeReturnValue) and done.xcom_value == {"uri": f"cos://{B}/raw/", "objects": 2}


def test_key_trigger_call_is_cut_off_at_the_deadline(fake_shared_hook: FakeCosHook) -> None:
    original = fake_shared_hook.object_exists

    def stalls(bucket: str, key: str, region: str | None = None) -> bool:
        time.sleep(0.5)
        return original(bucket, key)

    fake_shared_hook.object_exists = stalls  # type: ignore[method-assign]

    async def main() -> tuple[list[dict[str, Any]], float]:
        started = time.monotonic()
        trigger = CosKeyTrigger(bucket_key=MARKER, end_time=time.time() + 0.2, poll_interval=0.05)
        events = [event.payload async for event in trigger.run()]
        return events, time.monotonic() - started

    events, elapsed = asyncio.run(main())  # (asyncio.run then waits for the stalled thread to end)
    assert [e["status"] for e in events] == ["timeout"]
    assert elapsed < 0.45  # the event did not wait for the stalled call
