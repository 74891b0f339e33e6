"""Shared machinery of the real-stack tests: processes stopped by PID, a throwaway PostgreSQL or Redis
server started by the test, the metadata DB read through SQLAlchemy (SQLite and PostgreSQL alike), a
webhook receiver and Airflow's environment.

Servers come from Debian's packages (``postgresql``, ``redis-server``; ``.ci/run`` installs them when
missing, as root). PostgreSQL refuses to run as root, so when the test runs as root its data directory
is handed to the ``postgres`` system user and the server runs as that user (``Popen(user=…)``).
Everything is started in its own session and stopped by PID — never by name.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
AIRFLOW = str(BIN / "airflow")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def missing_service(what: str, hint: str) -> None:
    """Skip locally, fail on CI (``CI=true``): a green CI must never hide a missing server."""
    message = f"{what} is not installed here ({hint})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + "; .ci/run installs it as root")
    pytest.skip(message)


class Procs:
    """Processes a test started; stopped by PID (SIGTERM, then SIGKILL of their own group)."""

    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        atexit.register(self.stop_all)

    def start(
        self, name: str, argv: list[str], env: Mapping[str, str], log_dir: Path, **popen: Any
    ) -> subprocess.Popen[bytes]:
        log = open(log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            argv, env=dict(env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **popen
        )
        self.procs[name] = proc
        return proc

    def kill9(self, name: str) -> None:
        proc = self.procs.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the group led by the PID we started
        proc.wait(30)

    def stop(self, name: str, timeout: float = 20) -> None:
        """Stop one process (SIGTERM to its group, SIGKILL after ``timeout``), e.g. to restart it."""
        proc = self.procs.pop(name)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)

    def check_alive(self, what: str) -> None:
        for name, proc in self.procs.items():
            assert proc.poll() is None, f"{name} exited with {proc.returncode} while waiting for {what}"

    def stop_all(self, keep: tuple[str, ...] = ()) -> None:
        """Stop every process but those named in ``keep`` (servers the others were still talking to)."""
        stopping = {name: proc for name, proc in self.procs.items() if name not in keep}
        for proc in stopping.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in stopping.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        for name in stopping:
            del self.procs[name]


class Db:
    """Read-only queries on Airflow's metadata DB, SQLite or PostgreSQL, through SQLAlchemy.

    No pool (each query opens and closes its connection), so the test never holds a lock or a
    connection slot that the stack needs.
    """

    def __init__(self, url: str) -> None:
        import sqlalchemy
        from sqlalchemy.pool import NullPool

        args = {"timeout": 30} if url.startswith("sqlite") else {"connect_timeout": 10}
        self.dialect = url.split(":", 1)[0].split("+", 1)[0]
        self.engine = sqlalchemy.create_engine(url, poolclass=NullPool, connect_args=args)

    def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        from sqlalchemy import text

        with self.engine.connect() as con:
            return [tuple(r) for r in con.execute(text(sql), params)]

    def scalar(self, sql: str, **params: Any) -> Any:
        rows = self.rows(sql, **params)
        return rows[0][0] if rows else None

    def trigger_kwargs_bytes(self) -> list[tuple[str, int]]:
        """(classpath, stored size of ``trigger.kwargs`` in bytes) of every trigger row now."""
        size = "octet_length(kwargs)" if self.dialect == "postgresql" else "length(cast(kwargs as blob))"
        return [(str(c), int(n)) for c, n in self.rows(f"select classpath, {size} from trigger")]

    def dispose(self) -> None:
        self.engine.dispose()


def wait_for(what: str, check: Callable[[], Any], timeout: float, procs: Procs, poll: float = 0.5) -> Any:
    """Poll ``check`` until truthy; fails if a started process died or ``timeout`` passed."""
    from sqlalchemy.exc import OperationalError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs.check_alive(what)
        with contextlib.suppress(OperationalError):  # SQLite "database is locked" and the like
            value = check()
            if value:
                return value
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")


class Webhook(BaseHTTPRequestHandler):
    """Collects the JSON bodies POSTed by the DAG's ``notify`` task (reset ``received`` per test)."""

    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with contextlib.suppress(ValueError):
            Webhook.received.append(json.loads(body))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


def logs_tail(logs: Path, chars: int = 1500) -> str:
    return "\n".join(
        f"== {p.name}\n{p.read_text(errors='replace')[-chars:]}" for p in sorted(logs.glob("*.log"))
    )


# ---------------------------------------------------------------------------------------------- PostgreSQL


def _pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parts[4]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("postgres")
    return Path(on_path).parent if on_path else None


