"""Enhance every image that landed in one day's COS partition — the provider's main job.

Every day (and in backfills over past days, ``catchup=True``) this DAG:

1. ``enhance``: one ``MpsBatchProcessImageOperator`` task takes every image under
   ``cos://<bucket>/raw/dt=<ds>/``, submits it to MPS ``ProcessImage`` (denoise + 2x super-resolution +
   colour, converted to JPEG) at the API's rate limit, defers while MPS works (no worker slot held),
   and writes a manifest (one JSON line per image) next to the outputs in
   ``cos://<bucket>/enhanced/dt=<ds>/``. Images whose output already exists are skipped, so reruns
   and backfills are idempotent; a retry never submits an image twice.
2. ``publish``: records an asset event on the enhanced prefix, keyed by the partition (``ds``) on
   Airflow >= 3.3, so downstream DAGs scheduled on that asset see which day is ready.
3. ``notify``: POSTs the run's summary (counts, manifest URI, failed inputs) to a webhook through the
   HTTP provider's ``HttpOperator`` (connection ``mps_webhook``). It runs even when ``enhance`` failed
   (the batch operator pushes its summary under the XCom key ``summary`` before applying its failure
   policy), so the failure report reaches the team too.

Configuration (environment, read at parse time; every value has an offline default):
``MPS_DAGS_BUCKET`` (default ``photos-1250000000``), ``MPS_DAGS_START_DATE`` (default ``2026-11-01``),
``MPS_DAGS_WEBHOOK_CONN_ID`` (default ``mps_webhook``), ``MPS_DAGS_POLL_INTERVAL`` (seconds, default 30). Credentials, region and endpoint come from the
``tencentcloud_default`` connection (see docs/connection.md).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.providers.http.operators.http import HttpOperator
from airflow.sdk import DAG, Asset, task

from airflow_mps.operators.mps import MpsBatchProcessImageOperator

BUCKET = os.environ.get("MPS_DAGS_BUCKET", "photos-1250000000")
START_DATE = datetime.fromisoformat(os.environ.get("MPS_DAGS_START_DATE", "2026-11-01"))
# How often to ask MPS about unfinished work (seconds); the demo and tests use 1.
POLL_INTERVAL = float(os.environ.get("MPS_DAGS_POLL_INTERVAL", "30"))
WEBHOOK_CONN_ID = os.environ.get("MPS_DAGS_WEBHOOK_CONN_ID", "mps_webhook")

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

with DAG(
    dag_id="mps_enhance_daily",
    schedule="@daily",
    start_date=START_DATE,
    catchup=True,
    max_active_runs=2,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
    tags=["mps", "example"],
    doc_md=__doc__,
):
    enhance = MpsBatchProcessImageOperator(
        task_id="enhance",
        source=f"cos://{BUCKET}/raw/dt={{{{ ds }}}}/",
        destination=f"cos://{BUCKET}/enhanced/dt={{{{ ds }}}}/",
        image_task=IMAGE_TASK,
        # Tolerate a few bad uploads (corrupt files) without failing the whole day.
        max_failed_ratio=0.05,
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=6 * 3600,
    )

    @task(outlets=[ENHANCED])
    def publish(summary: dict, *, outlet_events=None, ds=None) -> dict:
        """Announce the day's enhanced partition to asset-aware downstream DAGs."""
        event = outlet_events[ENHANCED]
        event.extra = {
            "partition": ds,
            "manifest_uri": summary["manifest_uri"],
            "succeeded": summary["succeeded"],
            "failed": summary["failed"],
        }
        if hasattr(event, "add_partitions"):  # partitioned asset events: Airflow >= 3.3
            event.add_partitions(ds)
        return summary

    notify = HttpOperator(
        task_id="notify",
        http_conn_id=WEBHOOK_CONN_ID,
        endpoint="mps/daily",
        method="POST",
        headers={"Content-Type": "application/json"},
        data=(
            '{"dag_run": {{ run_id | tojson }}, "partition": {{ ds | tojson }}, '
            '"summary": {{ ti.xcom_pull(task_ids="enhance", key="summary") | tojson }}}'
        ),
        trigger_rule="all_done",
    )

    published = publish(enhance.output)
    [enhance, published] >> notify
