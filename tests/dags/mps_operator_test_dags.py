"""DAGs for the operator integration tests (tests/integration/operators/test_operator_mps_emulator.py) — not examples.

Every DAG reads its image from ``params.input`` so one file serves success and failure cases; the
connection comes from ``AIRFLOW_CONN_TENCENTCLOUD_DEFAULT`` (the test points it at the emulator).
``MPS_TEST_POLL`` sets the poll interval (small in tests).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG

from airflow_mps.operators.mps import MpsProcessImageOperator
from airflow_mps.sensors.mps import MpsImageTaskSensor

POLL = float(os.environ.get("MPS_TEST_POLL", "0.2"))
IN_BUCKET = "in-1250000000"
OUT_BUCKET = "out-1250000000"
COMMON: dict[str, Any] = {
    "output_storage": f"cos://{OUT_BUCKET}",
    "output_dir": "/enhanced/{{ ds }}/",
    "image_task": {"EncodeConfig": {"Format": "{{ params.format }}", "Quality": 85}},
    "poll_interval": POLL,
    "timeout": 120,
}
PARAMS = {"input": f"cos://{IN_BUCKET}/raw/a.jpg", "format": "webp"}
START = datetime(2026, 11, 1)


class DiesOnceAfterStoring(MpsProcessImageOperator):
    """Simulates a worker that dies on its first try right after the TaskId was persisted."""

    def poll_until_complete(self, external_id: Any, context: Any) -> Any:
        if context["ti"].try_number == 1:
            raise RuntimeError("simulated worker death after the TaskId was stored")
        return super().poll_until_complete(external_id, context)


class DiesOnceBeforeStoring(MpsProcessImageOperator):
    """Simulates a worker that dies on its first try after MPS accepted the task but before the TaskId
    reached task_state_store (ResumableJobMixin's documented crash window, or a failing store write)."""

    def submit_job(self, context: Any) -> Any:
        external_id = super().submit_job(context)
        if context["ti"].try_number == 1:
            raise RuntimeError("simulated worker death between ProcessImage and the task_state_store write")
        return external_id


class ResumeFailsOnce(MpsProcessImageOperator):
    """Simulates a deferred try whose resume fails (e.g. the worker running execute_complete dies)."""

    def execute_complete(self, context: Any, event: Any = None) -> Any:
        if context["ti"].try_number == 1:
            raise RuntimeError("simulated failure while resuming from the trigger")
        return super().execute_complete(context, event)


with DAG("mps_test_sync", schedule=None, start_date=START, params=PARAMS, catchup=False) as sync_dag:
    MpsProcessImageOperator(task_id="process", input="{{ params.input }}", retries=2, **COMMON)

with DAG(
    "mps_test_deferrable", schedule=None, start_date=START, params=PARAMS, catchup=False
) as deferrable_dag:
    MpsProcessImageOperator(
        task_id="process", input="{{ params.input }}", deferrable=True, retries=2, **COMMON
    )

with DAG(
    "mps_test_fire_and_forget", schedule=None, start_date=START, params=PARAMS, catchup=False
) as fire_and_forget_dag:
    submit = MpsProcessImageOperator(
        task_id="submit", input="{{ params.input }}", wait_for_completion=False, retries=2, **COMMON
    )
    wait = MpsImageTaskSensor(
        task_id="wait",
        mps_task_id="{{ ti.xcom_pull(task_ids='submit')['mps_task_id'] }}",
        deferrable=True,
        poke_interval=POLL,
        timeout=120,
    )
    submit >> wait

with DAG("mps_test_mapped", schedule=None, start_date=START, params=PARAMS, catchup=False) as mapped_dag:
    MpsProcessImageOperator.partial(task_id="process", deferrable=True, **COMMON).expand(
        input=[f"cos://{IN_BUCKET}/raw/m{i}.jpg" for i in range(10)]
    )

with DAG("mps_test_dies_sync", schedule=None, start_date=START, params=PARAMS, catchup=False) as dies_dag:
    DiesOnceAfterStoring(
        task_id="process", input="{{ params.input }}", retries=1, retry_delay=timedelta(0), **COMMON
    )

with DAG(
    "mps_test_dies_before_store", schedule=None, start_date=START, params=PARAMS, catchup=False
) as dies_before_store_dag:
    DiesOnceBeforeStoring(
        task_id="process", input="{{ params.input }}", retries=1, retry_delay=timedelta(0), **COMMON
    )

with DAG(
    "mps_test_resume_fails", schedule=None, start_date=START, params=PARAMS, catchup=False
) as resume_fails_dag:
    ResumeFailsOnce(
        task_id="process",
        input="{{ params.input }}",
        deferrable=True,
        retries=1,
        retry_delay=timedelta(0),
        **COMMON,
    )

with DAG(
    "mps_test_reschedule", schedule=None, start_date=START, params=PARAMS, catchup=False
) as reschedule_dag:
    submit_r = MpsProcessImageOperator(
        task_id="submit", input="{{ params.input }}", wait_for_completion=False, **COMMON
    )
    wait_r = MpsImageTaskSensor(
        task_id="wait",
        mps_task_id="{{ ti.xcom_pull(task_ids='submit', key='mps_task_id') }}",
        mode="reschedule",
        poke_interval=0.1,
        timeout=120,
    )
    submit_r >> wait_r
