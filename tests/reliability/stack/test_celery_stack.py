"""A real distributed deployment (issue 13, Build items 2 and 3): CeleryExecutor with Redis as the broker
and PostgreSQL as the metadata DB (both real servers started here), two Celery worker processes,
scheduler, dag-processor, triggerer and api-server run ``mps_enhance_daily`` against the emulator at 20
ProcessImage/s, in two phases:

1. **The pool does not exist yet** (a fresh deployment told ``MPS_DAGS_POOL=mps``, the documented
   setting for one account's submitters). A
   manual run's ``enhance`` stays ``scheduled`` — Airflow queues no task of a missing pool; only the
   scheduler's log and ``airflow tasks failed-deps`` say why — until the DAG's ``dagrun_timeout``
   (``MPS_DAGS_RUN_TIMEOUT``, short for this phase: the DAG processor runs with it) fails the run; the
   DAG's failure callback posts that to the webhook, naming the pool. Nothing was submitted.
2. **The pool exists** (``airflow pools set mps 1 …``, without ``--include-deferred``; the DAG processor
   restarted with the default timeout): ``airflow backfill create`` over ``DAYS`` daily partitions with
   ``--max-active-runs`` ``DAYS``. A sampler reads the metadata DB and the emulator's counters every
   0.25 s and the test asserts what the pool promises: at no sample more than one task of the pool is
   queued or running, at no sample more than one partition is part-way through its submission (so no
   two batches' submissions overlap), and some batch was deferred (waiting on MPS in the triggerer)
   while another one ran — a deferred batch holds no slot. Every run succeeds and every image is
   exactly one MPS task (emulator ``tasks_created`` and ``duplicate_submissions``); each run's summary
   reaches the webhook.

Printed: each run's submission window and in-window rate, the hand-off gaps between windows, the
aggregate rate (first to last submission) ÷ the 20/s limit, throttled ProcessImage answers, the peak
number of runs active at once, the time the missing-pool run took to fail, wall time.

Needs Debian's ``redis-server`` and ``postgresql`` (``.ci/run`` installs them) and
``apache-airflow-providers-celery`` (the ``test`` extra); skipped locally without them, failed on CI.
It runs in ``make test``; ``make test-distributed`` runs the stack tests alone.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import ThreadingHTTPServer
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
    Webhook,
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
POOL = "mps"  # the documented MPS_DAGS_POOL (opt-in; unset, the DAG uses default_pool)
#: Phase 1's dagrun_timeout (s): long enough for the run's sensor to finish on a cold Celery worker.
MISSING_POOL_TIMEOUT = 30
SUBMITTING = ("queued", "running")  # the states a pool without include_deferred counts


@dataclass
class _Sample:
    at: float
    occupied: int  # tasks of the pool queued or running
    states: dict[str, str]  # partition day -> state of its backfill run's `enhance`
    submitted: dict[str, int]  # partition day -> images submitted so far


@dataclass
class _Sampler:
    """Samples the pool's occupancy, each backfill run's ``enhance`` state and the emulator's
    per-partition submission counts every ``interval`` s, in a thread."""

    emulator: Any
    db: Db
    interval: float = 0.25
    samples: list[_Sample] = field(default_factory=list)
    peak_running: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def _sample(self) -> _Sample:
        submitted: dict[str, int] = {}
        for key, n in self.emulator.stats()["submissions_by_input"].items():
            day = key.split("/dt=", 1)[1].split("/", 1)[0]
            submitted[day] = submitted.get(day, 0) + int(n)
        rows = self.db.rows(
            "select dr.data_interval_start, ti.state from task_instance ti join dag_run dr"
            " on ti.dag_id = dr.dag_id and ti.run_id = dr.run_id"
            " where ti.dag_id = :d and ti.task_id = 'enhance' and dr.run_type = 'backfill'",
            d=DAG_ID,
        )
        occupied = self.db.scalar(
            "select count(*) from task_instance where pool = :p and state in ('queued', 'running')", p=POOL
        )
        running = self.db.scalar(
            "select count(*) from dag_run where dag_id = :d and run_type = 'backfill' and state = 'running'",
            d=DAG_ID,
        )
        self.peak_running = max(self.peak_running, int(running or 0))
        return _Sample(
            at=time.monotonic(),
            occupied=int(occupied or 0),
            states={f"{start:%Y-%m-%d}": str(state) for start, state in rows},
            submitted=submitted,
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            with suppress(Exception):  # a transient read error only costs one sample
                self.samples.append(self._sample())
            self._stop.wait(self.interval)

    @contextmanager
    def running(self) -> Iterator[_Sampler]:
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(5)


def _windows(samples: list[_Sample], days: list[str], per_day: int) -> dict[str, tuple[float, float]]:
    """Each partition's submission window: the first sample with a submission, the first sample with
    all of them (sample times; one sample interval of resolution)."""
    windows = {}
    for day in days:
        started = [s.at for s in samples if s.submitted.get(day, 0) > 0]
        done = [s.at for s in samples if s.submitted.get(day, 0) >= per_day]
        assert started and done, (day, samples[-1].submitted if samples else None)
        windows[day] = (started[0], done[0])
    return windows


def _backfill_runs(db: Db) -> list[tuple[str, str]]:
    rows = db.rows("select run_id, state from dag_run where dag_id=:d and run_type='backfill'", d=DAG_ID)
    return [(str(r), str(s)) for r, s in rows]


def _run_state(db: Db, run_id: str) -> str | None:
    return db.scalar("select state from dag_run where dag_id=:d and run_id=:r", d=DAG_ID, r=run_id)


def _ti(db: Db, run_id: str, task_id: str) -> tuple[str | None, Any]:
    """(state, start_date) of one task instance."""
    rows = db.rows(
        "select state, start_date from task_instance where dag_id=:d and run_id=:r and task_id=:t",
        d=DAG_ID, r=run_id, t=task_id,
    )  # fmt: skip
    return (str(rows[0][0]) if rows[0][0] else None, rows[0][1]) if rows else (None, None)


def _airflow(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    done = subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-3000:])
    return done.stdout


def _missing_pool_run_fails_loudly(
    env: dict[str, str], db: Db, procs: Procs, logs: Path, emulator: Any, day: datetime
) -> float:
    """Phase 1 (module docstring); returns the seconds from the trigger to the failed run."""
    run_id = "manual_missing_pool"
    started = time.monotonic()
    _airflow(
        env, "dags", "trigger", DAG_ID, "--run-id", run_id, "--logical-date",
        (datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=1)).isoformat(),
        "--conf", json.dumps({"partition": f"{day:%Y-%m-%d}"}),
    )  # fmt: skip
    # Silent first: the marker is found, then `enhance` waits in `scheduled` for a pool that is not there.
    wait_for(
        "enhance scheduled",
        lambda: _ti(db, run_id, "enhance")[0] == "scheduled",
        3 * MISSING_POOL_TIMEOUT,
        procs,
    )
    assert _run_state(db, run_id) == "running"
    wait_for(
        "the run failed at its dagrun_timeout",
        lambda: _run_state(db, run_id) == "failed",
        3 * MISSING_POOL_TIMEOUT,
        procs,
    )
    elapsed = time.monotonic() - started
    # What a user asking why the task never ran is told (the pool dependency, evaluated by the CLI).
    deps = subprocess.Popen(
        [AIRFLOW, "tasks", "failed-deps", DAG_ID, "enhance", run_id],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    state, start_date = _ti(db, run_id, "enhance")
    assert (state, start_date) == ("skipped", None), (state, start_date)  # it never ran
    assert _ti(db, run_id, "wait_for_partition")[0] == "success"
    scheduler_log = (logs / "scheduler.log").read_text(errors="replace")
    assert f"Tasks using non-existent pool '{POOL}' will not be scheduled" in scheduler_log
    # Loud: the DAG's failure callback (in the DAG processor) tells the webhook, naming the pool.
    posts = wait_for(
        "the timed-out run's webhook post",
        lambda: [p for p in Webhook.received if p.get("dag_run") == run_id],
        60,
        procs,
    )
    assert posts[0]["summary"] is None and posts[0]["partition"] == f"{day:%Y-%m-%d}", posts
    assert f"the pool '{POOL}'" in posts[0]["error"], posts
    assert emulator.stats()["tasks_created"] == 0
    out, _ = deps.communicate(timeout=120)
    assert f"Pool Slots Available: Tasks using non-existent pool '{POOL}' will not be scheduled" in out, out
    return elapsed


def _assert_one_submitter_at_a_time(samples: list[_Sample], days: list[str]) -> None:
    """The pool's promise, sample by sample (module docstring, phase 2)."""
    assert samples, "no samples"
    assert max(s.occupied for s in samples) <= 1, [s for s in samples if s.occupied > 1][:3]
    partial = [
        (round(s.at, 2), {d: n for d, n in s.submitted.items() if d in days and 0 < n < IMAGES_PER_DAY})
        for s in samples
    ]
    overlapping = [(at, p) for at, p in partial if len(p) > 1]
    assert not overlapping, overlapping[:3]
    # A deferred batch holds no slot: one batch was deferred while another ran.
    assert any("deferred" in s.states.values() and "running" in s.states.values() for s in samples), (
        "no sample saw a deferred batch while another one ran"
    )


