"""DAGs for the COS sensor integration tests (tests/integration/sensors/test_cos_sensor_emulator.py) — not examples.

One DAG per mode (``poke``, ``reschedule``, ``deferrable``), each with a ``CosKeySensor`` and a
``CosKeysUnchangedSensor`` that read what to wait for from params, so one file serves every case. The
connection comes from ``AIRFLOW_CONN_TENCENTCLOUD_DEFAULT`` (the test points it at the emulator);
``COS_TEST_POLL`` sets the poke interval.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from airflow.sdk import DAG

from airflow_mps.sensors.cos import CosKeySensor, CosKeysUnchangedSensor

POLL = float(os.environ.get("COS_TEST_POLL", "0.2"))
BUCKET = "sensors-1250000000"
PARAMS: dict[str, Any] = {
    "key": f"cos://{BUCKET}/raw/dt=x/_SUCCESS",
    "prefix": f"cos://{BUCKET}/raw/dt=x/",
}


def _dag(mode: str) -> DAG:
    sensor_mode = "reschedule" if mode == "reschedule" else "poke"
    with DAG(f"cos_sensor_{mode}", schedule=None, start_date=datetime(2026, 11, 1), params=PARAMS) as dag:
        key = CosKeySensor(
            task_id="wait_key",
            bucket_key="{{ params.key }}",
            poke_interval=POLL,
            timeout=60,
            mode=sensor_mode,
            deferrable=mode == "deferrable",
        )
        quiet = CosKeysUnchangedSensor(
            task_id="wait_quiet",
            prefix="{{ params.prefix }}",
            inactivity_period=1.0,
            min_objects=1,
            poke_interval=POLL,
            timeout=60,
            mode=sensor_mode,
            deferrable=mode == "deferrable",
        )
        key >> quiet
    return dag


poke_dag = _dag("poke")
reschedule_dag = _dag("reschedule")
deferrable_dag = _dag("deferrable")

with DAG(
    "cos_sensor_wildcard", schedule=None, start_date=datetime(2026, 11, 1), params=PARAMS
) as wildcard_dag:
    CosKeySensor(
        task_id="wait_key",
        bucket_key="{{ params.key }}",
        wildcard_match=True,
        poke_interval=POLL,
        timeout=60,
        deferrable=True,
    )

with DAG("cos_sensor_timeout", schedule=None, start_date=datetime(2026, 11, 1), params=PARAMS) as timeout_dag:
    for mode in ("poke", "reschedule", "deferrable"):
        CosKeySensor(
            task_id=f"never_{mode}",
            bucket_key="{{ params.key }}",
            poke_interval=POLL,
            timeout=2,
            mode="reschedule" if mode == "reschedule" else "poke",
            deferrable=mode == "deferrable",
            retries=0,
        )
    CosKeySensor(
        task_id="never_soft",
        bucket_key="{{ params.key }}",
        poke_interval=POLL,
        timeout=2,
        soft_fail=True,
        deferrable=True,
    )
