"""Machinery of the SIGKILL trials (``test_sigkill_trials.py``): a fork server, a kill switch, and the
checks that no image was lost or paid for twice.

Why a fork server. A trial kills a worker with a real SIGKILL and runs the retry in a fresh process;
paying a Python + Airflow + SDK import (~1.5 s) for each of ~90 processes would cost minutes on CI's
2 cores. So one *fork server* (this file run as a script) imports everything once, then ``os.fork()``s
each worker: the child starts in milliseconds with the operator, the hook and the SDKs already
imported, builds its operator and context from a JSON job, waits for "go", runs, writes its result and
``os._exit``s. The fork server is single-threaded (it never makes a client, a hook or a pool), so
forking it is safe; it reports ``threading.active_count()`` when ready and the test checks it is 1.

How a worker is killed (always ``SIGKILL``, never a Python exception):

* from the test process, at an exact emulator event — :class:`KillSwitch` wraps the in-thread
  emulator's counters, so the kill is sent *inside* the emulator's handler, at the k-th
  ``ProcessImage`` received (the request in flight), the k-th task created (its answer not yet sent),
  the k-th COS listing, the k-th ``PutObject`` received or stored (state and manifest writes), the
  k-th ``Describe*`` call, the k-th task finished — or a delay after such an event (or after "go");
* by the worker itself, at the k-th write of its durable ``task_state_store`` (:class:`FileStore`):
  before the write, torn (the temporary file written and fsync'ed, not yet renamed into place), or
  after it.

Protocol between the test and the fork server: one JSON object per line, each command answered by
one line — ``spawn`` (fork a worker that waits; → its pid), ``go`` (let it run), ``wait`` (block until
it exits, without reaping it: a pid the kill switch may still name is never reused), ``reap``,
``exit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

#: The ImageTask of every trial (JPEG output: ``img_03.png`` → ``img_03.jpg``).
IMAGE_TASK = {"EncodeConfig": {"Format": "JPEG", "Quality": 80}}


# ==================================================================================== worker side
class FileStore:
    """``task_state_store`` with the durability of Airflow 3.3's: every ``set()`` is fsync'ed and renamed
    into place (the same get/set contract as ``tests/reliability/test_fault_matrix.py``'s store).

    ``kill_at = {"k": n, "phase": "before" | "torn" | "after"}`` SIGKILLs this process at the n-th
    ``set()``: before writing anything, after the temporary file is written but before it replaces the
    store (a torn write: the store keeps its previous content), or after the new content is in place.
    """

    def __init__(self, path: str, kill_at: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.kill_at = kill_at
        self.sets = 0
        self._lock = threading.Lock()

    def _load(self) -> dict[str, Any]:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            return self._load().get(key, default)

    def set(self, key: str, value: Any) -> None:
        with self._lock:
            self.sets += 1
            phase = self.kill_at["phase"] if self.kill_at and self.kill_at["k"] == self.sets else None
            if phase == "before":
                _die()
            data = self._load()
            data[key] = json.loads(json.dumps(value))  # what Airflow's store keeps: JSON
            tmp = self.path.with_suffix(".tmp")
            with open(tmp, "w") as fh:
                json.dump(data, fh)
                fh.flush()
                os.fsync(fh.fileno())
            if phase == "torn":
                _die()
            os.replace(tmp, self.path)
            if phase == "after":
                _die()

    def delete(self, key: str) -> None:
        with self._lock:
            data = self._load()
            data.pop(key, None)
            self.path.write_text(json.dumps(data))


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)  # never reached: SIGKILL cannot be caught


def _context(job: dict[str, Any]) -> dict[str, Any]:
    """What Airflow passes ``execute``: the try, the DAG run's start and (Airflow >= 3.3) the store."""
    ti = SimpleNamespace(
        try_number=job["try_number"],
        xcom_push=lambda *args, **kwargs: None,
        start_date=None,
        stats_tags={},
    )
    ctx: dict[str, Any] = {
        "ti": ti,
        "dag_run": SimpleNamespace(start_date=datetime.fromtimestamp(job["run_start"], timezone.utc)),
    }
    if job.get("store"):
        ctx["task_state_store"] = FileStore(job["store"], job.get("store_kill"))
    return ctx


async def _first_event(trigger: Any) -> Any:
    async for event in trigger.run():
        return event
    raise AssertionError("the trigger yielded nothing")


def _drive(op: Any, ctx: dict[str, Any]) -> Any:
    """``execute``; when it defers, the trigger rebuilt from ``serialize()`` (as a triggerer does) and
    the method it names, all in this worker: a kill anywhere in that chain is one kill point."""
    from airflow.providers.common.compat.sdk import TaskDeferred

    try:
        return op.execute(ctx)
    except TaskDeferred as deferred:
        trigger = type(deferred.trigger)(**deferred.trigger.serialize()[1])
        event = asyncio.run(_first_event(trigger))
        return getattr(op, deferred.method_name)(ctx, event.payload)


def _batch_job(job: dict[str, Any]) -> Any:
    from airflow_mps.operators.batch import MpsBatchProcessImageOperator

    op = MpsBatchProcessImageOperator(
        task_id="batch",
        source=job["source"],
        destination=job["destination"],
        image_task=IMAGE_TASK,
        deferrable=job["deferrable"],
        poll_interval=job["poll_interval"],
        submit_concurrency=4,
    )
    if "patience" in job:  # the hook's reconcile_deadline_seconds (60 s by default), the retry's patience
        op.hook.reconcile_deadline_seconds = job["patience"]
    return _drive(op, _context(job))


def _single_job(job: dict[str, Any]) -> Any:
    from airflow_mps.operators.mps import MpsProcessImageOperator

    op = MpsProcessImageOperator(
        task_id="one",
        input=job["input"],
        image_task=IMAGE_TASK,
        deferrable=job["deferrable"],
        poll_interval=job["poll_interval"],
    )
    # How long a retry keeps looking for an unrecorded submission's task, and its first wait (the hook's
    # documented reconcile_deadline_seconds and reconcile_settle_seconds, 60 s and 1 s by default;
    # shorter here so a trial costs seconds).
    op.hook.reconcile_deadline_seconds = job["patience"]
    op.hook.reconcile_settle_seconds = job["settle"]
    return _drive(op, _context(job))


JOBS: dict[str, Callable[[dict[str, Any]], Any]] = {"batch": _batch_job, "single": _single_job}


def _child(job: dict[str, Any], go_fd: int, protocol_fd: int) -> None:
    """The forked worker: its output to its own log, wait for "go", run the job, ``os._exit``."""
    code = 1
    try:
        os.close(protocol_fd)
        log = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.read(go_fd, 1)
        os.environ["AIRFLOW_CONN_TENCENTCLOUD_DEFAULT"] = job["conn"]
        outcome: dict[str, Any] = {"result": JOBS[job["kind"]](job)}
        code = 0
    except BaseException as exc:
        traceback.print_exc()
        outcome = {"error": f"{type(exc).__name__}: {exc}"}
    try:
        tmp = job["result"] + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(outcome, fh, default=str)
        os.replace(tmp, job["result"])
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def _preload() -> None:
    """Import what a worker uses, so a forked worker pays no import (nothing here starts a thread)."""
    import airflow.providers.common.compat.sdk  # noqa: F401
    import qcloud_cos  # noqa: F401
    from tencentcloud.mps.v20190612 import mps_client, mps_client_async  # noqa: F401

    import airflow_mps.batch.adopt
    import airflow_mps.batch.overlap
    import airflow_mps.batch.poll
    import airflow_mps.batch.report
    import airflow_mps.batch.resume
    import airflow_mps.batch.state
    import airflow_mps.batch.submit
    import airflow_mps.hooks.cos
    import airflow_mps.hooks.mps
    import airflow_mps.operators.batch
    import airflow_mps.operators.mps
    import airflow_mps.triggers.batch
    import airflow_mps.triggers.mps  # noqa: F401


def serve() -> None:
    """The fork server's loop (module docstring: the protocol)."""
    started = time.monotonic()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)  # a stray print (Airflow prints while it loads its configuration) never corrupts it
    _preload()
    out = os.fdopen(protocol_fd, "w", buffering=1)

    def send(message: dict[str, Any]) -> None:
        out.write(json.dumps(message) + "\n")
        out.flush()

    send({"ready": True, "threads": threading.active_count(), "import_seconds": time.monotonic() - started})
    go: dict[int, int] = {}
    for line in sys.stdin:
        msg = json.loads(line)
        cmd = msg["cmd"]
        if cmd == "spawn":
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(write_end)
                _child(msg["job"], read_end, protocol_fd)
            os.close(read_end)
            go[pid] = write_end
            send({"pid": pid})
        elif cmd == "go":
            write_end = go.pop(msg["pid"])
            os.write(write_end, b"g")
            os.close(write_end)
            send({"ok": True})
        elif cmd == "wait":
            info = os.waitid(os.P_PID, msg["pid"], os.WEXITED | os.WNOWAIT)
            assert info is not None
            killed = info.si_code in (os.CLD_KILLED, os.CLD_DUMPED)
            send(
                {
                    "pid": msg["pid"],
                    "signal": info.si_status if killed else None,
                    "code": None if killed else info.si_status,
                }
            )
        elif cmd == "reap":
            os.waitpid(msg["pid"], 0)
            send({"ok": True})
        elif cmd == "exit":
            send({"ok": True})
            return


