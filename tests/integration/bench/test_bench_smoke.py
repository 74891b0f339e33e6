"""CI smoke for ``make bench``: the harness runs end to end and writes the documented JSON shape.

Runs ``benchmarks/run.py --smoke --only P5,P7`` in a subprocess (its own isolated Airflow home and
emulator). Checks structure and internal consistency only — never a timing or a target verdict.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
ROW_KEYS = {"id", "title", "value", "target", "better", "met", "baseline", "detail"}


def _script(name: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """``benchmarks/<name> <args>`` in a subprocess from the repository root."""
    command = [sys.executable, str(REPO / "benchmarks" / name), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO, check=False)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench")
    proc = _script("run.py", "--smoke", "--only", "P5,P7", "--out", str(out), timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| P5 |" in proc.stdout and "| P7 |" in proc.stdout  # the table is printed
    data = json.loads((out / "latest.json").read_text())
    data["_markdown"] = (out / "latest.md").read_text()
    return data


def test_top_level_shape(report: dict) -> None:
    assert report["schema"] == 1 and report["mode"] == "smoke"
    assert {"platform", "python", "cpu_count", "versions", "git_commit"} <= set(report["machine"])
    assert report["settings"] == {
        "latency_ms": 150.0,
        "process_image_limit": 20.0,
        "describe_limit": 20.0,
    }  # the strictest documented Describe* limit
    assert [row["id"] for row in report["scenarios"]] == ["P5", "P7"]


def test_rows_have_the_documented_fields_and_consistent_verdicts(report: dict) -> None:
    for row in report["scenarios"]:
        assert set(row) == ROW_KEYS, row["id"]
        assert row["better"] in ("higher", "lower")
        assert isinstance(row["value"], float) and row["value"] > 0
        assert isinstance(row["detail"], dict)
        if row["target"] is None:
            assert row["met"] is None
        else:
            expected = (
                row["value"] >= row["target"] if row["better"] == "higher" else row["value"] <= row["target"]
            )
            assert row["met"] is (expected and row["detail"].get("secondary_met", True))


def test_scenarios_measured_real_work(report: dict) -> None:
    p5, p7 = report["scenarios"]
    assert set(p5["detail"]["fresh_interpreter_ms_median"]) == {"empty", "mps", "naive"}
    assert isinstance(p5["baseline"], float)
    assert p7["detail"]["tasks_finished"]["succeeded"] >= p7["detail"]["images"]
    assert p7["detail"]["tasks_finished"]["failed"] == 0
    assert "| P5 |" in report["_markdown"] and "| P7 |" in report["_markdown"]


def test_unknown_scenario_is_refused_before_any_work(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--only", "P99", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 2 and "P99" in proc.stderr and "P1" in proc.stderr
    assert not (tmp_path / "latest.json").exists()


def test_the_pacing_board_runs_its_rows() -> None:
    """``benchmarks/pacing_board.py`` (the simulation board for pacing changes, docs/performance.md):
    one row, a parameter override and a seed count, every seed run, the summary printed."""
    proc = _script("pacing_board.py", "k2.005", "max_probe_backoff=1", "--seeds", "4", timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "AdaptiveParams overrides: {'max_probe_backoff': 1}; 4 seeds per row"
    assert re.match(r"k2\.005    aggregate min 0\.\d{3} mean 0\.\d{3} median 0\.\d{3} ", lines[1]), lines[1]
    assert "refused median" in lines[1]
    assert re.search(r"turns exact +\d/4 +P8 met +\d/4$", lines[1]), lines[1]
    assert re.match(r"mean of the medians: 0\.\d{3}; of the means: 0\.\d{3}$", lines[2]), lines[2]
    assert len(lines) == 3  # no equal-start world of eight asked for: no count of them


def test_the_pacing_board_judges_over_draws_in_parallel() -> None:
    """``--draws`` runs each world under several sets of the buckets' random draws (the board's noise,
    docs/performance.md), ``--jobs`` in worker processes; the counts come out per draw, and the same
    seed and draw give the same result however they were run."""
    proc = _script("pacing_board.py", "k8.150", "--seeds", "2", "--draws", "2", "--jobs", "2", timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "AdaptiveParams overrides: none; 2 seeds × 2 draws per row"
    assert re.search(r"turns exact +\d/4 +P8 met +(\d)/4$", lines[1]), lines[1]
    last = re.match(
        r"P8 met, equal-start worlds \(1 here\), per draw: (\d), (\d) of 2 \(total (\d)\)$", lines[3]
    )
    assert last, lines[3]
    per_draw = [int(last[1]), int(last[2])]
    assert sum(per_draw) == int(last[3]) == int(re.search(r"P8 met +(\d)/4$", lines[1])[1])  # type: ignore[index]
    serial = _script("pacing_board.py", "k8.150", "--seeds", "2", "--draws", "2", timeout=240)
    assert serial.stdout.splitlines()[1:] == lines[1:]


def test_the_pacing_trace_shows_one_seed_turn_by_turn() -> None:
    """``benchmarks/pacing_trace.py`` (docs/performance.md reads its traces): one seed of a board
    world, each process's storm reading, its turn changes in time order and the service's verdicts
    in a span; a world the board lacks is refused with the list of those it has."""
    proc = _script("pacing_trace.py", "k8.005", "15", "--service", "9.8,11.8", timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert re.match(r"k8\.005 seed 15, overrides none: aggregate 0\.\d{3} of the limit, ", lines[0]), lines[0]
    assert sum(1 for line in lines if line.startswith("  process ")) == 8
    settled = [line for line in lines if re.match(r" +\d+\.\d\d  p\d  settle +1:\[0\] -> 8:\[\d\]$", line)]
    assert len(settled) == 8, lines[:20]
    verdicts = [
        line for line in lines if re.search(r"slot \d+ \(residue \d of 8\)  (accepted|REFUSED)$", line)
    ]
    assert verdicts and all(9.8 <= float(line.split()[0]) <= 11.8 for line in verdicts)
    refused = _script("pacing_trace.py", "k9.000", "1", timeout=120)
    assert refused.returncode != 0 and "k8.005" in refused.stderr
