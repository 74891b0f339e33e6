"""Every module imports alone, and parsing a DAG stays light (issue 10 "Must show"; docs/internals.md).

What runs where:

* **Every module alone** (``airflow_mps/**``, ``__main__`` aside): one interpreter first imports what
  every DAG file imports anyway (``from airflow.sdk import DAG, BaseOperator, BaseSensorOperator``) —
  no module of this package but the root one, which Airflow's provider discovery loads — then forks
  one child per module, and each child imports its module and nothing else of the package. Fresh for
  the package at the cost of a fork, not of an interpreter start: ~100 modules in a few seconds.
* **In really fresh interpreters** (``python -c "import …"``, two at a time): every module provider
  info lists, and the modules a DAG file imports. Each reports what it loaded, so the DAG-parse rules are
  checked on the same runs.
* **Without Airflow**: one interpreter imports every module of the rooms that must never load Airflow
  (``errors``, ``models``, ``ownership``, ``waits``, ``batch``, ``emulator``) and the root package.

The subprocesses run once per session (``probes``) and the tests read their reports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_mps import get_provider_info

REPO = Path(__file__).resolve().parents[2]
PACKAGE_DIR = REPO / "airflow_mps"
TIMEOUT = 180


def _module_names() -> list[str]:
    names = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__main__":  # runs the CLI when imported
            continue
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


ALL_MODULES = _module_names()
#: What provider info lists: the hook, operator, sensor and trigger modules and the extra link's module.
LISTED = sorted(
    {
        module
        for kind in ("hooks", "operators", "sensors", "triggers")
        for e in get_provider_info()[kind]
        for module in e["python-modules"]
    }
    | {path.rpartition(".")[0] for path in get_provider_info()["extra-links"]}
)
#: What a DAG file imports (docs/internals.md, "The DAG-parse path").
DAG_PARSE_PATH = (
    "airflow_mps.operators.mps",
    "airflow_mps.operators.batch",
    "airflow_mps.sensors.mps",
    "airflow_mps.sensors.cos",
)
TRIGGER_MODULES = sorted(m for m in LISTED if m.startswith("airflow_mps.triggers."))
FRESH = sorted(set(LISTED) | set(DAG_PARSE_PATH))
#: Rooms that never load Airflow (docs/internals.md, "Third-party imports"), and the root package.
AIRFLOW_FREE = sorted(
    m
    for m in ALL_MODULES
    if m == "airflow_mps"
    or any(
        m == f"airflow_mps.{room}" or m.startswith(f"airflow_mps.{room}.")
        for room in ("errors", "models", "ownership", "waits", "batch", "emulator")
    )
)

#: Never loaded by a DAG-parse-path module, nor by a trigger module (the triggerer imports those on its
#: event loop): the Tencent Cloud SDK, cos-python-sdk-v5, Pillow.
HEAVY = ("tencentcloud", "qcloud_cos", "PIL")
#: Not loaded by them unless Airflow's DAG-file imports already did (httpx: the SDK's async transport).
NOT_NEW = ("httpx", "requests")

_MARKS = ("PROBE", "BASELINE", "FORKED")
_DAG_FILE_IMPORTS = "from airflow.sdk import DAG, BaseOperator, BaseSensorOperator"

_FRESH_PROBE = """
import importlib, json, sys, traceback
try:
    importlib.import_module(sys.argv[1])
    error = None
except BaseException:
    error = traceback.format_exc()
