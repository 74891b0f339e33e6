"""``make bench``: measure the provider against the API's limit and the naive way, side by side.

Usage::

    python benchmarks/run.py [--quick | --smoke] [--only P1,P3] [--out benchmarks/results] [--profile]

Starts a fresh emulator subprocess per scenario (150 ms injected latency per API call, limits 20/s
ProcessImage and 100/s Describe*), runs P1–P9 each with its baseline, writes ``<out>/latest.json`` and
``<out>/latest.md`` and prints the table. ``--quick`` (smaller N, < 2 minutes) is the CI smoke size;
``--smoke`` is smaller still (the unit test's harness check). The JSON shape::

    {"schema": 1, "mode": "full"|"quick"|"smoke", "machine": {...},
     "settings": {"latency_ms", "process_image_limit", "describe_limit"},
     "scenarios": [{"id", "title", "value", "target", "better", "met", "baseline", "detail"}, ...],
     "total_seconds": float}

Timing numbers are this machine's; the ratios are what docs/performance.md discusses.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import harness  # noqa: E402

harness.isolate_airflow()

import scenarios  # noqa: E402


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def markdown(report: dict) -> str:
    """The table: ratio first, then target, verdict, baseline and the key absolute numbers."""
    lines = [
        "| id | measure | provider | target | met | naive baseline |",
        "|---|---|---:|---:|:---:|---:|",
    ]
    for row in report["scenarios"]:
        op = "≥" if row["better"] == "higher" else "≤"
        target = "—" if row["target"] is None else f"{op} {row['target']:g}"
        met = {True: "yes", False: "**no**", None: "—"}[row["met"]]
        lines.append(
            f"| {row['id']} | {row['title']} | {_fmt(row['value'])} | {target} | {met} | {_fmt(row['baseline'])} |"
        )
    m = report["machine"]
    lines.append("")
    lines.append(
        f"Mode `{report['mode']}`, {report['settings']['latency_ms']:g} ms injected latency per call, limits "
        f"{report['settings']['process_image_limit']:g}/s ProcessImage and {report['settings']['describe_limit']:g}/s "
        f"Describe*. Machine: {m['cpu_count']} × {m['cpu_model']}, {m['memory_gb']} GB, Python {m['python']}, "
        f"commit {m['git_commit']}, {m['date_utc']}. Total {report['total_seconds']:.0f} s."
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller N for CI (< 2 minutes)")
    size.add_argument("--smoke", action="store_true", help="tiny N: checks the harness only")
    parser.add_argument(
        "--only", default=",".join(scenarios.SCENARIOS), help="comma-separated ids, e.g. P1,P3"
    )
    parser.add_argument("--out", default=str(HERE / "results"), help="directory for latest.json / latest.md")
    parser.add_argument("--latency-ms", type=float, default=harness.DEFAULT_LATENCY_MS)
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the submitter (P1) and triggers (P6)"
    )
    args = parser.parse_args(argv)

    selected = [s.strip().upper() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(selected) - set(scenarios.SCENARIOS))
    if unknown:
        parser.error(f"--only: unknown scenario(s) {unknown}; allowed: {', '.join(scenarios.SCENARIOS)}")
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    sizes = {"smoke": scenarios.SMOKE, "quick": scenarios.QUICK, "full": scenarios.Sizes()}[mode]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = dataclasses.replace(
        sizes, latency_ms=args.latency_ms, profile_dir=str(out) if args.profile else None
    )

    t0 = time.perf_counter()
    results = scenarios.run(selected, sizes)
    report = {
        "schema": 1,
        "mode": mode,
        "machine": harness.machine_info(),
        "settings": {
            "latency_ms": args.latency_ms,
            "process_image_limit": harness.PROCESS_IMAGE_LIMIT,
            "describe_limit": harness.DESCRIBE_LIMIT,
        },
        "scenarios": [r.to_json() for r in results],
        "total_seconds": round(time.perf_counter() - t0, 1),
    }
    (out / "latest.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    table = markdown(report)
    (out / "latest.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
