"""SIGKILL trials (issue 12, "Must show"): a worker killed with a real SIGKILL at random points of its
life, then retried in a fresh process (try_number + 1, the same durable ``task_state_store``, or none),
loses no image and pays for none twice.

Each trial gets its own in-thread emulator (so its counters and listings are the trial's alone), seeds
``N`` tiny PNGs, and runs the operator in a worker forked from a pre-imported fork server
(``sigkill_support.py``: no import per process). The worker is killed at a kill point drawn from a
seeded RNG — the seed is printed and named in every failure; ``MPS_SIGKILL_SEED=<n>`` replays one — in
one of the phases of its life:

* batch (``MpsBatchProcessImageOperator``): listing/planning (a delay after start, the k-th COS
  listing), submission (the k-th ``ProcessImage`` in flight, the k-th task created before its TaskId
  was answered, just after the k-th answer), the ledger (the k-th ``task_state_store`` write: before,
  torn, after), the wait (the k-th task finished, the k-th ``Describe*`` call), the state and manifest
  writes (the k-th ``PutObject`` in flight or stored). With a durable store (Airflow >= 3.3) and without
  one (Airflow < 3.3: the retry reconciles by listing from the DAG run's start); polling in place or
  deferring (the trigger and ``execute_complete`` run in the same worker, so a kill there is a kill
  point too);
* single image (``MpsProcessImageOperator``, durable: without a store every try submits, as
  documented): before ProcessImage (a delay, the pending-marker write), during it (in flight, task
  created, answered), the TaskId record write, the wait (the k-th ``Describe*``, the task finished).

Before the retry the test lets the dead worker's requests land and every task leave WAITING — what
Airflow's default ``retry_delay`` (5 minutes) gives: no listing can see a WAITING task, and a batch
retry that lists while one is WAITING may submit that image again (the residual risk docs/batch.md
documents). Per trial: 0 duplicates (the emulator's per-input counter ≤ 1), every input submitted
(``tasks_created == N``), one manifest line per input, succeeded (or skipped: its output in place,
written by the one task of that input), the retry's summary consistent with the emulator's counts;
for one image, exactly one task, the retry's XCom naming it, its output in place. Nothing timed is
asserted. docs/reliability.md has the measured numbers.

``test_single_image_retry_while_its_task_is_still_waiting`` is the bug found while building these
trials (a retry started without that wait): a single-image retry that came while the dead try's task
was still WAITING concluded that nothing had been created and submitted a second task.
"""

from __future__ import annotations

import io
import json
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sigkill_support import (
    Exit,
    ForkServer,
    KillPoint,
    KillSwitch,
    quiesce,
    read_outcome,
    tail,
    waiting_tasks,
)

pytestmark = [
    pytest.mark.slow,  # ~1.5 min on 2 cores; `make test` runs it, `-m "not slow"` skips it locally
    pytest.mark.timeout(420),
    pytest.mark.skipif(sys.platform != "linux", reason="fork server and waitid(WNOWAIT): Linux"),
]

SEED = int(os.environ.get("MPS_SIGKILL_SEED") or random.SystemRandom().randrange(1, 1_000_000))
BUCKET = "kill-1250000000"
N = 10  # images per batch trial
BATCH_TRIALS = 27
SINGLE_TRIALS = 24
MIN_KILLS = 20
WORKER_TIMEOUT = 90.0
EMULATOR = {"task_duration_ms": "150:400", "workers": 6}
#: A retry's patience for an unrecorded submission (the hook's ``reconcile_deadline_seconds``, 60 s by
#: default; the single image's adoption and the batch's settling both use it), short so a trial costs
#: seconds.
PATIENCE = 2.0


@pytest.fixture(scope="module")
def png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 90, 30)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def fork_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    server = ForkServer(tmp_path_factory.mktemp("forkserver") / "forkserver.log")
    try:
        # Forking is safe only from a single-threaded process: the fork server starts no thread.
        assert server.ready["threads"] == 1, server.ready
        yield server
    finally:
        server.close()


