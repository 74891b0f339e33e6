"""The real Airflow stack runs ``mps_enhance_daily``: api-server, scheduler, dag-processor, triggerer
(LocalExecutor, parallelism 4) plus the emulator in its own process and a webhook receiver — once on
SQLite and once on a real PostgreSQL server the test starts (issue 12, Build item 3). The DAG runs as
copied: the tencentcloud connection, no pool (issue 14 item 3; the webhook connection is there for the
assertions).

The scheduled run (``catchup=False``: one run, for the last complete day, yesterday): ``enhance`` defers,
the triggerer completes it. Then late images land in yesterday's partition and a manual run for that
partition (``--conf '{"partition": …}'``) submits only those; once ``enhance`` is deferred and held by the
triggerer, the triggerer is SIGKILLed and a new one started; the new one adopts the trigger (~32 s after
the dead one's last heartbeat), the run succeeds, and the emulator counted one submission per image.
While a batch trigger is deferred, the stored size of its ``trigger.kwargs`` row is sampled: bounded
deferral state (issue 12) means at most 32 KiB; the measured bytes are printed.

Every process is started in its own session and stopped by PID (try/finally and atexit).
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from stack_support import (
    AIRFLOW,
    BIN,
    Db,
    Postgres,
    Procs,
    Webhook,
    airflow_env,
    dags_folder,
    logs_tail,
    start_api_server,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

BUCKET = "stack-1250000000"
IMAGES = 4
DAG_ID = "mps_enhance_daily"
BATCH_TRIGGER = "airflow_mps.triggers.batch.MpsImageBatchTrigger"
#: Issue 12: trigger kwargs (and events) at most 32 KiB at any N — MySQL's TEXT holds 64 KiB.
MAX_TRIGGER_ROW_BYTES = 32 * 1024


def _ti_state(db: Db, run_id: str, task_id: str = "enhance") -> str | None:
    return db.scalar(
        "select state from task_instance where dag_id=:d and run_id=:r and task_id=:t order by try_number desc",
        d=DAG_ID, r=run_id, t=task_id,
    )  # fmt: skip


def _run_state(db: Db, run_id: str) -> str | None:
    return db.scalar("select state from dag_run where dag_id=:d and run_id=:r", d=DAG_ID, r=run_id)


def _held_triggers(db: Db) -> int:
    return int(db.scalar("select count(*) from trigger where triggerer_id is not null") or 0)


def _first_run(db: Db) -> str | None:
    return db.scalar("select run_id from dag_run where dag_id=:d order by id limit 1", d=DAG_ID)


def _runs(db: Db) -> list[tuple[str, str]]:
    return [
        (str(r), str(s)) for r, s in db.rows("select run_id, state from dag_run where dag_id=:d", d=DAG_ID)
    ]


def _all_runs_done(db: Db) -> bool:
    runs = _runs(db)
    return bool(runs) and all(state in ("success", "failed") for _, state in runs)


def _sample_trigger_rows(db: Db, sizes: list[int]) -> bool:
    """Record the stored kwargs size of every batch trigger row now; True once one was seen."""
    rows = [n for classpath, n in db.trigger_kwargs_bytes() if classpath == BATCH_TRIGGER]
    sizes.extend(rows)
    return bool(rows)


@pytest.fixture(params=["sqlite", "postgres"])
def metadata_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Procs]]:
    """(SQL_ALCHEMY_CONN, the test's process set): a SQLite file, or a PostgreSQL server started here."""
    procs = Procs()
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/airflow/airflow.db", procs
        procs.stop_all()
        return
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    pg = Postgres(procs, logs)
    try:
        pg.start()
        print(f"\nPostgreSQL {pg.version} on 127.0.0.1:{pg.port} (data in {pg.root})")
        yield pg.url, procs
    finally:
        procs.stop_all(keep=("postgres",))
        pg.stop()
        procs.stop_all()


def test_scheduler_and_triggerer_run_the_daily_dag_and_survive_a_triggerer_kill(
    tmp_path: Path, metadata_db: tuple[str, Procs]
) -> None:
    if shutil.which("airflow", path=str(BIN)) is None:
        pytest.skip("the airflow console script is not installed in this environment")
    from airflow_mps.emulator.testing import EmulatorProcess

    started = time.monotonic()
    conn_url, procs = metadata_db
    home = tmp_path / "airflow"
    home.mkdir(exist_ok=True)
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday = today - timedelta(days=1)
    Webhook.received = []
    webhook = ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
    threading.Thread(target=webhook.serve_forever, daemon=True).start()
    emulator = EmulatorProcess(tmp_path / "emulator", task_duration_ms="12000:15000")
    db = Db(conn_url)
    row_sizes: list[int] = []
    try:
        emulator.start()
        from PIL import Image

        buf = io.BytesIO()
        Image.new("RGB", (16, 16), (10, 200, 90)).save(buf, format="PNG")
        cos = emulator.cos_client()
        cos.create_bucket(Bucket=BUCKET)
        for day in (yesterday, today):
            for i in range(IMAGES):
                cos.put_object(Bucket=BUCKET, Key=f"raw/dt={day:%Y-%m-%d}/img_{i}.png", Body=buf.getvalue())
            # The day's "partition complete" marker, after its images (the DAG's wait_for_partition).
            cos.put_object(Bucket=BUCKET, Key=f"raw/dt={day:%Y-%m-%d}/_SUCCESS", Body=b"")

        env = airflow_env(
            home,
            conn_url,
            dags_folder(tmp_path / "dags", "mps_enhance_daily.py"),
            AIRFLOW__CORE__EXECUTOR="LocalExecutor",
            AIRFLOW__CORE__PARALLELISM="4",
            AIRFLOW_CONN_TENCENTCLOUD_DEFAULT=emulator.connection_uri(),
            AIRFLOW_CONN_MPS_WEBHOOK=f"http://127.0.0.1:{webhook.server_address[1]}",
            MPS_DAGS_BUCKET=BUCKET,
            MPS_DAGS_START_DATE=f"{yesterday:%Y-%m-%d}",
        )
        migrate = subprocess.run(
            [AIRFLOW, "db", "migrate"], env=env, capture_output=True, text=True, timeout=300
        )
        assert migrate.returncode == 0, migrate.stdout[-2000:] + migrate.stderr[-3000:]
        # No pool is created: the DAG as copied needs only the tencentcloud connection (MPS_DAGS_POOL is
        # opt-in; the Celery stack test runs the pooled setup).
        start_api_server(procs, env, logs)
        procs.start("scheduler", [AIRFLOW, "scheduler"], env, logs)
        procs.start("dag-processor", [AIRFLOW, "dag-processor"], env, logs)
        procs.start("triggerer", [AIRFLOW, "triggerer"], env, logs)

        # ---- run 1: the scheduled run(s) (catchup=False: one, for the last complete day)
        run1 = wait_for("the catchup run", lambda: _first_run(db), 120, procs)
        wait_for("run 1 deferred", lambda: _ti_state(db, run1) == "deferred", 120, procs)
        wait_for(
            "run 1's batch trigger row", lambda: _sample_trigger_rows(db, row_sizes), 30, procs, poll=0.2
        )
        wait_for("catchup runs finished", lambda: _all_runs_done(db), 150, procs)
        catchup = _runs(db)
        assert catchup and all(state == "success" for _, state in catchup), (catchup, logs_tail(logs))
        created_catchup = emulator.stats()["tasks_created"]

        # ---- run 2: late images land in yesterday's partition; a manual run for that partition submits
        # only those, and the triggerer is SIGKILLed mid-wait and restarted.
        for i in range(IMAGES):
            cos.put_object(
                Bucket=BUCKET, Key=f"raw/dt={yesterday:%Y-%m-%d}/late_{i}.png", Body=buf.getvalue()
            )
        run2 = f"manual_{today:%Y%m%d}_late"
        # A logical date already past (Airflow starts no run before its run_after) and unlike the
        # scheduled run's (yesterday 00:00): a minute ago is both at any hour, also just after midnight.
        manual_date = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=1)
        trig = subprocess.run(
            [AIRFLOW, "dags", "trigger", DAG_ID, "--run-id", run2, "--logical-date",
             manual_date.isoformat(), "--conf", json.dumps({"partition": f"{yesterday:%Y-%m-%d}"})],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert trig.returncode == 0, trig.stdout[-2000:] + trig.stderr[-3000:]
        wait_for("run 2 deferred", lambda: _ti_state(db, run2) == "deferred", 120, procs)
        wait_for("the trigger held by the triggerer", lambda: _held_triggers(db) > 0, 60, procs)
        _sample_trigger_rows(db, row_sizes)
        procs.kill9("triggerer")
        procs.start("triggerer-2", [AIRFLOW, "triggerer"], env, logs)
        wait_for("run 2 finished", lambda: _run_state(db, run2) in ("success", "failed"), 150, procs)
        assert _run_state(db, run2) == "success", logs_tail(logs)

        stats = emulator.stats()
        assert created_catchup == len(catchup) * IMAGES, (created_catchup, catchup)
        assert stats["tasks_created"] == created_catchup + IMAGES, stats  # run 2: only the late images
        assert not stats["duplicate_submissions"], stats["duplicate_submissions"]
        assert len(Webhook.received) == len(catchup) + 1, Webhook.received
        last = Webhook.received[-1]["summary"]
        assert last["succeeded"] == IMAGES and last["skipped"] == IMAGES, last
        print(
            f"\n[{db.dialect}] batch trigger rows while deferred: {len(row_sizes)} samples, "
            f"stored kwargs {min(row_sizes)}..{max(row_sizes)} bytes (limit {MAX_TRIGGER_ROW_BYTES}); "
            f"wall {time.monotonic() - started:.0f} s"
        )
        assert row_sizes and max(row_sizes) <= MAX_TRIGGER_ROW_BYTES, row_sizes
    finally:
        procs.stop_all(keep=("postgres",))
        emulator.stop()
        webhook.shutdown()
        db.dispose()
