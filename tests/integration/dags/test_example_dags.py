"""The example DAGs users copy: they import cleanly and each runs in dag.test() against the emulator.

These run the DAG files exactly as shipped in ``dags/`` (configured only through the environment
variables their docstrings name), with the webhook of ``mps_enhance_daily`` pointed at a local
receiver, so a broken example fails here before it reaches a user. Besides the happy paths they pin
what issue 14 found in a real deployment: a failed batch must turn the run red (while the summary
still goes out), the webhook is optional, and a run without a logical date still has a day.
Which partition each *scheduled* run reads is tested without Airflow's database in
tests/unit/dags/test_example_dags_schedule.py.
"""

from __future__ import annotations

import io
import json
import os
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from airflow_mps.emulator.testing import EmulatorServer

REPO = Path(__file__).resolve().parents[3]
BUCKET = "photos-1250000000"
DS = "2026-11-01"
# mps_enhance_daily reads the day that has completed: the run for DS has this logical date (the
# interval [DS, DS + 1 day) ends then; a manual run at a date processes the day before it).
RUN_FOR_DS = datetime(2026, 11, 2, tzinfo=timezone.utc)

sys.path.insert(0, str(REPO / "demo"))
from samples import sample_photos  # noqa: E402


class _Receiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.posts.append((self.path, json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmulatorServer, _Receiver]]:
    names = (
        "AIRFLOW_CONN_TENCENTCLOUD_DEFAULT",
        "AIRFLOW_CONN_MPS_WEBHOOK",
        "MPS_DAGS_BUCKET",
        "MPS_DAGS_POLL_INTERVAL",
    )
    saved = {k: os.environ.get(k) for k in names}
    receiver = _Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    with EmulatorServer(data_dir=tmp_path_factory.mktemp("example-dags-emu")) as server:
        os.environ["AIRFLOW_CONN_TENCENTCLOUD_DEFAULT"] = server.connection_uri()
        os.environ["AIRFLOW_CONN_MPS_WEBHOOK"] = f"http://127.0.0.1:{receiver.server_address[1]}"
        os.environ["MPS_DAGS_BUCKET"] = BUCKET
        os.environ["MPS_DAGS_POLL_INTERVAL"] = "0.5"
        server.cos_backend.create_bucket(BUCKET)
        for photo in sample_photos(DS):
            server.cos_backend.put_object(BUCKET, f"raw/dt={DS}/{photo.name}", photo.data, photo.content_type)
        # The writer's "partition complete" marker, after the images (README: prerequisites).
        server.cos_backend.put_object(BUCKET, f"raw/dt={DS}/_SUCCESS", b"")
        yield server, receiver
    receiver.shutdown()
    receiver.server_close()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _asset_events_have_partitions() -> bool:
    from airflow.models.asset import AssetEvent

    return hasattr(AssetEvent, "partition_key")


def _dagbag() -> Any:
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow < 3.1 keeps DagBag in airflow.models
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    return DagBag(dag_folder=str(REPO / "dags"))  # examples are off (tests/conftest.py)


def _xcom(dr: Any, task_id: str) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(
            XComModel.get_many(run_id=dr.run_id, key="return_value", task_ids=task_id, dag_ids=dr.dag_id)
        ).first()
        return None if row is None else XComModel.deserialize_value(row)


def _states(dr: Any) -> dict[tuple[str, int], str]:
    return {(ti.task_id, ti.map_index): str(ti.state) for ti in dr.get_task_instances()}


def _posts_during(receiver: _Receiver) -> list[tuple[str, dict[str, Any]]]:
    """The webhook posts received from now on (the receiver lives for the whole module)."""
    receiver.posts.clear()
    return receiver.posts


_needs_partitioned_asset_events = pytest.mark.skipif(
    not _asset_events_have_partitions(),
    reason="partitioned asset events are absent (Airflow < 3.3), and this Airflow's dag.test() never "
    "registers the DAG's assets, so the publish task's outlet fails as an inactive asset",
)


