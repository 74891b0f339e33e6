"""Enhance every image that landed in one day's COS partition — the provider's main job.

**Which day a run processes.** Each run processes the day that has *completed*: the run that starts
at 00:00 UTC on 2 Nov reads ``cos://<bucket>/raw/dt=2026-11-01/``. The schedule is an explicit
data-interval timetable (``CronDataIntervalTimetable("0 0 * * *")``): a run covers the interval
[day, day + 1) and starts when the interval ends, so the partition is ``data_interval_start`` as a
date. (A plain ``schedule="@daily"`` on Airflow 3 triggers at the *start* of a day with an empty data
interval, and ``dt={{ ds }}`` would then read the day that has just begun, before its images land.)
The day is rendered by the macro ``partition_day`` below, in this order:

* the ``partition`` param, when a run is triggered with one (``{"partition": "2026-11-01"}`` in the
  UI's trigger form or ``--conf``): reprocess exactly that day;
* the run's data interval: scheduled and backfill runs (the interval's day), and manual runs with a
  logical date, for which Airflow infers the last complete day before the logical date (UI, REST API,
  ``dags test``) or before the trigger time (``airflow dags trigger``, ``TriggerDagRunOperator``) —
  so to pick a day by hand, pass the ``partition`` param;
* a manual run without a logical date (allowed on Airflow 3) has no data interval: the last complete
  day before it was triggered (``run_after``), the same day Airflow would infer.

Days are in ``MPS_DAGS_TIMEZONE`` (default ``UTC``); set it to e.g. ``Asia/Shanghai`` when your
partitions are local days — the timetable and the partition follow it together.

**Catch-up.** ``catchup=False``: unpausing starts one run, for the latest complete day, not one per day
since ``start_date``. Process past days with a backfill — one run per day, ``--from-date`` and
``--to-date`` are the partition days, both inclusive::

    airflow backfill create --dag-id mps_enhance_daily --from-date 2026-11-01 --to-date 2026-11-07

**Tasks.**

1. ``wait_for_partition``: a ``CosKeySensor`` waits (deferred: no worker slot held) for the day's
   ``raw/dt=<day>/_SUCCESS`` marker, the empty object the upstream writer puts *after* a partition's
   last image (the Hadoop/Spark convention). Without it a run at 00:00 could start on a partition
   that is still being uploaded, and a late image would be missed until a manual rerun. It waits up
   to ``MPS_DAGS_MARKER_TIMEOUT`` seconds (default 12 hours), then fails the run (no retry: a sensor
   timeout is final); ``notify`` still posts, naming the day, with an empty summary.
2. ``enhance``: one ``MpsBatchProcessImageOperator`` task takes every image under the day's
   ``raw/dt=<day>/`` prefix, submits it to MPS ``ProcessImage`` (denoise + 2x super-resolution +
   colour, converted to JPEG) at the API's rate limit, defers while MPS works (no worker slot held),
   and writes a manifest (one JSON line per image) next to the outputs in ``enhanced/dt=<day>/``.
   Images whose output already exists are skipped, so reruns and backfills are idempotent; a retry
   never submits an image twice. More than 5 % failed images (``max_failed_ratio``) fail the task.
   It runs in the pool ``MPS_DAGS_POOL`` when one is set (below), the only task of the DAG that does.
3. ``publish``: records an asset event on the enhanced prefix, keyed by the partition on
   Airflow >= 3.3, so downstream DAGs scheduled on that asset see which day is ready.
4. ``notify``: POSTs the run's summary (counts, manifest URI, failed inputs) to a webhook through the
   HTTP provider's ``HttpOperator`` (connection ``mps_webhook``). It runs even when ``enhance`` failed
   (``trigger_rule="all_done"``; the batch operator pushes its summary under the XCom key ``summary``
   before applying its failure policy), so the failure report reaches the team too. When the
   connection is not defined it is *skipped*, with a log line saying so: the DAG needs only the
   ``tencentcloud_default`` connection.
5. ``watcher``: fails the run when any task above failed. Without it ``notify`` (all_done) would be
   the only leaf, and a run whose batch failed would still be marked successful. It is skipped on a
   good run.

**The pool (opt-in).** With ``MPS_DAGS_POOL`` set to an Airflow pool, ``enhance`` takes one slot of it
while it runs on a worker: while it lists and submits, and again briefly when it resumes to write the
manifest. A pool counts only queued and running tasks unless it was created with
``--include-deferred``, so a deferred batch, waiting on MPS in the triggerer, holds no slot. One
submitter alone uses the account's whole ``ProcessImage`` limit (20/s), so a pool of 1 per account
lets a backfill's runs (and every other DAG submitting to the account through the same pool) submit
one at a time instead of sharing the limit. Create it once, then set ``MPS_DAGS_POOL=mps`` where the
DAG file is parsed::

    airflow pools set mps 1 "MPS ProcessImage submitters (one account)"

(without ``--include-deferred``). Unset (the default), ``enhance`` runs in Airflow's ``default_pool``
and concurrent submitters share the account through the hook's adaptive pacing (docs/performance.md:
four at once reach 0.98 of the limit with under 2 % of calls refused). A pool you name must exist:
Airflow never queues a task whose pool does not exist; it stays ``scheduled``, and only the
scheduler's log and ``airflow tasks failed-deps`` say why. So the DAG has a ``dagrun_timeout``
(``MPS_DAGS_RUN_TIMEOUT``, default 24 hours, longer than the marker wait of 12 hours plus the batch's
own ``timeout`` of 6): the scheduler fails a run still unfinished after it and skips its waiting
tasks, and the DAG's ``on_failure_callback`` posts that to the webhook, naming the pool.

Prerequisites: the ``tencentcloud_default`` connection (credentials, region; see docs/connection.md),
``apache-airflow-providers-http`` installed, and a writer that puts
``raw/dt=<day>/_SUCCESS`` after each day's images. Optional: an ``mps_webhook`` HTTP connection.
Configuration (environment, read at parse time; every value has an offline default):
``MPS_DAGS_BUCKET`` (default ``photos-1250000000``), ``MPS_DAGS_START_DATE`` (default ``2026-11-01``),
``MPS_DAGS_TIMEZONE`` (default ``UTC``), ``MPS_DAGS_WEBHOOK_CONN_ID`` (default ``mps_webhook``),
``MPS_DAGS_POLL_INTERVAL`` (seconds, default 30; MPS polls and marker checks),
``MPS_DAGS_MARKER_TIMEOUT`` (seconds, default 43200), ``MPS_DAGS_POOL`` (default unset: ``default_pool``),
``MPS_DAGS_RUN_TIMEOUT`` (seconds, default 86400).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    AirflowNotFoundException,
    AirflowSkipException,
)
from airflow.providers.http.hooks.http import HttpHook
from airflow.providers.http.operators.http import HttpOperator
from airflow.sdk import DAG, Asset, Connection, Param, task

from airflow_mps.operators.mps import MpsBatchProcessImageOperator
from airflow_mps.sensors.cos import CosKeySensor

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
WEBHOOK_CONN_ID = os.environ.get("MPS_DAGS_WEBHOOK_CONN_ID", "mps_webhook")
# How long to wait for a day's _SUCCESS marker before failing the run (seconds).
MARKER_TIMEOUT = float(os.environ.get("MPS_DAGS_MARKER_TIMEOUT", str(12 * 3600)))
# The pool `enhance` takes a slot of while it submits: one per account, one slot (docstring, "The pool").
# Unset or empty: Airflow's default_pool, i.e. no dedicated pool (a copied DAG runs without creating one).
POOL = os.environ.get("MPS_DAGS_POOL", "") or "default_pool"
# The scheduler fails a run still unfinished after this long (seconds). It is what ends, loudly, a run
# whose task waits for a pool that does not exist: Airflow would keep that task scheduled forever.
RUN_TIMEOUT = float(os.environ.get("MPS_DAGS_RUN_TIMEOUT", str(24 * 3600)))
# The batch's own wait for MPS, per try (seconds).
BATCH_TIMEOUT = 6 * 3600

log = logging.getLogger(__name__)

ENHANCED = Asset(uri=f"cosn://{BUCKET}/enhanced/", name="mps_enhanced_photos")

# One ImageTask for the whole partition: the API's own field names (see docs/operators.md).
IMAGE_TASK = {
    "EncodeConfig": {"Format": "JPEG", "Quality": 90},
    "EnhanceConfig": {
        "Denoise": {"Switch": "ON", "Type": "weak"},
        "SuperResolution": {"Switch": "ON", "Type": "lq", "Size": 2},
        "ColorEnhance": {"Switch": "ON", "Type": "weak"},
    },
}


def partition_day(dag_run: Any, params: Mapping[str, Any]) -> str:
    """The day (``YYYY-MM-DD`` in ``TIMEZONE``) a run processes; the rules are in the module docstring.

    Registered as a template macro, so every templated field says ``{{ partition_day(dag_run, params) }}``
    and all tasks of a run agree on the day.
    """
    if params.get("partition"):
        return str(params["partition"])
    tz = pendulum.timezone(TIMEZONE)
    if dag_run.data_interval_start is not None:
        return dag_run.data_interval_start.astimezone(tz).date().isoformat()
    # No logical date, hence no data interval: the last complete day before the run was triggered.
    return (dag_run.run_after.astimezone(tz).date() - timedelta(days=1)).isoformat()


PARTITION = "{{ partition_day(dag_run, params) }}"


def skip_without_webhook(context: Any) -> None:
    """``pre_execute`` of ``notify``: skip it (at run time, not parse time) when no webhook is defined."""
    try:
        Connection.get(WEBHOOK_CONN_ID)
    except AirflowNotFoundException:
        raise AirflowSkipException(
            f"No connection {WEBHOOK_CONN_ID!r} is defined, so the run's summary is not sent anywhere. "
            f"Define it to be notified, e.g. AIRFLOW_CONN_{WEBHOOK_CONN_ID.upper()}='https://hooks.example.com'."
        ) from None


def report_timed_out_run(context: Any) -> None:
    """``on_failure_callback`` of the DAG: when the scheduler failed the run for exceeding
    ``dagrun_timeout``, POST that to the webhook (``notify`` never ran), naming the pool.

    Other failures are reported by ``notify`` itself (``all_done``), so only ``reason == "timed_out"``
    posts. The callback runs in the DAG processor; without the webhook connection it only logs.
    """
    if context.get("reason") != "timed_out":
        return
    dag_run = context.get("dag_run")  # present when the scheduler sent a task instance along
    day = partition_day(dag_run, dag_run.conf or {}) if dag_run is not None else None
    message = (
        f"The run did not finish within MPS_DAGS_RUN_TIMEOUT ({RUN_TIMEOUT:.0f} s): the scheduler failed "
        f"it and skipped its unfinished tasks. If 'enhance' never started, it was waiting for a slot of "
        f"the pool {POOL!r}; check that the pool exists (airflow pools list): Airflow keeps a task whose "
        "pool does not exist scheduled forever."
    )
    try:
        Connection.get(WEBHOOK_CONN_ID)
    except AirflowNotFoundException:
        log.warning("%s (No connection %r, so nobody is notified.)", message, WEBHOOK_CONN_ID)
        return
    HttpHook(method="POST", http_conn_id=WEBHOOK_CONN_ID).run(
        endpoint="mps/daily",
        data=json.dumps(
            {"dag_run": context.get("run_id"), "partition": day, "summary": None, "error": message}
        ),
        headers={"Content-Type": "application/json"},
    )


with DAG(
    dag_id="mps_enhance_daily",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone=TIMEZONE),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=2,
    dagrun_timeout=timedelta(seconds=RUN_TIMEOUT),
    on_failure_callback=report_timed_out_run,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
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
    # The same partition macro as the batch's source: the sensor and the batch agree on the day.
    wait_for_partition = CosKeySensor(
        task_id="wait_for_partition",
        bucket_key=f"cos://{BUCKET}/raw/dt={PARTITION}/_SUCCESS",
        deferrable=True,
        poke_interval=POLL_INTERVAL,
        timeout=MARKER_TIMEOUT,
    )

    enhance = MpsBatchProcessImageOperator(
        task_id="enhance",
        source=f"cos://{BUCKET}/raw/dt={PARTITION}/",
        destination=f"cos://{BUCKET}/enhanced/dt={PARTITION}/",
        image_task=IMAGE_TASK,
        # Tolerate a few bad uploads (corrupt files) without failing the whole day.
        max_failed_ratio=0.05,
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=BATCH_TIMEOUT,
        # A slot only while on a worker (submitting, then briefly writing the manifest): deferred, the
        # batch holds none, unless the pool was created with --include-deferred.
        pool=POOL,
    )

    @task(outlets=[ENHANCED])
    def publish(summary: dict, *, outlet_events: Any = None, dag_run: Any = None, params: Any = None) -> dict:
        """Announce the day's enhanced partition to asset-aware downstream DAGs."""
        day = partition_day(dag_run, params)
        event = outlet_events[ENHANCED]
        event.extra = {
            "partition": day,
            "manifest_uri": summary["manifest_uri"],
            "succeeded": summary["succeeded"],
            "failed": summary["failed"],
        }
        if hasattr(event, "add_partitions"):  # partitioned asset events: Airflow >= 3.3
            event.add_partitions(day)
        return summary

    notify = HttpOperator(
        task_id="notify",
        http_conn_id=WEBHOOK_CONN_ID,
        endpoint="mps/daily",
        method="POST",
        headers={"Content-Type": "application/json"},
        data=(
            '{"dag_run": {{ run_id | tojson }}, "partition": {{ partition_day(dag_run, params) | tojson }}, '
            '"summary": {{ ti.xcom_pull(task_ids="enhance", key="summary") | tojson }}}'
        ),
        trigger_rule="all_done",
        pre_execute=skip_without_webhook,
    )

    @task(trigger_rule="one_failed", retries=0)
    def watcher() -> None:
        """Fail the run when a task above failed (``notify`` runs anyway and would leave it green)."""
        raise AirflowFailException(
            "A task of this run failed (see its log; enhance's message names the failed images and "
            "the manifest). The summary was still sent by notify."
        )

    published = publish(enhance.output)  # type: ignore[arg-type]  # an XComArg: the summary dict at run time
    wait_for_partition >> enhance
    [enhance, published] >> notify
    [wait_for_partition, enhance, published, notify] >> watcher()
