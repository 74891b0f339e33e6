"""Fire-and-forget submission, then a deferrable sensor waits for the MPS task.

The split is useful when something other than this DAG run should own the wait — or, as here, to show
the two halves: ``submit`` returns as soon as MPS accepted the task (its XCom carries ``mps_task_id``),
and ``wait`` defers to the triggerer until that task finishes, failing promptly with the MPS error code
if the task fails. No worker slot is held while MPS works.

It converts ``cos://<bucket>/raw/dt=<day>/landscape.jpg`` to PNG, where ``<day>`` is the ``partition``
param when given, else the run's logical date — or, for a manual run without a logical date (Airflow 3
allows one; ``{{ ds }}`` is then undefined), the day the run was triggered (``dag_run.run_after``).

With ``MPS_DAGS_POOL`` set, ``submit`` takes a slot of that pool for its one ``ProcessImage`` call, the
pool every submitting task of the example DAGs shares (see ``mps_enhance_daily``, "The pool"); ``wait``
needs none. Unset (the default), ``submit`` runs in Airflow's ``default_pool``. A task whose pool does
not exist stays ``scheduled`` forever, so the scheduler fails a run still unfinished after
``MPS_DAGS_RUN_TIMEOUT`` (``dagrun_timeout``, default 24 hours).

Prerequisites: the ``tencentcloud_default`` connection (nothing else). Configuration (environment, parse
time): ``MPS_DAGS_BUCKET``, ``MPS_DAGS_START_DATE``, ``MPS_DAGS_POLL_INTERVAL``, ``MPS_DAGS_POOL``,
``MPS_DAGS_RUN_TIMEOUT`` as for ``mps_enhance_daily``.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param

from airflow_mps.operators.mps import MpsProcessImageOperator
from airflow_mps.sensors.mps import MpsImageTaskSensor

BUCKET = os.environ.get("MPS_DAGS_BUCKET", "photos-1250000000")
START_DATE = datetime.fromisoformat(os.environ.get("MPS_DAGS_START_DATE", "2026-11-01"))
# How often to ask MPS about unfinished work (seconds); the demo and tests use 1.
POLL_INTERVAL = float(os.environ.get("MPS_DAGS_POLL_INTERVAL", "30"))
# The account's submitters' pool, as in mps_enhance_daily (unset or empty: Airflow's default_pool).
POOL = os.environ.get("MPS_DAGS_POOL", "") or "default_pool"
# The scheduler fails a run still unfinished after this long (seconds): the end of a run whose task
# waits for a pool that does not exist.
RUN_TIMEOUT = float(os.environ.get("MPS_DAGS_RUN_TIMEOUT", str(24 * 3600)))
# The run's day: never {{ ds }}, which a run without a logical date does not have.
DAY = "{{ params.partition or (dag_run.logical_date or dag_run.run_after) | ds }}"

with DAG(
    dag_id="mps_wait_external",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    dagrun_timeout=timedelta(seconds=RUN_TIMEOUT),
    params={
        "partition": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Read the image from this day's partition (YYYY-MM-DD).",
        )
    },
    tags=["mps", "example"],
    doc_md=__doc__,
):
    submit = MpsProcessImageOperator(
        task_id="submit",
        input=f"cos://{BUCKET}/raw/dt={DAY}/landscape.jpg",
        output_storage=f"cos://{BUCKET}",
        output_path=f"/converted/dt={DAY}/landscape.{{format}}",
        image_task={"EncodeConfig": {"Format": "PNG"}},
        wait_for_completion=False,
        pool=POOL,
    )

    wait = MpsImageTaskSensor(
        task_id="wait",
        mps_task_id="{{ ti.xcom_pull(task_ids='submit')['mps_task_id'] }}",
        deferrable=True,
        poke_interval=POLL_INTERVAL,
        timeout=3600,
    )

    submit >> wait
