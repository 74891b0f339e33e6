"""What the operator does where Airflow has no ``task_state_store`` (Airflow 3.0-3.2), for real:
official SDK → HTTP → the emulator, through ``dag.test()`` on the operator test DAGs.

The documented behaviour below 3.3 is "every try submits; the hook's reconciliation applies". These
tests pin it (a retry after a death submits one more MPS task and succeeds with it) and keep the
failure checks whose output text cannot be captured under Airflow 3.0's ``dag.test()`` (state, try
count, one submission). On an Airflow with a task state store they skip: the integration suite covers
the durable behaviour there.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("PIL")
from PIL import Image

from airflow_mps.emulator.testing import EmulatorServer
from airflow_mps.operators.mps import MpsProcessImageOperator

REPO = Path(__file__).resolve().parents[2]
TEST_DAGS = REPO / "tests" / "dags"
IN_BUCKET = "in-1250000000"
OUT_BUCKET = "out-1250000000"

pytestmark = pytest.mark.skipif(
    bool(MpsProcessImageOperator(task_id="probe", input="x").durable),
    reason="this Airflow has task_state_store; tests/integration covers the durable behaviour",
)


def _jpeg(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), color).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorServer]:
    keys = (
        "AIRFLOW_CONN_TENCENTCLOUD_DEFAULT",
        "MPS_TEST_POLL",
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST",
    )
    saved = {k: os.environ.get(k) for k in keys}
    with EmulatorServer(data_dir=tmp_path_factory.mktemp("mps-floor")) as server:
        os.environ["AIRFLOW_CONN_TENCENTCLOUD_DEFAULT"] = server.connection_uri()
        os.environ["MPS_TEST_POLL"] = "0.1"
        local = "airflow.dag_processing.bundles.local.LocalDagBundle"
        os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(
            [
                {"name": "mps-test-dags", "classpath": local, "kwargs": {"path": str(TEST_DAGS)}},
                {"name": "dags-folder", "classpath": local, "kwargs": {}},
            ]
        )
        server.cos_backend.create_bucket(IN_BUCKET)
        server.cos_backend.create_bucket(OUT_BUCKET)
        for i in range(3):
            server.cos_backend.put_object(IN_BUCKET, f"raw/f{i}.jpg", _jpeg((60 * i, 90, 30)))
        yield server
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def dags(emu: EmulatorServer, airflow_db: None) -> dict[str, Any]:
    spec = importlib.util.spec_from_file_location(
        "mps_operator_test_dags", TEST_DAGS / "mps_operator_test_dags.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from airflow.sdk import DAG

    return {d.dag_id: d for d in vars(module).values() if isinstance(d, DAG)}


def _submissions(emu: EmulatorServer, key: str) -> int:
    return int(emu.stats()["submissions_by_input"].get(key, 0))


def _run(dags: dict[str, Any], dag_id: str, **conf: Any) -> tuple[Any, dict[tuple[str, int], Any]]:
    dr = dags[dag_id].test(run_conf=conf or None)
    return dr, {(ti.task_id, ti.map_index): ti for ti in dr.get_task_instances()}


def _xcom(dr: Any, task_id: str, key: str = "return_value") -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(
            XComModel.get_many(run_id=dr.run_id, key=key, task_ids=task_id, dag_ids=dr.dag_id, map_indexes=-1)
        ).first()
        return None if row is None else XComModel.deserialize_value(row)


@pytest.mark.parametrize(
    ("dag_id", "image"), [("mps_test_dies_sync", "f0"), ("mps_test_dies_before_store", "f1")]
)
def test_a_retry_after_dying_submits_one_more_task_and_succeeds_with_it(
    dag_id: str, image: str, emu: EmulatorServer, dags: dict[str, Any]
) -> None:
    key = f"cos://{IN_BUCKET}/raw/{image}.jpg"
    dr, tis = _run(dags, dag_id, input=key)
    assert dr.state == "success"
    assert tis[("process", -1)].try_number == 2  # the first try really died
    assert _submissions(emu, key) == 2  # no store: the retry submitted again, exactly once
    result = _xcom(dr, "process")
    assert result["status"] == "SUCCESS" and result["outputs"][0]["path"].endswith(f"/{image}.webp")
    assert _xcom(dr, "process", key="mps_task_id") == result["mps_task_id"]


@pytest.mark.parametrize(
    ("dag_id", "failing_task"), [("mps_test_sync", "process"), ("mps_test_deferrable", "process")]
)
def test_a_failed_mps_task_fails_the_airflow_task_without_retry(
    dag_id: str, failing_task: str, emu: EmulatorServer, dags: dict[str, Any]
) -> None:
    missing = f"cos://{IN_BUCKET}/raw/missing-{dag_id}.jpg"
    dr, tis = _run(dags, dag_id, input=missing)
    assert dr.state == "failed"
    ti = tis[(failing_task, -1)]
    assert ti.state == "failed" and ti.try_number == 1  # AirflowFailException: no retry although retries=2
    assert _submissions(emu, missing) == 1
    mps_task_id = _xcom(dr, failing_task, key="mps_task_id")
    detail = emu.mps_client().call_json("DescribeImageTaskDetail", {"TaskId": mps_task_id})["Response"]
    code = detail.get("ErrMsg") or (detail.get("ImageProcessTaskResultSet") or [{}])[0].get("ErrMsg")
    assert (
        code == "SourceFileError.ContentMalformed"
    )  # a missing object, as documented (emulator-fidelity.md)