def test_celery_backfill_submits_one_batch_at_a_time_through_the_pool(tmp_path: Path) -> None:
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
    day_names = [f"{d:%Y-%m-%d}" for d in days]
    no_pool_day = first_day - timedelta(days=1)  # phase 1's partition: a marker, no images
    pg = Postgres(procs, logs)
    redis = Redis(procs, logs)
    # Tasks take 5-7 s on MPS, so a batch is still deferred when the next one starts submitting; enough
    # emulator workers that none waits for one (20/s x 7 s in flight at most).
    emulator = EmulatorProcess(
        tmp_path / "emulator",
        task_duration_ms="5000:7000",
        workers=RATE * 7,
        process_image_rate=RATE,
        describe_rate=RATE,
    )
    Webhook.received = []
    webhook = ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
    threading.Thread(target=webhook.serve_forever, daemon=True).start()
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
        cos.put_object(Bucket=BUCKET, Key=f"raw/dt={no_pool_day:%Y-%m-%d}/_SUCCESS", Body=b"")
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
            AIRFLOW_CONN_MPS_WEBHOOK=f"http://127.0.0.1:{webhook.server_address[1]}",
            MPS_DAGS_BUCKET=BUCKET,
            MPS_DAGS_START_DATE=f"{first_day:%Y-%m-%d}",
            MPS_DAGS_POLL_INTERVAL="2",
            MPS_DAGS_POOL=POOL,
        )
        _airflow(env, "db", "migrate", timeout=300)
        start_api_server(procs, env, logs)
        procs.start("scheduler", [AIRFLOW, "scheduler"], env, logs)
        # Phase 1's DAG processor serialises the DAG with a short dagrun_timeout (and runs its callback).
        procs.start(
            "dag-processor",
            [AIRFLOW, "dag-processor"],
            {**env, "MPS_DAGS_RUN_TIMEOUT": str(MISSING_POOL_TIMEOUT)},
            logs,
        )
        procs.start("triggerer", [AIRFLOW, "triggerer"], env, logs)
        for n in range(1, WORKERS + 1):
            # Each worker serves its task logs on its own port (two on one host would collide on 8793).
            procs.start(
                f"celery-worker-{n}",
                [AIRFLOW, "celery", "worker", "--celery-hostname", f"worker{n}@localhost", "--concurrency", "4"],
                {**env, "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())},
                logs,
            )  # fmt: skip
        wait_for(
            "the DAG parsed",
            lambda: db.scalar("select count(*) from dag where dag_id=:d", d=DAG_ID),
            120,
            procs,
        )

        # ---- phase 1: the pool does not exist
        to_fail = _missing_pool_run_fails_loudly(env, db, procs, logs, emulator, no_pool_day)

        # ---- phase 2: the documented setup, then the backfill
        _airflow(env, "pools", "set", POOL, "1", "MPS ProcessImage submitters (one account)")
        assert db.rows("select slots, include_deferred from slot_pool where pool=:p", p=POOL) == [(1, False)]
        versions = int(db.scalar("select count(*) from dag_version where dag_id=:d", d=DAG_ID))
        procs.stop("dag-processor")
        procs.start("dag-processor-2", [AIRFLOW, "dag-processor"], env, logs)
        wait_for(
            "the DAG re-serialised with the default dagrun_timeout",
            lambda: int(db.scalar("select count(*) from dag_version where dag_id=:d", d=DAG_ID)) > versions,
            120,
            procs,
        )
        sampler = _Sampler(emulator, db)
        with sampler.running():
            _airflow(
                env, "backfill", "create", "--dag-id", DAG_ID, "--from-date", day_names[0],
                "--to-date", day_names[-1], "--max-active-runs", str(DAYS),
            )  # fmt: skip
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
        _assert_one_submitter_at_a_time(sampler.samples, day_names)
        summaries = {p["partition"]: p["summary"] for p in Webhook.received if p.get("summary")}
        assert {d: summaries.get(d, {}).get("succeeded") for d in day_names} == dict.fromkeys(
            day_names, IMAGES_PER_DAY
        ), Webhook.received
        # Both workers ran task workloads (the deployment is really distributed).
        received = {
            n: (logs / f"celery-worker-{n}.log").read_text(errors="replace").count("execute_workload[")
            for n in range(1, WORKERS + 1)
        }
        assert all(received.values()), received

        # Every backfill run's batch said in its task log how the account was paced while it submitted
        # (a run's logical date is the day after its partition's).
        said: dict[str, list[str]] = {}
        for path in sorted((home / "logs").rglob("task_id=enhance/attempt=*.log")):
            run = path.parent.parent.name
            if run.startswith("run_id=backfill__") and ".trigger." not in path.name:
                said.setdefault(run, []).extend(
                    re.findall(r"ProcessImage pacing: [^\"\n]*", path.read_text(errors="replace"))
                )
        assert len(said) == DAYS and all(said.values()), (said, logs_tail(logs, 2000))
        pacing = [f"{run[len('run_id=') :]}: {line}" for run, lines in said.items() for line in lines]

        windows = _windows(sampler.samples, day_names, IMAGES_PER_DAY)
        ordered = sorted(windows.items(), key=lambda kv: kv[1][0])
        first, last = ordered[0][1][0], max(end for _, end in windows.values())
        rate = expected / (last - first) if last > first else float("nan")
        gaps = [ordered[i + 1][1][0] - ordered[i][1][1] for i in range(len(ordered) - 1)]
        process = stats["actions"].get("ProcessImage", {})
        print(
            f"\n[celery, pool {POOL!r} of 1] missing pool: the run failed {to_fail:.0f} s after its "
            f"trigger (dagrun_timeout {MISSING_POOL_TIMEOUT} s), webhook told, nothing submitted.\n"
            f"[celery, pool {POOL!r} of 1] {DAYS} partitions x {IMAGES_PER_DAY} images, {WORKERS} Celery "
            f"workers, peak {sampler.peak_running} backfill runs at once: {expected} tasks in "
            f"{last - first:.1f} s = {rate:.1f}/s ({rate / RATE:.2f} of the {RATE}/s limit); ProcessImage "
            f"received {process.get('received', 0)}, throttled {process.get('throttled', 0)}; "
            f"max pool occupancy {max(s.occupied for s in sampler.samples)}; submission windows "
            + ", ".join(
                f"{day} +{start - first:.1f}..{end - first:.1f} s ({IMAGES_PER_DAY / max(end - start, 1e-9):.1f}/s)"
                for day, (start, end) in ordered
            )
            + f"; hand-off gaps {', '.join(f'{g:.1f}' for g in gaps)} s; workloads per worker {received}; "
            f"wall {time.monotonic() - started:.0f} s\n"
            + "\n".join(f"[celery, pool {POOL!r} of 1] {line}" for line in pacing)
        )
    finally:
        procs.stop_all(keep=("postgres", "redis"))
        emulator.stop()
        webhook.shutdown()
        redis.stop()
        pg.stop()
        procs.stop_all()
        db.dispose()
