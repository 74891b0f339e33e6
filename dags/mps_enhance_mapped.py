"""Small partitions, one Airflow task per image: the mapped variant of ``mps_enhance_daily``.

Use this when a partition holds a few dozen images and you want each image as its own task instance
(its own log, retry button and MPS console link). Above a few hundred images per day prefer
``mps_enhance_daily``: every mapped instance costs scheduler time (~70 ms each) and Airflow refuses to
map more than ``[core] max_map_length`` (1,024) items.

All instances share the ``mps`` pool (create it with ``airflow pools set mps 8 "MPS ProcessImage"``),
which bounds how many tasks wait on MPS at once; the hook also paces ProcessImage to the connection's
rate limit inside each worker.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG, task

from airflow_mps.hooks.mps import MpsHook
from airflow_mps.operators.mps import MpsProcessImageOperator

BUCKET = os.environ.get("MPS_DAGS_BUCKET", "photos-1250000000")
START_DATE = datetime.fromisoformat(os.environ.get("MPS_DAGS_START_DATE", "2026-11-01"))
# How often to ask MPS about unfinished work (seconds); the demo and tests use 1.
POLL_INTERVAL = float(os.environ.get("MPS_DAGS_POLL_INTERVAL", "30"))
POOL = os.environ.get("MPS_DAGS_POOL", "mps")
SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")

with DAG(
    dag_id="mps_enhance_mapped",
    schedule="@daily",
    start_date=START_DATE,
    catchup=False,
    tags=["mps", "example"],
    doc_md=__doc__,
):

    @task
    def list_partition(ds=None) -> list[str]:
        """The partition's images as ``cos://`` URIs (one mapped task each)."""
        hook = MpsHook()
        prefix = f"raw/dt={ds}/"
        return [
            f"cos://{BUCKET}/{obj.key}"
            for obj in hook.list_objects(BUCKET, prefix)
            if obj.key.lower().endswith(SUFFIXES)
        ]

    MpsProcessImageOperator.partial(
        task_id="enhance_one",
        pool=POOL,
        output_storage=f"cos://{BUCKET}",
        output_dir="/enhanced-mapped/dt={{ ds }}/",
        image_task={
            "EncodeConfig": {"Format": "WebP", "Quality": 85},
            "EnhanceConfig": {"SharpEnhance": {"Switch": "ON", "Intensity": 0.5}},
        },
        deferrable=True,
        poll_interval=POLL_INTERVAL,
    ).expand(input=list_partition())