class Postgres:
    """A throwaway PostgreSQL server on 127.0.0.1:<free port> with one database, ``airflow``.

    ``fsync``/``synchronous_commit`` are off (a test DB: durability across a power cut is not the
    point), ``max_connections`` covers api-server + scheduler + dag-processor + triggerer + workers.
    """

    def __init__(self, procs: Procs, log_dir: Path) -> None:
        bindir = _pg_bindir()
        if bindir is None:
            missing_service("PostgreSQL", "Debian: apt-get install postgresql")
        self.bindir: Path = bindir  # type: ignore[assignment]  # missing_service does not return
        self.procs = procs
        self.log_dir = log_dir
        self.port = free_port()
        self.url = f"postgresql+psycopg2://airflow@127.0.0.1:{self.port}/airflow"
        # Not under pytest's tmp_path: its parents are private to root, the server runs as `postgres`.
        self.root = Path(tempfile.mkdtemp(prefix="airflow-mps-pg-"))
        self.as_user: dict[str, Any] = {}
        if os.geteuid() == 0:  # postgres refuses to run as root: use the package's system user
            import pwd

            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                missing_service("The postgres system user", "Debian's postgresql package creates it")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            self.as_user = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}

    def start(self, timeout: float = 60) -> Postgres:
        data = self.root / "data"
        env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", "HOME": str(self.root)}
        init = subprocess.run(
            [str(self.bindir / "initdb"), "-D", str(data), "-U", "airflow", "-A", "trust", "-E", "UTF8",
             "--locale=C", "--no-sync", "--no-instructions"],
            env=env, cwd=self.root, capture_output=True, text=True, timeout=120, **self.as_user,
        )  # fmt: skip
        assert init.returncode == 0, init.stdout[-2000:] + init.stderr[-2000:]
        self.procs.start(
            "postgres",
            [str(self.bindir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(self.port),
             "-k", str(self.root), "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "max_connections=200", "-c", "shared_buffers=32MB"],
            env, self.log_dir, cwd=self.root, **self.as_user,
        )  # fmt: skip
        import psycopg2

        deadline = time.monotonic() + timeout
        while True:
            self.procs.check_alive("postgres to accept connections")
            try:
                con = psycopg2.connect(host="127.0.0.1", port=self.port, user="airflow", dbname="postgres")
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        try:
            con.autocommit = True
            with con.cursor() as cur:
                cur.execute("create database airflow")
                cur.execute("show server_version")
                self.version = str(cur.fetchone()[0])  # type: ignore[index]
        finally:
            con.close()
        return self

    def stop(self) -> None:
        """Fast shutdown (SIGINT to the postmaster we started), then remove its directory."""
        proc = self.procs.procs.pop("postgres", None)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- Redis


class Redis:
    """A throwaway ``redis-server`` on 127.0.0.1:<free port>, no persistence (Celery's broker)."""

    def __init__(self, procs: Procs, log_dir: Path) -> None:
        server = shutil.which("redis-server") or (
            "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
        )
        if server is None:
            missing_service("redis-server", "Debian: apt-get install redis-server")
        self.server = str(server)
        self.procs = procs
        self.log_dir = log_dir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30) -> Redis:
        self.procs.start(
            "redis",
            [self.server, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--protected-mode", "yes", "--dir", str(self.log_dir)],
            {"PATH": os.environ.get("PATH", "")}, self.log_dir,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            self.procs.check_alive("redis to answer PING")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=2) as s,
            ):
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return self
            if time.monotonic() > deadline:
                raise AssertionError("redis-server did not answer PING")
            time.sleep(0.1)

    def stop(self) -> None:
        proc = self.procs.procs.pop("redis", None)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


# ---------------------------------------------------------------------------------------------- Airflow


def dags_folder(where: Path, *dag_files: str) -> Path:
    """A DAGs folder holding only ``dag_files`` (symlinks to the repo's ``dags/``): the other example
    DAGs read the same bucket and, unpaused, would submit the same images (and cost parse time)."""
    where.mkdir(parents=True, exist_ok=True)
    for name in dag_files:
        (where / name).symlink_to(REPO / "dags" / name)
    return where


def airflow_env(home: Path, sql_alchemy_conn: str, dags: Path, **extra: str) -> dict[str, str]:
    """The environment every Airflow process of a stack test gets (nothing inherited from AIRFLOW*)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home),
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=sql_alchemy_conn,
        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
        AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME="0.5",
        # Log servers on free ports, not 8793/8794: another stack on this host must not collide.
        AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
        AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(free_port()),
    )
    env.update(extra)
    return env


def start_api_server(procs: Procs, env: dict[str, str], logs: Path) -> int:
    """Start ``airflow api-server`` on a free port and point the execution API URL at it (in ``env``)."""
    port = free_port()
    env["AIRFLOW__API__BASE_URL"] = f"http://127.0.0.1:{port}"
    env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"http://127.0.0.1:{port}/execution/"
    procs.start("api-server", [AIRFLOW, "api-server", "--port", str(port)], env, logs)
    return port
