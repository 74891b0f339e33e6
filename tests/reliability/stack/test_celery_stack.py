"""A real distributed deployment (issue 13, Build item 3): CeleryExecutor with Redis as the broker and
PostgreSQL as the metadata DB (both real servers started here), two Celery worker processes, scheduler,
dag-processor, triggerer and api-server run ``airflow backfill create`` over ``DAYS`` daily partitions of
``mps_enhance_daily`` with ``--max-active-runs`` ``DAYS`` against the emulator at 20 ProcessImage/s.

Asserted: every backfill run succeeds; every image is exactly one MPS task (emulator ``tasks_created``
and ``duplicate_submissions``). Printed: aggregate submission rate ÷ the 20/s limit, the number of
throttled ProcessImage calls, the peak number of runs active at once, wall time.

Needs Debian's ``redis-server`` and ``postgresql`` (``.ci/run`` installs them) and
``apache-airflow-providers-celery`` (the ``test`` extra); skipped locally without them, failed on CI.
Measured on 2 cores: ~130 s (it runs in ``make test``; ``make test-distributed`` runs the stack tests
alone).
"""

from __future__ import annotations

import importlib.util
import io
import os
import shutil
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from stack_support import (
    AIRFLOW,
    BIN,
    Db,
    Postgres,
    Procs,
    Redis,
    airflow_env,
    dags_folder,
    free_port,
    logs_tail,
    missing_service,
    start_api_server,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

BUCKET = "celery-1250000000"
DAG_ID = "mps_enhance_daily"
DAYS = 4
IMAGES_PER_DAY = int(os.environ.get("AIRFLOW_MPS_DISTRIBUTED_IMAGES", "50"))
RATE = 20  # ProcessImage/s of the emulated account
WORKERS = 2


class _Sampler:
    """Polls the emulator's counters and the metadata DB every ``interval`` s in a thread: the time the
    first and the last task was created, and the peak number of backfill runs running at once."""

    def __init__(self, emulator: Any, db: Db, expected: int, interval: float = 0.25) -> None:
        self.emulator, self.db, self.expected, self.interval = emulator, db, expected, interval
        self.first: float | None = None
        self.last: float | None = None
        self.created = 0
        self.peak_running = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                created = int(self.emulator.stats()["tasks_created"])
                running = int(
                    self.db.scalar(
                        "select count(*) from dag_run where dag_id=:d and run_type='backfill' and state='running'",
                        d=DAG_ID,
                    )
                    or 0
                )
            except Exception:  # a transient read error only costs one sample
                created, running = self.created, 0
            now = time.monotonic()
            if created and self.first is None:
                self.first = now
            if created > self.created:
                self.last = now
            self.created = created
            self.peak_running = max(self.peak_running, running)
            self._stop.wait(self.interval)

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def _backfill_runs(db: Db) -> list[tuple[str, str]]:
    rows = db.rows("select run_id, state from dag_run where dag_id=:d and run_type='backfill'", d=DAG_ID)
    return [(str(r), str(s)) for r, s in rows]


def test_celery_backfill_over_partitions_submits_every_image_once(tmp_path: Path) -> None:
    if shutil.which("airflow", path=str(BIN)) is None:
        pytest.skip("the airflow console script is not installed in this environment")
    if importlib.util.find_spec("airflow.providers.celery") is None:
        missing_service("apache-airflow-providers-celery", "the project's test extra installs it")
    from PIL import Image

    from airflow_mps.emulator.testing import EmulatorProcess

    started = time.monotonic()
    procs = Procs()
    logs = tmp_path / "logs"
    logs.mkdir()
    home = tmp_path / "airflow"
    home.mkdir()
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    first_day = today - timedelta(days=DAYS + 7)  # well before yesterday (the unpause run's partition)
    days = [first_day + timedelta(days=i) for i in range(DAYS)]
    pg = Postgres(procs, logs)
    redis = Redis(procs, logs)
    emulator = EmulatorProcess(
        tmp_path / "emulator", task_duration_ms="500:1500", process_image_rate=RATE, describe_rate=RATE
    )
    db = Db(pg.url)
    try:
        pg.start()
        redis.start()
        emulator.start()
        buf = io.BytesIO()
        Image.new("RGB", (16, 16), (200, 90, 10)).save(buf, format="PNG")
        cos = emulator.cos_client()
        cos.create_bucket(Bucket=BUCKET)
        for day in days:
            for i in range(IMAGES_PER_DAY):
                cos.put_object(
                    Bucket=BUCKET, Key=f"raw/dt={day:%Y-%m-%d}/img_{i:03d}.png", Body=buf.getvalue()
                )
            # The daily DAG's sensor waits for the writer's marker (README: the _SUCCESS convention).
            cos.put_object(Bucket=BUCKET, Key=f"raw/dt={day:%Y-%m-%d}/_SUCCESS", Body=b"")
        expected = DAYS * IMAGES_PER_DAY

        env = airflow_env(
            home,
            pg.url,
            dags_folder(tmp_path / "dags", "mps_enhance_daily.py"),
            AIRFLOW__CORE__EXECUTOR="CeleryExecutor",
            AIRFLOW__CORE__PARALLELISM="16",
            AIRFLOW__CELERY__BROKER_URL=redis.url,
            AIRFLOW__CELERY__RESULT_BACKEND="db+" + pg.url,
            AIRFLOW__CELERY__WORKER_CONCURRENCY="4",
            AIRFLOW_CONN_TENCENTCLOUD_DEFAULT=emulator.connection_uri(),
            MPS_DAGS_BUCKET=BUCKET,
            MPS_DAGS_START_DATE=f"{first_day:%Y-%m-%d}",
            MPS_DAGS_POLL_INTERVAL="2",
        )
        migrate = subprocess.run(
            [AIRFLOW, "db", "migrate"], env=env, capture_output=True, text=True, timeout=300
        )
        assert migrate.returncode == 0, migrate.stdout[-2000:] + migrate.stderr[-3000:]
        start_api_server(procs, env, logs)
        procs.start("scheduler", [AIRFLOW, "scheduler"], env, logs)
        procs.start("dag-processor", [AIRFLOW, "dag-processor"], env, logs)
        procs.start("triggerer", [AIRFLOW, "triggerer"], env, logs)
        for n in range(1, WORKERS + 1):
            # Each worker serves its task logs on its own port (two on one host would collide on 8793).
            procs.start(
                f"celery-worker-{n}",
                [
                    AIRFLOW,
                    "celery",
                    "worker",
                    "--celery-hostname",
                    f"worker{n}@localhost",
                    "--concurrency",
                    "4",
                ],
                {**env, "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())},
                logs,
            )
        wait_for(
            "the DAG parsed",
            lambda: db.scalar("select count(*) from dag where dag_id=:d", d=DAG_ID),
            120,
            procs,
        )

        with _Sampler(emulator, db, expected) as sampler:
            backfill = subprocess.run(
                [AIRFLOW, "backfill", "create", "--dag-id", DAG_ID, "--from-date", f"{days[0]:%Y-%m-%d}",
                 "--to-date", f"{days[-1]:%Y-%m-%d}", "--max-active-runs", str(DAYS)],
                env=env, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert backfill.returncode == 0, backfill.stdout[-2000:] + backfill.stderr[-3000:]
            wait_for("the backfill runs", lambda: len(_backfill_runs(db)) >= DAYS, 60, procs)
            wait_for(
                "every backfill run finished",
                lambda: all(state in ("success", "failed") for _, state in _backfill_runs(db)),
                600,
                procs,
                poll=1,
            )
        runs = _backfill_runs(db)
        assert len(runs) == DAYS and all(state == "success" for _, state in runs), (
            runs,
            logs_tail(logs, 3000),
        )
        stats = emulator.stats()
        assert stats["tasks_created"] == expected, (stats["tasks_created"], expected)
        assert not stats["duplicate_submissions"], stats["duplicate_submissions"]
        assert len(stats["submissions_by_input"]) == expected
        # Both workers ran task workloads (the deployment is really distributed).
        received = {
            n: (logs / f"celery-worker-{n}.log").read_text(errors="replace").count("execute_workload[")
            for n in range(1, WORKERS + 1)
        }
        assert all(received.values()), received
        process = stats["actions"].get("ProcessImage", {})
        span = (sampler.last or 0) - (sampler.first or 0)
        rate = expected / span if span > 0 else float("nan")
        print(
            f"\n[celery] {DAYS} partitions x {IMAGES_PER_DAY} images, {WORKERS} Celery workers, "
            f"peak {sampler.peak_running} backfill runs at once: {expected} tasks in {span:.1f} s = "
            f"{rate:.1f}/s ({rate / RATE:.2f} of the {RATE}/s limit); ProcessImage received "
            f"{process.get('received', 0)}, throttled {process.get('throttled', 0)}; workloads per worker "
            f"{received}; "
            f"wall {time.monotonic() - started:.0f} s"
        )
    finally:
        procs.stop_all(keep=("postgres", "redis"))
        emulator.stop()
        redis.stop()
        pg.stop()
        procs.stop_all()
        db.dispose()