def test_example_dags_import_without_errors(env: Any) -> None:
    bag = _dagbag()
    assert bag.import_errors == {}
    assert {"mps_enhance_daily", "mps_enhance_mapped", "mps_wait_external"} <= set(bag.dag_ids)
    for dag_id in ("mps_enhance_daily", "mps_enhance_mapped", "mps_wait_external"):
        dag = bag.dags[dag_id]
        assert dag.doc_md, f"{dag_id} must document itself for users who copy it"
        assert "example" in dag.tags


@_needs_partitioned_asset_events
@pytest.mark.usefixtures("airflow_db")
def test_enhance_daily_processes_the_partition_and_reports(env: tuple[EmulatorServer, _Receiver]) -> None:
    server, receiver = env
    posts = _posts_during(receiver)
    photos = {p.name: p for p in sample_photos(DS)}
    dag = _dagbag().dags["mps_enhance_daily"]
    dr = dag.test(logical_date=RUN_FOR_DS)

    assert _states(dr) == {
        ("wait_for_partition", -1): "success",
        ("enhance", -1): "success",
        ("publish", -1): "success",
        ("notify", -1): "success",
        ("watcher", -1): "skipped",  # nothing failed
    }
    assert str(dr.state) == "success"
    assert server.stats()["tasks_created"] == len(photos)

    # The sensor found the marker; the batch ignored it (not an image suffix): one task per photo.
    assert _xcom(dr, "wait_for_partition") == f"cos://{BUCKET}/raw/dt={DS}/_SUCCESS"

    # Every image enhanced: JPEG, twice the size (2x super-resolution), under the mirrored layout.
    for name, photo in photos.items():
        stem = name.rsplit(".", 1)[0]
        out = server.cos_backend.get_object(BUCKET, f"enhanced/dt={DS}/{stem}.jpg")
        before, after = Image.open(io.BytesIO(photo.data)), Image.open(io.BytesIO(out.data))
        assert after.format == "JPEG"
        assert after.size == (before.width * 2, before.height * 2)

    manifest = server.cos_backend.get_object(BUCKET, f"enhanced/dt={DS}/_mps_manifest.jsonl").data
    lines = [json.loads(line) for line in manifest.decode().splitlines()]
    assert sorted(line["input"] for line in lines) == sorted(
        f"cos://{BUCKET}/raw/dt={DS}/{n}" for n in photos
    )
    assert {line["state"] for line in lines} == {"succeeded"}

    assert len(posts) == 1
    path, payload = posts[0]
    assert path == "/mps/daily"
    assert payload["partition"] == DS
    assert payload["summary"]["succeeded"] == len(photos)
    assert payload["summary"]["manifest_uri"] == f"cos://{BUCKET}/enhanced/dt={DS}/_mps_manifest.jsonl"

    # The day's partition is announced on the enhanced asset, keyed by the partition (Airflow >= 3.3).
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        events = (
            session.query(AssetEvent)
            .filter(AssetEvent.source_dag_id == "mps_enhance_daily", AssetEvent.source_run_id == dr.run_id)
            .all()
        )
        assert [(e.source_task_id, e.partition_key) for e in events] == [("publish", DS)]
        assert events[0].extra["succeeded"] == len(photos)
        assert events[0].extra["manifest_uri"].endswith(f"dt={DS}/_mps_manifest.jsonl")

    # A rerun of the same partition is idempotent: everything is skipped, nothing is submitted.
    before_tasks = server.stats()["tasks_created"]
    # (A second run needs a distinct logical date; one second later is still partition DS.)
    dr2 = dag.test(logical_date=RUN_FOR_DS + timedelta(seconds=1))
    assert _states(dr2)[("enhance", -1)] == "success"
    assert server.stats()["tasks_created"] == before_tasks


