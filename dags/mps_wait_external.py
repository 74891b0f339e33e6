"""Fire-and-forget submission, then a deferrable sensor waits for the MPS task.

The split is useful when something other than this DAG run should own the wait — or, as here, to show
the two halves: ``submit`` returns as soon as MPS accepted the task (its XCom carries ``mps_task_id``),
and ``wait`` defers to the triggerer until that task finishes, failing promptly with the MPS error code
if the task fails. No worker slot is held while MPS works.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG

from airflow_mps.operators.mps import MpsProcessImageOperator
from airflow_mps.sensors.mps import MpsImageTaskSensor

BUCKET = os.environ.get("MPS_DAGS_BUCKET", "photos-1250000000")
START_DATE = datetime.fromisoformat(os.environ.get("MPS_DAGS_START_DATE", "2026-11-01"))
# How often to ask MPS about unfinished work (seconds); the demo and tests use 1.
POLL_INTERVAL = float(os.environ.get("MPS_DAGS_POLL_INTERVAL", "30"))

with DAG(
    dag_id="mps_wait_external",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    tags=["mps", "example"],
    doc_md=__doc__,
):
    submit = MpsProcessImageOperator(
        task_id="submit",
        input=f"cos://{BUCKET}/raw/dt={{{{ ds }}}}/landscape.jpg",
        output_storage=f"cos://{BUCKET}",
        output_path="/converted/dt={{ ds }}/landscape.png",
        image_task={"EncodeConfig": {"Format": "PNG"}},
        wait_for_completion=False,
    )

    wait = MpsImageTaskSensor(
        task_id="wait",
        mps_task_id="{{ ti.xcom_pull(task_ids='submit')['mps_task_id'] }}",
        deferrable=True,
        poke_interval=POLL_INTERVAL,
        timeout=3600,
    )

    submit >> wait
