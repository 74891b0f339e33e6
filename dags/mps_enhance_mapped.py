"""Small partitions, one Airflow task per image: the mapped variant of ``mps_enhance_daily``.

Use this when a partition holds a few dozen images and you want each image as its own task instance
(its own log, retry button and MPS console link). Above a few hundred images per day prefer
``mps_enhance_daily``: every mapped instance costs scheduler time (~70 ms each) and Airflow refuses to
map more than ``[core] max_map_length`` (1,024) items.

Schedule and partition day are the same as ``mps_enhance_daily`` (read its docstring): each run
processes the day that has completed, ``catchup=False``, and a ``partition`` param reprocesses a
chosen day.

At most ``MPS_DAGS_MAX_ACTIVE`` (default 8) instances of ``enhance_one`` run at once per DAG run
(``max_active_tis_per_dagrun``; Airflow 3.3 counts deferred instances too, 3.0 only running ones); a
deferred instance, waiting on MPS in the triggerer, holds no worker slot.

With ``MPS_DAGS_POOL`` set (see ``mps_enhance_daily``, "The pool"), each instance also takes a slot of
that pool while it runs on a worker — its one ``ProcessImage`` call, then briefly again to read the
result — and none while deferred: the same pool as ``mps_enhance_daily``'s batch, so the account's
submitters take turns. With the recommended pool of 1 the instances submit one after another (each
holds the slot for its own start on a worker and one call), and wait while a batch of the account
submits. Unset (the default), the instances run in Airflow's ``default_pool``. A pool you name must
exist: a task whose pool does not exist is never queued (it stays ``scheduled``; only the scheduler's
log and ``airflow tasks failed-deps`` say why), so the DAG has a ``dagrun_timeout``
(``MPS_DAGS_RUN_TIMEOUT``, default 24 hours): the scheduler fails a run still unfinished after it.

Prerequisites: the ``tencentcloud_default`` connection (nothing else). Configuration (environment, parse
time): ``MPS_DAGS_BUCKET``, ``MPS_DAGS_START_DATE``, ``MPS_DAGS_TIMEZONE``, ``MPS_DAGS_POLL_INTERVAL``,
``MPS_DAGS_POOL``, ``MPS_DAGS_RUN_TIMEOUT`` as for ``mps_enhance_daily``, and ``MPS_DAGS_MAX_ACTIVE``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_mps.hooks.mps import MpsHook
from airflow_mps.operators.mps import MpsProcessImageOperator

try:
    from airflow.sdk import CronDataIntervalTimetable
except ImportError:  # older Airflow (3.0): only airflow-core defines it
    from airflow.timetables.interval import CronDataIntervalTimetable  # type: ignore[assignment]  # core class, same constructor

BUCKET = os.environ.get("MPS_DAGS_BUCKET", "photos-1250000000")
TIMEZONE = os.environ.get("MPS_DAGS_TIMEZONE", "UTC")
START_DATE = pendulum.instance(
    datetime.fromisoformat(os.environ.get("MPS_DAGS_START_DATE", "2026-11-01")), tz=TIMEZONE
)
# How often to ask MPS about unfinished work (seconds); the demo and tests use 1 or less.
POLL_INTERVAL = float(os.environ.get("MPS_DAGS_POLL_INTERVAL", "30"))
MAX_ACTIVE = int(os.environ.get("MPS_DAGS_MAX_ACTIVE", "8"))
# The account's submitters' pool, as in mps_enhance_daily (unset or empty: Airflow's default_pool).
POOL = os.environ.get("MPS_DAGS_POOL", "") or "default_pool"
# The scheduler fails a run still unfinished after this long (seconds): the end of a run whose tasks
# wait for a pool that does not exist.
RUN_TIMEOUT = float(os.environ.get("MPS_DAGS_RUN_TIMEOUT", str(24 * 3600)))
SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


def partition_day(dag_run: Any, params: Mapping[str, Any]) -> str:
    """The day (``YYYY-MM-DD`` in ``TIMEZONE``) a run processes — the same rule as ``mps_enhance_daily``."""
    if params.get("partition"):
        return str(params["partition"])
    tz = pendulum.timezone(TIMEZONE)
    if dag_run.data_interval_start is not None:
        return dag_run.data_interval_start.astimezone(tz).date().isoformat()
    # No logical date, hence no data interval: the last complete day before the run was triggered.
    return (dag_run.run_after.astimezone(tz).date() - timedelta(days=1)).isoformat()


with DAG(
    dag_id="mps_enhance_mapped",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone=TIMEZONE),
    start_date=START_DATE,
    catchup=False,
    dagrun_timeout=timedelta(seconds=RUN_TIMEOUT),
    params={
        "partition": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Process this day (YYYY-MM-DD) instead of the run's data interval.",
        )
    },
    user_defined_macros={"partition_day": partition_day},
    tags=["mps", "example"],
    doc_md=__doc__,
):

    @task
    def list_partition(*, dag_run: Any = None, params: Any = None) -> list[str]:
        """The partition's images as ``cos://`` URIs (one mapped task each)."""
        hook = MpsHook()
        prefix = f"raw/dt={partition_day(dag_run, params)}/"
        return [
            f"cos://{BUCKET}/{obj.key}"
            for obj in hook.list_objects(BUCKET, prefix)
            if obj.key.lower().endswith(SUFFIXES)
        ]

    MpsProcessImageOperator.partial(
        task_id="enhance_one",
        max_active_tis_per_dagrun=MAX_ACTIVE,
        pool=POOL,
        output_storage=f"cos://{BUCKET}",
        output_dir="/enhanced-mapped/dt={{ partition_day(dag_run, params) }}/",
        image_task={
            "EncodeConfig": {"Format": "WebP", "Quality": 85},
            "EnhanceConfig": {"SharpEnhance": {"Switch": "ON", "Intensity": 0.5}},
        },
        deferrable=True,
        poll_interval=POLL_INTERVAL,
    ).expand(input=list_partition())