@pytest.mark.usefixtures("airflow_db")
def test_enhance_daily_run_fails_when_the_batch_fails_and_still_notifies(
    env: tuple[EmulatorServer, _Receiver],
) -> None:
    """Issue 14: a corrupt upload made `enhance` fail, yet the run was green (notify, all_done, was
    the only leaf). Now the run is failed — by `watcher` — and the failure summary is still posted."""
    server, receiver = env
    posts = _posts_during(receiver)
    day = "2026-11-05"
    photos = list(sample_photos(day))
    for photo in photos:
        server.cos_backend.put_object(BUCKET, f"raw/dt={day}/{photo.name}", photo.data, photo.content_type)
    server.cos_backend.put_object(BUCKET, f"raw/dt={day}/corrupt.jpg", b"not a picture at all", "image/jpeg")
    server.cos_backend.put_object(BUCKET, f"raw/dt={day}/_SUCCESS", b"")

    dag = _dagbag().dags["mps_enhance_daily"]
    dr = dag.test(logical_date=datetime(2026, 11, 6, tzinfo=timezone.utc))  # the run for 5 Nov

    # 1 of 5 images failed > max_failed_ratio 0.05: enhance fails, without an Airflow retry.
    assert _states(dr) == {
        ("wait_for_partition", -1): "success",
        ("enhance", -1): "failed",
        ("publish", -1): "upstream_failed",
        ("notify", -1): "success",
        ("watcher", -1): "failed",
    }
    assert str(dr.state) == "failed"
    assert len(posts) == 1
    _, payload = posts[0]
    assert payload["partition"] == day
    assert payload["summary"]["failed"] == 1 and payload["summary"]["succeeded"] == len(photos)
    assert [f["input"] for f in payload["summary"]["failed_inputs"]] == [
        f"cos://{BUCKET}/raw/dt={day}/corrupt.jpg"
    ]