print("PROBE " + json.dumps({"error": error, "modules": sorted(sys.modules)}), flush=True)
"""

_FORK_PROBE = f"""
import importlib, json, os, sys, traceback
{_DAG_FILE_IMPORTS}
print("BASELINE " + json.dumps(sorted(sys.modules)), flush=True)
results = {{}}
for name in json.loads(sys.argv[1]):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        if any(m.startswith("airflow_mps.") for m in sys.modules):
            message = "not fresh: " + repr([m for m in sys.modules if m.startswith("airflow_mps.")])
        else:
            try:
                importlib.import_module(name)
                message = ""
            except BaseException:
                message = traceback.format_exc()[-4000:]
        os.write(write, message.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as reader:
        message = reader.read()
    _, status = os.waitpid(pid, 0)
    results[name] = message or (None if status == 0 else f"child exited with status {{status}}")
print("FORKED " + json.dumps(results), flush=True)
"""

_NO_AIRFLOW_PROBE = """
import importlib, json, sys, traceback
errors = {}
for name in json.loads(sys.argv[1]):
    try:
        importlib.import_module(name)
    except BaseException:
        errors[name] = traceback.format_exc()[-2000:]
airflow = sorted(m for m in sys.modules if m == "airflow" or m.startswith("airflow."))
print("PROBE " + json.dumps({"errors": errors, "airflow": airflow[:20]}), flush=True)
"""


def _run(code: str, *args: str) -> dict[str, str]:
    """Run ``code`` in a fresh interpreter; its marked output lines (``WORD json``) by word.

    Airflow 3.0 logs to stdout, so results travel on lines of their own, marked.
    """
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=REPO,
        env=dict(os.environ),  # tests/conftest.py's isolated AIRFLOW_HOME
    )
    marked = dict(
        line.split(" ", 1)
        for line in proc.stdout.splitlines()
        if line.split(" ", 1)[0] in _MARKS and " " in line
    )
    assert proc.returncode == 0 and marked, proc.stdout[-3000:] + proc.stderr[-3000:]
    return marked


@dataclass(frozen=True)
class Probes:
    baseline: frozenset[str]  # sys.modules after a DAG file's own Airflow imports
    forked: dict[str, str | None]  # module → error (None: imported)
    fresh: dict[str, dict[str, Any]]  # module → {"error", "modules"}
    without_airflow: dict[str, Any]  # {"errors", "airflow"}


@pytest.fixture(scope="session")
def probes() -> Probes:
    """All the interpreters this file needs, two at a time."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        forked = pool.submit(_run, _FORK_PROBE, json.dumps(ALL_MODULES))
        no_airflow = pool.submit(_run, _NO_AIRFLOW_PROBE, json.dumps(AIRFLOW_FREE))
        fresh = {name: pool.submit(_run, _FRESH_PROBE, name) for name in FRESH}
        forked_out = forked.result()
        return Probes(
            baseline=frozenset(json.loads(forked_out["BASELINE"])),
            forked=json.loads(forked_out["FORKED"]),
            fresh={name: json.loads(future.result()["PROBE"]) for name, future in fresh.items()},
            without_airflow=json.loads(no_airflow.result()["PROBE"]),
        )


def _matching(modules: Iterable[str], tops: Iterable[str]) -> list[str]:
    tops = tuple(tops)
    return sorted(m for m in modules if m in tops or m.startswith(tuple(f"{top}." for top in tops)))


# ------------------------------------------------------------------------------------------------ alone
def test_the_module_list_is_complete() -> None:
    assert len(ALL_MODULES) > 50 and "airflow_mps.emulator.imaging" in ALL_MODULES
    assert {"airflow_mps.hooks.mps", "airflow_mps.triggers.batch", "airflow_mps.links.mps"} <= set(LISTED)


@pytest.mark.parametrize("name", ALL_MODULES)
def test_every_module_imports_alone(probes: Probes, name: str) -> None:
    assert probes.forked[name] is None, probes.forked[name]


@pytest.mark.parametrize("name", FRESH)
def test_listed_and_dag_file_modules_import_in_a_fresh_interpreter(probes: Probes, name: str) -> None:
    """``python -c "import <module>"`` for every module provider info lists (and the DAG-parse path)."""
    assert probes.fresh[name]["error"] is None, probes.fresh[name]["error"]


def test_airflow_free_rooms_never_load_airflow(probes: Probes) -> None:
    """errors, models, ownership, waits, batch, the emulator and the root package import without Airflow
    (the emulator runs where Airflow is not installed; provider discovery calls the root package)."""
    assert not probes.without_airflow["errors"], probes.without_airflow["errors"]
    assert probes.without_airflow["airflow"] == []


# ------------------------------------------------------------------------------------------------ DAG parse
@pytest.mark.parametrize("name", DAG_PARSE_PATH)
def test_dag_parse_path_stays_light(probes: Probes, name: str) -> None:
    """A DAG file's import loads no SDK, no Pillow, no hook, no trigger (ours or Airflow's trigger base),
    no emulator, and no httpx/requests Airflow had not loaded already (benchmark P5)."""
    loaded = probes.fresh[name]["modules"]
    new = set(loaded) - probes.baseline
    assert _matching(loaded, HEAVY) == []
    assert _matching(new, NOT_NEW) == []
    assert _matching(loaded, ("airflow_mps.hooks", "airflow_mps.triggers", "airflow_mps.emulator")) == []
    assert _matching(new, ("airflow.triggers",)) == []


@pytest.mark.parametrize("name", TRIGGER_MODULES)
def test_trigger_modules_load_no_sdk(probes: Probes, name: str) -> None:
    """The triggerer imports a trigger's module on its event loop: it must not load an SDK there (the
    first run loads the hook and the SDK in a worker thread, see below)."""
    loaded = probes.fresh[name]["modules"]
    assert _matching(loaded, HEAVY) == []
    assert _matching(set(loaded) - probes.baseline, NOT_NEW) == []
    assert _matching(loaded, ("airflow_mps.hooks", "airflow_mps.emulator")) == []


# ------------------------------------------------------------------------------------------------ moved here
# From tests/unit (issue 10 item 7: no subprocesses there), on the same probes where they can be.
def test_parse_time_imports_nothing_heavy(probes: Probes) -> None:
    """(From tests/unit/operators/test_operator_mps.py.) The operator, sensor, trigger and link modules load no
    SDK, Pillow, httpx or requests beyond what Airflow's base classes already loaded."""
    for name in (
        "airflow_mps.operators.mps",
        "airflow_mps.sensors.mps",
        "airflow_mps.triggers.mps",
        "airflow_mps.links.mps",
    ):
        loaded = probes.fresh[name]["modules"]
        assert _matching(set(loaded) - probes.baseline, (*HEAVY, *NOT_NEW)) == [], name
        assert _matching(loaded, HEAVY) == [], name


def test_parse_time_imports_no_trigger_machinery(probes: Probes) -> None:
    """(From tests/unit/operators/test_operator_mps.py.) A DAG file that uses the single-image operator or the
    sensor does not import the triggers (nor Airflow's trigger base) or the hooks: they are imported
    when first used (deferral), not while the DAG file is parsed (benchmark P5). The batch operator is
    re-exported by a plain import (issue 10: no module ``__getattr__``), so it is one class under both
    paths."""
    for name in ("airflow_mps.operators.mps", "airflow_mps.sensors.mps"):
        new = set(probes.fresh[name]["modules"]) - probes.baseline
        assert _matching(new, ("airflow.triggers", "airflow_mps.triggers", "airflow_mps.hooks")) == [], name

    from airflow_mps.operators.batch import MpsBatchProcessImageOperator as Batch
    from airflow_mps.operators.mps import MpsBatchProcessImageOperator
    from airflow_mps.triggers.batch import MpsImageBatchTrigger
    from airflow_mps.triggers.mps import MpsImageTaskTrigger

    assert MpsBatchProcessImageOperator.__name__ == "MpsBatchProcessImageOperator"
    assert Batch is MpsBatchProcessImageOperator
    assert MpsImageBatchTrigger.__module__ == "airflow_mps.triggers.batch"
    assert MpsImageTaskTrigger.__module__ == "airflow_mps.triggers.mps"


def test_operator_module_does_not_import_the_sdk(probes: Probes) -> None:
    """(From tests/unit/test_batch_unit.py.) The batch operator and its trigger load no SDK, no Pillow."""
    for name in ("airflow_mps.operators.batch", "airflow_mps.triggers.batch"):
        assert _matching(probes.fresh[name]["modules"], HEAVY) == [], name


def test_first_run_imports_the_sdk_off_the_event_loop() -> None:
    """(From tests/unit/triggers/test_trigger_mps.py.) The Tencent SDK is imported lazily (never at DAG parse);
    the first trigger in a triggerer process must not do that import on the event loop, where it would
    stall every other trigger."""
    code = (
        "import asyncio, sys, threading, time\n"
        "from airflow_mps.triggers.mps import MpsImageTaskTrigger\n"
        "on_loop = []\n"
        "class Spy:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'tencentcloud' or name.startswith('airflow_mps.hooks'):\n"
        "            if threading.current_thread() is threading.main_thread():\n"
        "                on_loop.append(name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Spy())\n"
        "async def main():\n"
        "    t = MpsImageTaskTrigger(mps_task_id='t-1', end_time=time.time() + 0.5, poll_interval=0.05)\n"
        "    return [e.payload['status'] async for e in t.run()]\n"
        "print('RESULT', asyncio.run(main()), sorted(set(on_loop)), flush=True)\n"
    )
    env = {
        **os.environ,
        # Nothing listens on port 9: every poll is a refused connection until the deadline.
        "AIRFLOW_CONN_TENCENTCLOUD_DEFAULT": "tencentcloud://AKIDx:keyx@/?region=ap-guangzhou&endpoint=127.0.0.1%3A9&protocol=http",
    }
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    # Airflow 3.0 logs to stdout, and a worker thread may still log after the result: pick the marked line.
    results = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    assert results == ["RESULT ['timeout'] []"], out.stdout + out.stderr[-2000:]


def test_declaring_the_operator_does_not_import_the_batch_engine() -> None:
    """Parse-time cost (P5): ``airflow_mps.operators.mps`` re-exports the batch operator, so importing
    it must cost only what declaring the operator needs; the engine is imported at execute time."""
    import subprocess
    import sys

    code = (
        "import sys, airflow.sdk; base = set(sys.modules);"
        "import airflow_mps.operators.mps;"
        "new = sorted(m for m in set(sys.modules) - base if m.startswith(("
        "'airflow_mps.batch.', 'airflow_mps.waits.batch', 'airflow_mps.models', 'airflow_mps.triggers',"
        "'airflow_mps.hooks', 'concurrent.futures')));"
        "print(new); sys.exit(1 if new else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