# ---------------------------------------------------------------------------------- kill points
BATCH_KINDS = (
    "startup",
    "listing",
    "submit_in_flight",
    "task_created",
    "submit_answered",
    "ledger",
    "wait_finished",
    "wait_describe",
    "state_or_manifest",
)


def _batch_point(rng: random.Random, kind: str, deferrable: bool) -> KillPoint:
    if kind == "startup":
        return KillPoint("listing/planning", "go", delay=rng.uniform(0.0, 0.12))
    if kind == "listing":  # the source and the destination are listed concurrently: 2 calls
        return KillPoint("listing/planning", "received", k=rng.randint(1, 2), action="cos:ListObjects")
    if kind == "submit_in_flight":
        return KillPoint("submission", "received", k=rng.randint(1, N), action="ProcessImage")
    if kind == "task_created":
        return KillPoint("submission", "created", k=rng.randint(1, N))
    if kind == "submit_answered":
        delay = rng.choice([0.0, rng.uniform(0.0, 0.05)])
        return KillPoint("submission", "answered", k=rng.randint(1, N), action="ProcessImage", delay=delay)
    if kind == "ledger":  # every durable run writes >= 4: meta, shard, meta, completed
        return KillPoint(
            "ledger write", "store", k=rng.randint(1, 4), phase=rng.choice(["before", "torn", "after"])
        )
    if kind == "wait_finished":
        delay = rng.choice([0.0, rng.uniform(0.0, 0.3)])
        return KillPoint("wait", "finished", k=rng.randint(1, N), delay=delay)
    if kind == "wait_describe":
        return KillPoint("wait", "received", k=rng.randint(1, 2), action="Describe*")
    # Polling in place writes one object (the manifest); a deferral writes its two state objects, the
    # trigger's final state, then the manifest.
    k = rng.randint(1, 4) if deferrable else 1
    event = rng.choice(["received", "answered"])
    name = "manifest" if not deferrable or k == 4 else "deferral state"
    return KillPoint(name, event, k=k, action="cos:PutObject")