@_needs_partitioned_asset_events
@pytest.mark.usefixtures("airflow_db")
def test_enhance_daily_needs_only_the_tencentcloud_connection(
    env: tuple[EmulatorServer, _Receiver], monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Without an `mps_webhook` connection `notify` is skipped (checked at run time, with a reason
    in its log) and the run succeeds. Also: the `partition` param picks the day to (re)process."""
    server, receiver = env
    monkeypatch.delenv("AIRFLOW_CONN_MPS_WEBHOOK")
    posts = _posts_during(receiver)
    dag = _dagbag().dags["mps_enhance_daily"]
    dr = dag.test(logical_date=datetime(2026, 11, 20, tzinfo=timezone.utc), run_conf={"partition": DS})

    assert _states(dr) == {
        ("wait_for_partition", -1): "success",
        ("enhance", -1): "success",
        ("publish", -1): "success",
        ("notify", -1): "skipped",
        ("watcher", -1): "skipped",
    }
    assert str(dr.state) == "success"
    assert posts == []
    # The param made this run read DS, whatever its dates (DS's images exist already or are enhanced now).
    manifest = server.cos_backend.get_object(BUCKET, f"enhanced/dt={DS}/_mps_manifest.jsonl").data
    lines = [json.loads(line) for line in manifest.decode().splitlines()]
    assert sorted(line["input"] for line in lines) == sorted(
        f"cos://{BUCKET}/raw/dt={DS}/{p.name}" for p in sample_photos(DS)
    )
    assert {line["state"] for line in lines} <= {"succeeded", "skipped"}
    assert "No connection 'mps_webhook' is defined" in capfd.readouterr().out


@pytest.mark.usefixtures("airflow_db")
def test_enhance_daily_waits_for_the_marker_and_fails_the_run_without_it(
    env: tuple[EmulatorServer, _Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Images without their _SUCCESS marker are a partition still being written: the deferred sensor
    waits, and at its timeout the run fails with nothing submitted (notify still names the day)."""
    server, receiver = env
    posts = _posts_during(receiver)
    day = "2026-11-08"
    for photo in sample_photos(day):
        server.cos_backend.put_object(BUCKET, f"raw/dt={day}/{photo.name}", photo.data, photo.content_type)
    monkeypatch.setenv("MPS_DAGS_MARKER_TIMEOUT", "2")
    before = server.stats()["tasks_created"]
    dag = _dagbag().dags["mps_enhance_daily"]
    dr = dag.test(logical_date=datetime(2026, 11, 9, tzinfo=timezone.utc))  # the run for 8 Nov

    assert _states(dr) == {
        ("wait_for_partition", -1): "failed",
        ("enhance", -1): "upstream_failed",
        ("publish", -1): "upstream_failed",
        ("notify", -1): "success",
        ("watcher", -1): "failed",
    }
    assert str(dr.state) == "failed"
    assert server.stats()["tasks_created"] == before
    assert [(p["partition"], p["summary"]) for _, p in posts] == [(day, None)]


@pytest.mark.usefixtures("airflow_db")
def test_enhance_mapped_runs_one_task_per_image(env: tuple[EmulatorServer, _Receiver]) -> None:
    server, _ = env
    dag = _dagbag().dags["mps_enhance_mapped"]
    dr = dag.test(logical_date=RUN_FOR_DS)
    states = _states(dr)
    mapped = {k: v for k, v in states.items() if k[0] == "enhance_one"}
    assert len(mapped) == len(list(sample_photos(DS)))
    assert set(mapped.values()) == {"success"}
    keys = {
        o.key for o in server.cos_backend.list_objects(BUCKET, prefix=f"enhanced-mapped/dt={DS}/").contents
    }
    assert len(keys) == len(mapped) and all(k.endswith(".webp") for k in keys)


@pytest.mark.usefixtures("airflow_db")
def test_wait_external_submits_then_sensor_waits(env: tuple[EmulatorServer, _Receiver]) -> None:
    """A manual trigger without a logical date (Airflow 3): no `ds`, the day comes from run_after."""
    server, _ = env
    dag = _dagbag().dags["mps_wait_external"]
    dr = dag.test(logical_date=None, run_after=datetime(2026, 11, 1, 12, tzinfo=timezone.utc))
    assert dr.logical_date is None
    assert _states(dr) == {("submit", -1): "success", ("wait", -1): "success"}
    out = server.cos_backend.get_object(BUCKET, f"converted/dt={DS}/landscape.png")
    assert out.data[:8] == b"\x89PNG\r\n\x1a\n"


def test_enhance_daily_reports_a_timed_out_run_to_the_webhook(
    env: tuple[EmulatorServer, _Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the scheduler fails a run at ``dagrun_timeout`` (a task waiting for a pool that does not
    exist never finishes), ``notify`` never runs; the DAG's failure callback posts instead, naming the
    day and the pool. Called here with the context the DAG processor builds (reason, run id, run);
    the scheduler's side is proven in tests/reliability/stack/test_celery_stack.py."""
    from types import SimpleNamespace

    _, receiver = env
    posts = _posts_during(receiver)
    monkeypatch.setenv("MPS_DAGS_POOL", "mps")  # the opt-in pool a deployment named but never created
    dag = _dagbag().dags["mps_enhance_daily"]
    callbacks = (
        dag.on_failure_callback if isinstance(dag.on_failure_callback, list) else [dag.on_failure_callback]
    )
    run = SimpleNamespace(
        conf={}, data_interval_start=datetime(2026, 11, 1, tzinfo=timezone.utc), run_after=RUN_FOR_DS
    )
    for callback in callbacks:
        callback({"reason": "timed_out", "run_id": "scheduled__2026-11-02T00:00:00+00:00", "dag_run": run})

    [(path, body)] = posts
    assert path == "/mps/daily"
    assert body["dag_run"] == "scheduled__2026-11-02T00:00:00+00:00"
    assert body["partition"] == DS and body["summary"] is None
    assert "MPS_DAGS_RUN_TIMEOUT (86400 s)" in body["error"] and "the pool 'mps'" in body["error"]