# ====================================================================================== test side
@dataclass(frozen=True)
class Exit:
    """How a worker ended: killed by ``signal``, or exited with ``code``."""

    signal: int | None
    code: int | None
    hung: bool = False

    @property
    def sigkilled(self) -> bool:
        return self.signal == signal.SIGKILL and not self.hung


class ForkServer:
    """The test's handle on the fork server (a subprocess started with this file as its script)."""

    def __init__(self, log: Path, *, ready_timeout: float = 180.0) -> None:
        self._log = open(log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=dict(os.environ),
        )
        self.ready = self._recv(ready_timeout)

    def _send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        self.proc.stdin.flush()

    def _recv(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError(f"the fork server did not answer within {timeout} s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the fork server exited ({self.proc.poll()}); see {self._log.name}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def spawn(self, job: dict[str, Any]) -> int:
        """Fork a worker for ``job``; it waits for :meth:`go`."""
        self._send({"cmd": "spawn", "job": job})
        return int(self._recv(30)["pid"])

    def go(self, pid: int) -> None:
        self._send({"cmd": "go", "pid": pid})
        self._recv(30)

    def wait(self, pid: int, timeout: float) -> Exit:
        """Block until the worker exits (it stays a zombie until :meth:`reap`). A worker still running
        after ``timeout`` is SIGKILLed and reported ``hung``: a trial failure, never a kill point."""
        self._send({"cmd": "wait", "pid": pid})
        try:
            reply = self._recv(timeout)
            hung = False
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            reply = self._recv(30)
            hung = True
        return Exit(reply["signal"], reply["code"], hung)

    def reap(self, pid: int) -> None:
        self._send({"cmd": "reap", "pid": pid})
        self._recv(30)

    def run(
        self,
        job: dict[str, Any],
        *,
        timeout: float,
        arm: Callable[[int], None] | None = None,
        disarm: Callable[[], None] | None = None,
    ) -> Exit:
        """spawn → ``arm(pid)`` (a kill point) → go → wait → ``disarm()`` → reap: the kill switch lets go
        of the pid before it can be reused."""
        pid = self.spawn(job)
        ended: Exit | None = None
        try:
            if arm is not None:
                arm(pid)
            self.go(pid)
            ended = self.wait(pid, timeout)
            return ended
        finally:
            if disarm is not None:
                disarm()
            if ended is None:  # something failed before the worker ended: never leave it waiting
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.reap(pid)

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self._send({"cmd": "exit"})
                self.proc.wait(30)
        except (OSError, TimeoutError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(30)
        finally:
            self._log.close()


@dataclass(frozen=True)
class KillPoint:
    """Where a worker is killed.

    ``event`` is one of ``go`` (the worker was let run), ``received`` / ``answered`` (the k-th emulator
    API call matching ``action`` arrived / was handled, its answer not yet sent), ``created`` (the k-th
    MPS task was created, its TaskId not yet sent), ``finished`` (the k-th task finished), or ``store``
    (the worker's k-th durable store write, ``phase`` before/torn/after; the worker kills itself).
    ``delay`` seconds after the event (0: at once, inside the emulator's handler).
    """

    phase_name: str
    event: str
    k: int = 1
    action: str = "*"
    delay: float = 0.0
    phase: str = ""

    @property
    def label(self) -> str:
        after = f" +{self.delay * 1000:.0f}ms" if self.delay else ""
        if self.event == "go":
            return f"{self.phase_name}: start{after}"
        what = {"store": "store write", "created": "task created", "finished": "task finished"}.get(
            self.event, f"{self.action} {self.event}"
        )
        extra = f" ({self.phase})" if self.phase else ""
        return f"{self.phase_name}: {what} #{self.k}{extra}{after}"

    def store_kill(self) -> dict[str, Any] | None:
        return {"k": self.k, "phase": self.phase} if self.event == "store" else None


@dataclass
class KillSwitch:
    """SIGKILLs one worker (by pid) at a :class:`KillPoint`, from inside an in-thread emulator.

    It wraps the emulator's ``Stats`` counters, which its handlers call at the exact moments a kill
    point names (a request's arrival, a task's creation before its answer is sent, …).
    """

    server: Any
    pid: int = 0
    point: KillPoint | None = None
    seen: int = 0
    fired: bool = False
    timers: list[threading.Timer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        stats = self.server.app.stats
        count, created, finished = stats.count, stats.task_created, stats.task_finished

        def on_count(action: str, outcome: str, error_code: str | None = None) -> None:
            count(action, outcome, error_code)
            event = {"received": "received", "succeeded": "answered"}.get(outcome)
            if event:
                self._event(event, action)

        def on_created(input_key: str) -> None:
            created(input_key)
            self._event("created", None)

        def on_finished(succeeded: bool) -> None:
            finished(succeeded)
            self._event("finished", None)

        stats.count, stats.task_created, stats.task_finished = on_count, on_created, on_finished

    def arm(self, pid: int, point: KillPoint) -> None:
        """Kill ``pid`` at ``point``; ``arm(0, …)`` / :meth:`disarm` stops watching."""
        with self._lock:
            self.pid, self.point, self.seen, self.fired = pid, point, 0, False
        if pid and point.event == "go":
            self._fire()

    def disarm(self) -> None:
        with self._lock:
            self.pid, self.point = 0, None
            timers, self.timers = self.timers, []
        for timer in timers:
            timer.cancel()

    def _event(self, event: str, action: str | None) -> None:
        with self._lock:
            point = self.point
            if not self.pid or point is None or self.fired or point.event != event:
                return
            if action is not None and not fnmatch.fnmatchcase(action, point.action):
                return
            self.seen += 1
            if self.seen != point.k:
                return
        self._fire()

    def _fire(self) -> None:
        with self._lock:
            point, pid = self.point, self.pid
            if point is None or not pid or self.fired:
                return
            self.fired = True
            if point.delay > 0:
                timer = threading.Timer(point.delay, self._kill, args=(pid,))
                timer.daemon = True
                self.timers.append(timer)
                timer.start()
                return
        self._kill(pid)

    def _kill(self, pid: int) -> None:
        with self._lock:
            if pid != self.pid:  # disarmed meanwhile: the pid may be reaped
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def requests_in_flight(stats: dict[str, Any]) -> int:
    """API calls received but not yet answered (no injected terminal faults in these trials)."""
    return sum(
        c["received"] - c["succeeded"] - c["throttled"] - c["failed"] for c in stats["actions"].values()
    )


def waiting_tasks(server: Any) -> int:
    """How many of the emulator's tasks are WAITING (not listable by ``DescribeImageTasks``)."""
    return int(server.app.mps.store.query(statuses=("WAITING",), limit=1)[1])


def quiesce(server: Any, *, until_listable: bool = True, bound: float = 10.0, stable_checks: int = 4) -> None:
    """Let the world catch up with a dead worker before its retry: every connection it had is closed
    and every request it sent handled (what reached the emulator made its task); then, with
    ``until_listable``, no task is WAITING — what Airflow's default ``retry_delay`` (5 minutes) gives.

    A batch retry that lists while a task is still WAITING may submit that image again: the documented
    residual risk of docs/batch.md ("What a listing can see"). The single-image operator waits for it
    (``test_single_image_retry_while_its_task_is_still_waiting``). Bounded, never asserted."""
    httpd = server._running.httpd
    deadline = time.monotonic() + bound
    calm = 0
    while calm < stable_checks and time.monotonic() < deadline:
        with httpd._conn_lock:
            open_connections = len(httpd._connections)
        calm = calm + 1 if not open_connections and not requests_in_flight(server.stats()) else 0
        time.sleep(0.02)
    while until_listable and waiting_tasks(server) and time.monotonic() < deadline:
        time.sleep(0.02)


def read_outcome(path: Path) -> dict[str, Any] | None:
    """What a worker wrote: ``{"result": …}`` or ``{"error": …}``; ``None`` when it wrote nothing."""
    try:
        outcome: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    return outcome


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return "(no log)"


if __name__ == "__main__":
    serve()