def _batch_plan(rng: random.Random) -> list[dict[str, Any]]:
    kinds = [*BATCH_KINDS * 3][:BATCH_TRIALS]
    rng.shuffle(kinds)
    others = [i for i, kind in enumerate(kinds) if kind != "ledger"]
    cos_only = set(rng.sample(others, k=BATCH_TRIALS // 3))  # no task_state_store (Airflow < 3.3)
    deferred = set(rng.sample(range(BATCH_TRIALS), k=BATCH_TRIALS // 3))
    plan = []
    for i, kind in enumerate(kinds):
        deferrable = i in deferred
        plan.append(
            {
                "durable": i not in cos_only,
                "deferrable": deferrable,
                "point": _batch_point(rng, kind, deferrable),
                "seed": rng.randrange(1 << 30),
            }
        )
    return plan


SINGLE_KINDS = (
    "startup",
    "marker",
    "submit_in_flight",
    "task_created",
    "submit_answered",
    "record",
    "wait_describe",
    "finished",
)


def _single_point(rng: random.Random, kind: str) -> KillPoint:
    if kind == "startup":
        return KillPoint("before ProcessImage", "go", delay=rng.uniform(0.0, 0.08))
    if kind == "marker":  # the pending marker, written just before ProcessImage
        return KillPoint("before ProcessImage", "store", k=1, phase=rng.choice(["before", "torn", "after"]))
    if kind == "submit_in_flight":
        return KillPoint("during ProcessImage", "received", action="ProcessImage")
    if kind == "task_created":
        return KillPoint("during ProcessImage", "created")
    if kind == "submit_answered":
        delay = rng.choice([0.0, rng.uniform(0.0, 0.03)])
        return KillPoint("after ProcessImage", "answered", action="ProcessImage", delay=delay)
    if kind == "record":  # the TaskId record the mixin stores after ProcessImage
        return KillPoint("after ProcessImage", "store", k=2, phase=rng.choice(["before", "torn", "after"]))
    if kind == "wait_describe":
        return KillPoint("wait", "received", k=rng.randint(1, 2), action="Describe*")
    return KillPoint("wait", "finished", delay=rng.choice([0.0, rng.uniform(0.0, 0.1)]))


def _single_plan(rng: random.Random) -> list[dict[str, Any]]:
    kinds = [*SINGLE_KINDS * 3][:SINGLE_TRIALS]
    rng.shuffle(kinds)
    deferred = set(rng.sample(range(SINGLE_TRIALS), k=SINGLE_TRIALS // 3))
    return [
        {
            "durable": True,
            "deferrable": i in deferred,
            "point": _single_point(rng, kind),
            "seed": rng.randrange(1 << 30),
        }
        for i, kind in enumerate(kinds)
    ]


# ---------------------------------------------------------------------------------- one trial
def _emulator(data_dir: Path, seed: int) -> Any:
    from airflow_mps.emulator.testing import EmulatorServer

    server = EmulatorServer(data_dir=data_dir, seed=seed, **EMULATOR)
    server.start()
    server.cos_backend.create_bucket(BUCKET)
    # Latency widens the windows a kill can land in: a ProcessImage in flight, a PutObject in flight.
    server.faults.latency(40, "ProcessImage")
    server.faults.latency(30, "cos:PutObject")
    return server


def _kill_then_retry(
    fork_server: ForkServer,
    emu: Any,
    job: dict[str, Any],
    point: KillPoint,
    workdir: Path,
) -> tuple[Exit, Exit, int, dict[str, Any] | None]:
    """Try 1 (killed at ``point``), the world catches up (:func:`sigkill_support.quiesce`), try 2 in a
    fresh process. Returns both exits, the tasks created before the retry, and what the retry wrote."""
    switch = KillSwitch(emu)
    first_job = {
        **job,
        "try_number": 1,
        "store_kill": point.store_kill(),
        "log": str(workdir / "try1.log"),
        "result": str(workdir / "try1.json"),
    }
    first = fork_server.run(
        first_job, timeout=WORKER_TIMEOUT, arm=lambda pid: switch.arm(pid, point), disarm=switch.disarm
    )
    quiesce(emu)
    emu.faults.clear()
    created_before_retry = int(emu.stats()["tasks_created"])
    second_job = {
        **job,
        "try_number": 2,
        "store_kill": None,
        "log": str(workdir / "try2.log"),
        "result": str(workdir / "try2.json"),
    }
    second = fork_server.run(second_job, timeout=WORKER_TIMEOUT)
    return first, second, created_before_retry, read_outcome(workdir / "try2.json")


def _tasks_by_input(emu: Any) -> dict[str, list[str]]:
    records, _ = emu.app.mps.store.query(limit=10_000)
    out: dict[str, list[str]] = {}
    for rec in records:
        out.setdefault(rec.input_key, []).append(rec.task_id)
    return out


def _outputs_by_task(emu: Any) -> dict[str, str | None]:
    """Task id → the key a successful task wrote (``None``: failed or unfinished)."""
    records, _ = emu.app.mps.store.query(limit=10_000)
    return {
        rec.task_id: (rec.output or {}).get("key") if rec.result_status == "SUCCESS" else None
        for rec in records
    }


def _first_try_problems(first: Exit, workdir: Path) -> list[str]:
    if first.hung:
        return [f"try 1 hung: {tail(workdir / 'try1.log')}"]
    if first.sigkilled:
        return []
    outcome = read_outcome(workdir / "try1.json") or {}
    if first.code != 0:
        return [f"try 1 ended without the kill, failing: {outcome.get('error')}"]
    return []  # finished before the kill point was reached: a completed run, then a rerun


def _retry_problems(second: Exit, outcome: dict[str, Any] | None, workdir: Path) -> list[str]:
    if second.hung or second.code != 0 or not outcome or "result" not in outcome:
        return [f"the retry failed ({second}): {(outcome or {}).get('error')}\n{tail(workdir / 'try2.log')}"]
    return []


def _batch_checks(
    emu: Any, part: str, summary: dict[str, Any], created_before_retry: int, store: Path | None
) -> tuple[list[str], dict[str, Any]]:
    """0 duplicates, 0 lost, outputs in place, the retry's summary consistent with the emulator."""
    problems: list[str] = []
    emu.wait_idle(30)  # a skipped image's task may still be running: its outcome is checked below
    stats = emu.stats()
    inputs = {
        f"cos://{BUCKET}/raw/{part}/img_{j:02d}.png": f"enhanced/{part}/img_{j:02d}.jpg" for j in range(N)
    }
    submissions = stats["submissions_by_input"]
    duplicates = {k: v for k, v in submissions.items() if v > 1}
    if duplicates:
        problems.append(f"DUPLICATES: {duplicates}")
    if set(submissions) != set(inputs):
        problems.append(f"inputs never submitted: {sorted(set(inputs) - set(submissions))}")
    if stats["tasks_created"] != N:
        problems.append(f"tasks_created {stats['tasks_created']} != {N}")
    data = emu.cos_backend.get_object(BUCKET, f"enhanced/{part}/_mps_manifest.jsonl").data
    lines = [json.loads(x) for x in data.decode().splitlines()]
    states = Counter(line["state"] for line in lines)
    tasks = _tasks_by_input(emu)
    if sorted(line["input"] for line in lines) != sorted(inputs):
        problems.append(f"LOST: manifest inputs {sorted(line['input'] for line in lines)}")
    for line in lines:
        if line["state"] == "succeeded":
            if [line["task_id"]] != tasks.get(line["input"]):
                problems.append(
                    f"{line['input']}: manifest task {line['task_id']} != {tasks.get(line['input'])}"
                )
        elif line["state"] == "skipped":
            # Skipped = its output exists (a retry after the outputs landed): it must be the work of
            # the one task the first try created for that input.
            wrote = _outputs_by_task(emu)
            if [wrote.get(t) for t in tasks.get(line["input"], [])] != [inputs.get(line["input"])]:
                problems.append(f"{line['input']}: skipped, but no single task of ours wrote its output")
        else:
            problems.append(f"LOST: {line}")
    for key in inputs.values():
        try:
            emu.cos_backend.head_object(BUCKET, key)
        except Exception as exc:
            problems.append(f"LOST: output {key} missing ({exc})")
    created_by_retry = stats["tasks_created"] - created_before_retry
    expected = {
        "total": N,
        "failed": 0,
        "pending": 0,
        "succeeded": states["succeeded"],
        "skipped": states["skipped"],
        "submitted": created_by_retry,
    }
    wrong = {k: (summary.get(k), v) for k, v in expected.items() if summary.get(k) != v}
    if summary.get("adopted", 0) + summary.get("submitted", 0) != states["succeeded"]:
        wrong["adopted+submitted"] = (
            summary.get("adopted", 0) + summary.get("submitted", 0),
            states["succeeded"],
        )
    if wrong:
        problems.append(f"summary inconsistent (got, expected): {wrong}")
    if store is not None:
        meta = json.loads(store.read_text()).get("mps_batch/meta") or {}
        if not meta.get("completed"):
            problems.append(f"the ledger is not marked completed: {meta}")
    facts = {
        "created_before_retry": created_before_retry,
        "adopted": summary.get("adopted"),
        "submitted": summary.get("submitted"),
        "succeeded": states["succeeded"],
        "skipped": states["skipped"],
    }
    return problems, facts


def _batch_trial(
    fork_server: ForkServer, workdir: Path, png: bytes, index: int, trial: dict[str, Any]
) -> dict[str, Any]:
    workdir.mkdir(parents=True)
    part = f"dt=trial{index:02d}"
    store = workdir / "task_state_store.json" if trial["durable"] else None
    emu = _emulator(workdir / "emulator", trial["seed"])
    try:
        for j in range(N):
            emu.cos_backend.put_object(BUCKET, f"raw/{part}/img_{j:02d}.png", png, "image/png")
        job = {
            "kind": "batch",
            "conn": emu.connection_uri(),
            "source": f"cos://{BUCKET}/raw/{part}/",
            "destination": f"cos://{BUCKET}/enhanced/{part}/",
            "deferrable": trial["deferrable"],
            "poll_interval": 0.2,
            "run_start": time.time(),
            "store": str(store) if store else None,
            "patience": PATIENCE,
        }
        first, second, before, outcome = _kill_then_retry(fork_server, emu, job, trial["point"], workdir)
        problems = _first_try_problems(first, workdir) + _retry_problems(second, outcome, workdir)
        facts: dict[str, Any] = {}
        if not problems:
            assert outcome is not None
            more, facts = _batch_checks(emu, part, outcome["result"], before, store)
            problems += more
    finally:
        emu.stop()
    return {"killed": first.sigkilled, "problems": problems, **facts}


def _single_trial(
    fork_server: ForkServer, workdir: Path, png: bytes, index: int, trial: dict[str, Any]
) -> dict[str, Any]:
    workdir.mkdir(parents=True)
    part = f"dt=single{index:02d}"
    input_uri = f"cos://{BUCKET}/raw/{part}/img.png"
    emu = _emulator(workdir / "emulator", trial["seed"])
    try:
        emu.cos_backend.put_object(BUCKET, f"raw/{part}/img.png", png, "image/png")
        job = {
            "kind": "single",
            "conn": emu.connection_uri(),
            "input": input_uri,
            "deferrable": trial["deferrable"],
            "poll_interval": 0.1,
            "run_start": time.time(),
            "store": str(workdir / "task_state_store.json"),
            "patience": PATIENCE,
            "settle": 0.2,
        }
        first, second, before, outcome = _kill_then_retry(fork_server, emu, job, trial["point"], workdir)
        problems = _first_try_problems(first, workdir) + _retry_problems(second, outcome, workdir)
        if not problems:
            assert outcome is not None
            problems += _single_checks(emu, input_uri, f"raw/{part}/img.jpg", outcome["result"])
    finally:
        emu.stop()
    return {
        "killed": first.sigkilled,
        "problems": problems,
        "created_before_retry": before,
        "retry": _retry_path(workdir / "try2.log"),
    }


#: What the single-image retry did, as its log says (reported, never asserted).
RETRY_PATHS = {
    "Adopting MPS task": "adopted the unrecorded task",
    "Reconnecting to existing job": "reconnected",
    "already completed successfully": "took the finished task",
    "Submitted MPS task": "submitted",
}


def _retry_path(log: Path) -> str:
    text = tail(log, 1_000_000)
    return ", ".join(path for line, path in RETRY_PATHS.items() if line in text)


def _single_checks(emu: Any, input_uri: str, output_key: str, result: dict[str, Any]) -> list[str]:
    """Exactly one MPS task for the image, the retry's XCom names it, its output exists."""
    problems: list[str] = []
    stats = emu.stats()
    if stats["submissions_by_input"] != {input_uri: 1} or stats["tasks_created"] != 1:
        problems.append(
            f"DUPLICATES or none: {stats['submissions_by_input']} ({stats['tasks_created']} tasks)"
        )
    tasks = _tasks_by_input(emu).get(input_uri, [])
    if result.get("status") != "SUCCESS" or [result.get("mps_task_id")] != tasks:
        problems.append(
            f"the retry's XCom {result.get('status')} {result.get('mps_task_id')} != tasks {tasks}"
        )
    paths = [o.get("path") for o in result.get("outputs") or []]
    if paths != [output_key]:
        problems.append(f"outputs {paths} != [{output_key}]")
    try:
        emu.cos_backend.head_object(BUCKET, output_key)
    except Exception as exc:
        problems.append(f"LOST: output {output_key} missing ({exc})")
    return problems


# ---------------------------------------------------------------------------------- the tests
def _report(title: str, plan: list[dict[str, Any]], rows: list[dict[str, Any]], wall: float) -> str:
    lines = [f"{title}: seed {SEED} (MPS_SIGKILL_SEED={SEED} replays it), {wall:.1f} s"]
    for i, (trial, row) in enumerate(zip(plan, rows, strict=True)):
        mode = ("store" if trial["durable"] else "no store") + (
            ", deferred" if trial["deferrable"] else ", polled"
        )
        facts = {
            k: row[k]
            for k in ("created_before_retry", "adopted", "submitted", "succeeded", "skipped", "retry")
            if k in row
        }
        status = "OK" if not row["problems"] else "FAIL: " + " | ".join(row["problems"])
        lines.append(
            f"  #{i:02d} {trial['point'].label:<55} {mode:<20} {'killed' if row['killed'] else 'ran to the end'}"
            f" {facts} {status}"
        )
    modes = Counter(
        ("store" if t["durable"] else "no store") + (", deferred" if t["deferrable"] else ", polled")
        for t in plan
    )
    lines.append(f"  modes: {dict(modes)}; kills landed: {sum(row['killed'] for row in rows)} of {len(rows)}")
    totals = {k: sum(row.get(k) or 0 for row in rows) for k in ("adopted", "submitted", "skipped")}
    if any(totals.values()):
        lines.append(
            f"  the retries adopted {totals['adopted']} tasks, submitted {totals['submitted']}, skipped {totals['skipped']} images (output in place)"
        )
    paths = Counter(row["retry"] for row in rows if row.get("retry"))
    if paths:
        lines.append(f"  retry paths: {dict(paths)}")
    phases = Counter(
        trial["point"].phase_name for trial, row in zip(plan, rows, strict=True) if row["killed"]
    )
    lines.append(f"  kills landed per phase: {dict(phases)}")
    return "\n".join(lines)


def _run_trials(
    kind: str, plan: list[dict[str, Any]], fork_server: ForkServer, tmp_path: Path, png: bytes
) -> None:
    trial_fn = _batch_trial if kind == "batch" else _single_trial
    rows = []
    started = time.monotonic()
    for i, trial in enumerate(plan):
        rows.append(trial_fn(fork_server, tmp_path / f"{kind}{i:02d}", png, i, trial))
    report = _report(f"{kind} SIGKILL trials", plan, rows, time.monotonic() - started)
    print(report)
    failed = [row for row in rows if row["problems"]]
    kills = sum(row["killed"] for row in rows)
    assert not failed, report
    assert kills >= MIN_KILLS, f"only {kills} of {len(rows)} kill points landed\n{report}"


def test_batch_operator_survives_sigkill_at_random_points(
    fork_server: ForkServer, tmp_path: Path, png: bytes
) -> None:
    _run_trials("batch", _batch_plan(random.Random(SEED)), fork_server, tmp_path, png)


def test_single_image_operator_survives_sigkill_at_random_points(
    fork_server: ForkServer, tmp_path: Path, png: bytes
) -> None:
    _run_trials("single", _single_plan(random.Random(SEED + 1)), fork_server, tmp_path, png)


@pytest.mark.parametrize(
    "point",
    # Points where the task exists for certain (a kill while the request is in flight may stop it
    # before its body is read: no task, a different case, covered by the trials).
    [
        KillPoint("during ProcessImage", "created"),
        KillPoint("after ProcessImage", "answered", action="ProcessImage"),
    ],
    ids=lambda p: p.event,
)
def test_single_image_retry_while_its_task_is_still_waiting(
    point: KillPoint, fork_server: ForkServer, tmp_path: Path, png: bytes
) -> None:
    """The bug found while building the trials: a retry that came while the dead try's task was still
    WAITING (a short ``retry_delay``, a busy MPS queue) listed nothing, concluded that nothing had been
    created and submitted the image again. Now it keeps looking until the pending marker is the hook's
    ``reconcile_deadline_seconds`` old, and adopts the task once it is listable.

    The emulator's only worker is held by another pipeline's task until the retry has listed once, so
    the dead try's task is WAITING at that listing for certain (no timing involved)."""
    import threading

    from airflow_mps.emulator.testing import EmulatorServer

    emu = EmulatorServer(data_dir=tmp_path / "emulator", task_duration_ms="200", workers=1).start()
    try:
        emu.cos_backend.create_bucket(BUCKET)
        for name in ("img", "busy"):
            emu.cos_backend.put_object(BUCKET, f"raw/eager/{name}.png", png, "image/png")
        gate, waiting_at_listings = threading.Event(), []
        _hold_the_worker_until_the_retry_lists(emu, gate, waiting_at_listings)
        cos = {"Bucket": BUCKET, "Region": emu.region, "Object": "/raw/eager/busy.png"}
        out = {"Type": "COS", "CosOutputStorage": {"Bucket": BUCKET, "Region": emu.region}}
        body = {
            "InputInfo": {"Type": "COS", "CosInputInfo": cos},
            "OutputStorage": out,
            "OutputDir": "/else/",
        }
        emu.app.mps.submit(body, request_id="set-up-busy")  # straight to the backend: no client
        emu.faults.latency(40, "ProcessImage")
        input_uri = f"cos://{BUCKET}/raw/eager/img.png"
        job = {
            "kind": "single",
            "conn": emu.connection_uri(),
            "input": input_uri,
            "deferrable": False,
            "poll_interval": 0.1,
            "run_start": time.time(),
            "store": str(tmp_path / "task_state_store.json"),
            "patience": 30.0,
            "settle": 0.2,
        }
        switch = KillSwitch(emu)
        first = fork_server.run(
            {
                **job,
                "try_number": 1,
                "store_kill": None,
                "log": str(tmp_path / "try1.log"),
                "result": str(tmp_path / "try1.json"),
            },
            timeout=WORKER_TIMEOUT,
            arm=lambda pid: switch.arm(pid, point),
            disarm=switch.disarm,
        )
        quiesce(emu, until_listable=False)  # its request landed; its task is queued behind the other
        second = fork_server.run(
            {
                **job,
                "try_number": 2,
                "store_kill": None,
                "log": str(tmp_path / "try2.log"),
                "result": str(tmp_path / "try2.json"),
            },
            timeout=WORKER_TIMEOUT,
        )
        gate.set()
        outcome = read_outcome(tmp_path / "try2.json") or {}
        assert first.sigkilled, (first, tail(tmp_path / "try1.log"))
        assert waiting_at_listings and waiting_at_listings[0] >= 2, waiting_at_listings  # ours + the other
        assert second.code == 0, (second, outcome.get("error"), tail(tmp_path / "try2.log"))
        emu.wait_idle(30)
        assert emu.stats()["submissions_by_input"].get(input_uri) == 1, emu.stats()["submissions_by_input"]
        assert [outcome["result"]["mps_task_id"]] == _tasks_by_input(emu)[input_uri]
        assert outcome["result"]["status"] == "SUCCESS"
    finally:
        emu.stop()


def _hold_the_worker_until_the_retry_lists(emu: Any, gate: Any, waiting_at_listings: list[int]) -> None:
    """The emulator's worker waits on ``gate`` before its first task; ``gate`` opens when the second
    ``DescribeImageTasks`` (the retry's first PROCESSING + FINISH round) arrives, after recording how
    many tasks were WAITING at each listing."""
    run, count = emu.app.mps._run, emu.app.stats.count

    def held_run(task_id: str) -> None:
        gate.wait(60)
        run(task_id)

    def on_count(action: str, outcome: str, error_code: str | None = None) -> None:
        count(action, outcome, error_code)
        if action == "DescribeImageTasks" and outcome == "received":
            waiting_at_listings.append(waiting_tasks(emu))
            if len(waiting_at_listings) >= 2:
                gate.set()

    emu.app.mps._run = held_run
    emu.app.stats.count = on_count


def test_batch_retry_before_the_dead_try_recorded_or_started_anything(
    fork_server: ForkServer, tmp_path: Path, png: bytes
) -> None:
    """The batch's counterpart of the single-image bug: a try killed as its first tasks were created,
    before its ledger recorded any, leaves no task id to watch; a retry that listed at once saw none of
    its WAITING tasks and submitted those images again (4 of 10, in 3 of 3 probes). The ledger now
    notes when a try starts submitting, and a retry within the hook's patience of that lets the tasks
    leave WAITING before it lists.

    The emulator's only worker is held for 2 s after the kill (a busy queue: every task of the dead
    try is WAITING when the retry starts); the patience is 8 s."""
    import threading

    from airflow_mps.emulator.testing import EmulatorServer

    emu = EmulatorServer(data_dir=tmp_path / "emulator", task_duration_ms="100", workers=1).start()
    try:
        emu.cos_backend.create_bucket(BUCKET)
        for j in range(N):
            emu.cos_backend.put_object(BUCKET, f"raw/early/img_{j:02d}.png", png, "image/png")
        gate = threading.Event()
        run = emu.app.mps._run

        def held_run(task_id: str) -> None:
            gate.wait(60)
            run(task_id)

        emu.app.mps._run = held_run
        emu.faults.latency(40, "ProcessImage")
        job = {
            "kind": "batch",
            "conn": emu.connection_uri(),
            "source": f"cos://{BUCKET}/raw/early/",
            "destination": f"cos://{BUCKET}/enhanced/early/",
            "deferrable": False,
            "poll_interval": 0.2,
            "run_start": time.time(),
            "store": str(tmp_path / "task_state_store.json"),
            "patience": 8.0,
        }
        switch = KillSwitch(emu)
        first = fork_server.run(
            {**job, "try_number": 1, "store_kill": None, "log": str(tmp_path / "try1.log"),
             "result": str(tmp_path / "try1.json")},
            timeout=WORKER_TIMEOUT,
            arm=lambda pid: switch.arm(pid, KillPoint("submission", "created", k=2)),
            disarm=switch.disarm,
        )  # fmt: skip
        quiesce(emu, until_listable=False)  # its requests landed; its tasks wait behind the held worker
        created_by_the_dead_try = emu.stats()["tasks_created"]
        waiting_at_retry = waiting_tasks(emu)
        threading.Timer(2.0, gate.set).start()
        second = fork_server.run(
            {**job, "try_number": 2, "store_kill": None, "log": str(tmp_path / "try2.log"),
             "result": str(tmp_path / "try2.json")},
            timeout=WORKER_TIMEOUT,
        )  # fmt: skip
        gate.set()
        outcome = read_outcome(tmp_path / "try2.json") or {}
        assert first.sigkilled, (first, tail(tmp_path / "try1.log"))
        assert created_by_the_dead_try >= 2 and waiting_at_retry == created_by_the_dead_try
        assert second.code == 0, (second, outcome.get("error"), tail(tmp_path / "try2.log"))
        emu.wait_idle(30)
        stats = emu.stats()
        assert sorted(stats["submissions_by_input"].values()) == [1] * N, stats["submissions_by_input"]
        assert stats["tasks_created"] == N
        summary = outcome["result"]
        assert summary["succeeded"] == N and summary["adopted"] == created_by_the_dead_try, summary
    finally:
        emu.stop()
