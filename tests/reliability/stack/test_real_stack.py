"""The real Airflow stack runs ``mps_enhance_daily``: api-server, scheduler, dag-processor, triggerer
(LocalExecutor, SQLite, parallelism 4) plus the emulator in its own process and a webhook receiver.

The scheduled run (``catchup=False``: one run, for the last complete day, yesterday): ``enhance`` defers,
the triggerer completes it. Then late images land in yesterday's partition and a manual run for that
partition (``--conf '{"partition": …}'``) submits only those; once ``enhance`` is deferred and held by the
triggerer, the triggerer is SIGKILLed and a new one started; the new one adopts the trigger (~32 s after
the dead one's last heartbeat), the run succeeds, and the emulator counted one submission per image.

Every process is started in its own session and stopped by PID (try/finally and atexit).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
BUCKET = "stack-1250000000"
IMAGES = 4
DAG_ID = "mps_enhance_daily"


class _Procs:
    """Processes this test started; stopped by PID (SIGTERM, then SIGKILL of their own group)."""

    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        atexit.register(self.stop_all)

    def start(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> subprocess.Popen[bytes]:
        log = open(log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        return proc

    def kill9(self, name: str) -> None:
        proc = self.procs.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the group led by the PID we started
        proc.wait(30)

    def stop_all(self) -> None:
        for proc in list(self.procs.values()):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        self.procs.clear()


class _Webhook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with contextlib.suppress(ValueError):
            _Webhook.received.append(json.loads(body))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


def _ti_state(db: Path, run_id: str, task_id: str = "enhance") -> str | None:
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as con:
        row = con.execute(
            "select state from task_instance where dag_id=? and run_id=? and task_id=? order by try_number desc",
            (DAG_ID, run_id, task_id),
        ).fetchone()
    return row[0] if row else None


def _run_state(db: Path, run_id: str) -> str | None:
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as con:
        row = con.execute("select state from dag_run where dag_id=? and run_id=?", (DAG_ID, run_id)).fetchone()
    return row[0] if row else None


def _held_triggers(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as con:
        return int(con.execute("select count(*) from trigger where triggerer_id is not null").fetchone()[0])


def _wait(what: str, check: Any, timeout: float, procs: _Procs, poll: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc in procs.procs.items():
            assert proc.poll() is None, f"{name} exited with {proc.returncode} while waiting for {what}"
        with contextlib.suppress(sqlite3.OperationalError):
            value = check()
            if value:
                return value
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")


def test_scheduler_and_triggerer_run_the_daily_dag_and_survive_a_triggerer_kill(tmp_path: Path) -> None:
    if shutil.which("airflow", path=str(BIN)) is None:
        pytest.skip("the airflow console script is not installed in this environment")
    from airflow_mps.emulator.testing import EmulatorProcess

    procs = _Procs()
    home = tmp_path / "airflow"
    home.mkdir()
    logs = tmp_path / "logs"
    logs.mkdir()
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday = today - timedelta(days=1)
    webhook = ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    threading.Thread(target=webhook.serve_forever, daemon=True).start()
    emulator = EmulatorProcess(tmp_path / "emulator", task_duration_ms="12000:15000")
    try:
        emulator.start()
        import io

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

        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(
            AIRFLOW_HOME=str(home),
            PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
            AIRFLOW__CORE__EXECUTOR="LocalExecutor",
            AIRFLOW__CORE__PARALLELISM="4",
            AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
            AIRFLOW__API__PORT="0",
            AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
            AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME="0.5",
            AIRFLOW_CONN_TENCENTCLOUD_DEFAULT=emulator.connection_uri(),
            AIRFLOW_CONN_MPS_WEBHOOK=f"http://127.0.0.1:{webhook.server_address[1]}",
            MPS_DAGS_BUCKET=BUCKET,
            MPS_DAGS_START_DATE=f"{yesterday:%Y-%m-%d}",
        )
        subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True, timeout=120)
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            api_port = s.getsockname()[1]
        env["AIRFLOW__API__BASE_URL"] = f"http://127.0.0.1:{api_port}"
        env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"http://127.0.0.1:{api_port}/execution/"
        airflow = str(BIN / "airflow")
        procs.start("api-server", [airflow, "api-server", "--port", str(api_port)], env, logs)
        procs.start("scheduler", [airflow, "scheduler"], env, logs)
        procs.start("dag-processor", [airflow, "dag-processor"], env, logs)
        procs.start("triggerer", [airflow, "triggerer"], env, logs)
        db = home / "airflow.db"

        # ---- run 1: the scheduled run(s) (catchup=False: one, for the last complete day)
        run1 = _wait("the catchup run", lambda: _first_run(db), 120, procs)
        _wait("run 1 deferred", lambda: _ti_state(db, run1) == "deferred", 120, procs)
        _wait("catchup runs finished", lambda: _all_runs_done(db), 150, procs)
        catchup = _runs(db)
        assert catchup and all(state == "success" for _, state in catchup), (catchup, _logs_tail(logs))
        created_catchup = emulator.stats()["tasks_created"]

        # ---- run 2: late images land in yesterday's partition; a manual run for that partition submits
        # only those, and the triggerer is SIGKILLed mid-wait and restarted.
        for i in range(IMAGES):
            cos.put_object(Bucket=BUCKET, Key=f"raw/dt={yesterday:%Y-%m-%d}/late_{i}.png", Body=buf.getvalue())
        run2 = f"manual_{today:%Y%m%d}_late"
        trig = subprocess.run(
            [airflow, "dags", "trigger", DAG_ID, "--run-id", run2, "--logical-date",
             (today + timedelta(hours=1)).isoformat(), "--conf", json.dumps({"partition": f"{yesterday:%Y-%m-%d}"})],
            env=env, capture_output=True, text=True, timeout=120,
        )
        assert trig.returncode == 0, trig.stdout[-2000:] + trig.stderr[-3000:]
        _wait("run 2 deferred", lambda: _ti_state(db, run2) == "deferred", 120, procs)
        _wait("the trigger held by the triggerer", lambda: _held_triggers(db) > 0, 60, procs)
        procs.kill9("triggerer")
        procs.start("triggerer-2", [airflow, "triggerer"], env, logs)
        _wait("run 2 finished", lambda: _run_state(db, run2) in ("success", "failed"), 150, procs)
        assert _run_state(db, run2) == "success", _logs_tail(logs)

        stats = emulator.stats()
        assert created_catchup == len(catchup) * IMAGES, (created_catchup, catchup)
        assert stats["tasks_created"] == created_catchup + IMAGES, stats  # run 2: only the late images
        assert not stats["duplicate_submissions"], stats["duplicate_submissions"]
        assert len(_Webhook.received) == len(catchup) + 1, _Webhook.received
        last = _Webhook.received[-1]["summary"]
        assert last["succeeded"] == IMAGES and last["skipped"] == IMAGES, last
    finally:
        procs.stop_all()
        emulator.stop()
        webhook.shutdown()


def _first_run(db: Path) -> str | None:
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as con:
        row = con.execute("select run_id from dag_run where dag_id=? order by id limit 1", (DAG_ID,)).fetchone()
    return row[0] if row else None


def _runs(db: Path) -> list[tuple[str, str]]:
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as con:
        return [tuple(r) for r in con.execute("select run_id, state from dag_run where dag_id=?", (DAG_ID,))]


def _all_runs_done(db: Path) -> bool:
    runs = _runs(db)
    return bool(runs) and all(state in ("success", "failed") for _, state in runs)


def _logs_tail(logs: Path) -> str:
    return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in sorted(logs.glob("*.log")))
