"""DAG for the rendered-fields secrets test (tests/integration/operators/test_operator_secrets_emulator.py) — not an example.

Every task carries an ``S3SecretKey`` (from ``MPS_TEST_S3_SECRET``) in a different form: a literal dict,
JSON text, a template rendering JSON from params, JSON text around a templated secret, an S3 input as
JSON, and a mapped task whose map values are JSON text. The emulator refuses AWS-S3 storage, so each
task fails at submission — after Airflow stored its rendered fields, which is what the test reads.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Any

from airflow.sdk import DAG

from airflow_mps.operators.mps import MpsProcessImageOperator

SECRET = os.environ.get("MPS_TEST_S3_SECRET", "S3SECRET-not-set-by-the-test")
COS_INPUT = "cos://in-1250000000/raw/a.jpg"


def s3_storage(secret: str) -> dict[str, Any]:
    return {
        "Type": "AWS-S3",
        "S3OutputStorage": {
            "S3Bucket": "b",
            "S3Region": "us-east-1",
            "S3SecretId": "AKIAEX",
            "S3SecretKey": secret,
        },
    }


def s3_input(secret: str) -> dict[str, Any]:
    info = {"S3Bucket": "b", "S3Region": "us-east-1", "S3Object": "/raw/a.png", "S3SecretId": "AKIAEX"}
    return {"Type": "AWS-S3", "S3InputInfo": {**info, "S3SecretKey": secret}}


COMMON: dict[str, Any] = {
    "region": "ap-guangzhou",
    "image_task": {"EncodeConfig": {"Format": "JPEG"}},
    "poll_interval": 0.1,
    "timeout": 60,
    "retries": 0,
}

with DAG(
    "mps_test_secrets_rendered",
    schedule=None,
    start_date=datetime(2026, 11, 1),
    catchup=False,
    params={"storage": s3_storage(SECRET), "secret": SECRET},
) as secrets_dag:
    MpsProcessImageOperator(
        task_id="literal_dict", input=COS_INPUT, output_storage=s3_storage(SECRET), **COMMON
    )
    MpsProcessImageOperator(
        task_id="json_text", input=COS_INPUT, output_storage=json.dumps(s3_storage(SECRET)), **COMMON
    )
    MpsProcessImageOperator(
        task_id="templated_json", input=COS_INPUT, output_storage="{{ params.storage | tojson }}", **COMMON
    )
    MpsProcessImageOperator(
        task_id="templated_secret",
        input=COS_INPUT,
        output_storage=json.dumps(s3_storage("{{ params.secret }}")),
        **COMMON,
    )
    MpsProcessImageOperator(
        task_id="s3_input_json",
        input=json.dumps(s3_input(SECRET)),
        output_storage="cos://out-1250000000",
        **COMMON,
    )
    MpsProcessImageOperator.partial(task_id="mapped", input=COS_INPUT, **COMMON).expand(
        output_storage=[json.dumps(s3_storage(SECRET)), json.dumps(s3_storage(SECRET))]
    )
