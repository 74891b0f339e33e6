"""The adaptive pacer on a board of simulated worlds: how a controller change moves every scenario.

Issue 13's controller (``airflow_mps/hooks/_adaptive.py``) trades one scenario for another easily; a
change is judged on all of them at once, each over several seeds, in the deterministic simulation of
``tests/pacing_sim.py`` (the real bucket on a fake clock against the emulator's
limiter semantics). Not part of ``make bench``: it measures no code speed, takes ~30 s, and its
numbers are the simulation's (bench P8 measures the real processes).

    .venv/bin/python benchmarks/pacing_board.py                      # every row, 10 seeds
    .venv/bin/python benchmarks/pacing_board.py k8.stall k8.005      # some rows
    .venv/bin/python benchmarks/pacing_board.py max_probe_backoff=1  # AdaptiveParams overrides
    .venv/bin/python benchmarks/pacing_board.py --seeds 30           # more seeds (default 10)
    .venv/bin/python benchmarks/pacing_board.py --seeds 60 --draws 4 --jobs 2  # judging a change

A seed fixes a world (starts, stalls, network delays) and the buckets' own random draws (tie-breaks,
probe waits and targets); ``--draws N`` runs every world with N sets of the buckets' draws. The
controller is sensitive to them: on sixty seeds, the controller of 615f265 met P8's targets in 399,
382, 384 and 366 of the 480 equal-start seed-worlds under four sets of draws (``--draws 4``), so a
change that moves one draw's count by less than ~30 has not been shown to do anything. The last line
counts the seed-worlds meeting P8's targets in the eight equal-start K = 8 worlds (``EQUAL_START``),
per draw.

Rows: ``k<K>.<round trip>`` — K processes of equal work starting within 50 ms, at the bench's 150 ms,
20 ms or 5 ms one-way delay; ``.jit`` 10 ms mean jitter; ``.sp3`` starts spread over 0.33 s (``l``:
at 5 ms); ``.busy`` a host too busy to answer in order for 0.7 s (``l``: at 5 ms); ``.stall`` each
process descheduled 5×/s for 30 ms on average in its first 2 s (``2``: twice as often and as long);
``stag2`` four processes 2 s apart (``stag10``: 10 s; ``stag1k8``: eight, 1 s apart); ``late2`` two of
600 images, the second 5 s after the first; ``u4`` partitions of 100/200/300/400 images (``l``: at 5 ms);
``x4`` / ``x10``: four / ten times the images — runs of minutes, where the refusal budget's probes
have been earned (``k8x4``, eight equal starts, is the long run with no room to find).
Per row: aggregate ÷ limit (min, mean and median over the seeds: where seeds split into a good and a
bad mode, as the unequal sizes do, a change can move the median across the gap while the mean
stays put) and the refused share (median and max),
measured as bench P8 measures them; "turns exact": the seeds in which every process's last storm
read the group size it is in and the ranks came out distinct (a wrong group or a turn taken twice
is what most low seeds share; meaningful where the processes start together); last, the means of
the medians and of the means.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import random
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from p8_shared_account import TARGET_AGGREGATE, TARGET_THROTTLED  # bench P8's targets, met per seed

from airflow_mps.hooks._adaptive import AdaptiveBucket
from airflow_mps.hooks._pacing import AdaptiveParams
from tests import pacing_sim as sim

SEEDS = 10
#: The eight worlds of K = 8 equal starts: the ones where P8's targets can be met (the board's count).
EQUAL_START = ("k8.150", "k8.020", "k8.005", "k8.sp3", "k8.sp3l", "k8.busy", "k8.stall", "k8x4")
#: Bucket seeds of draw ``d`` are offset by ``d × DRAW_STRIDE`` (seeds below 1,000 never collide).
DRAW_STRIDE = 100_000


@dataclass(frozen=True)
class Row:
    name: str
    sizes: tuple[int, ...]
    network: sim.Network
    spread: float = 0.05
    apart: float = 0.0  # seconds between starts (instead of a random spread)
    stalls: float = 0.0  # stall intensity (1: 5 per second of 30 ms on average)


def _rows() -> list[Row]:
    net = sim.Network
    n20, n5 = net(base=0.02, jitter_mean=0.003), net(base=0.005, jitter_mean=0.002)
    return [
        Row("k4.150", (300,) * 4, net()),
        Row("k8.150", (300,) * 8, net()),
        Row("k4.020", (300,) * 4, n20),
        Row("k8.020", (300,) * 8, n20),
        Row("k2.005", (600,) * 2, n5),
        Row("k3.005", (400,) * 3, n5),
        Row("k4.005", (300,) * 4, n5),
        Row("k8.005", (300,) * 8, n5),
        Row("k4.jit", (300,) * 4, net(base=0.003, jitter_mean=0.01), spread=0.1),
        Row("k8.jit", (300,) * 8, net(base=0.003, jitter_mean=0.01), spread=0.1),
        Row("k8.sp3", (300,) * 8, net(), spread=0.33),
        Row("k8.sp3l", (300,) * 8, n5, spread=0.33),
        Row("k4.busy", (300,) * 4, net(busy_for=0.7, busy_delay=0.1)),
        Row("k8.busy", (300,) * 8, net(busy_for=0.7, busy_delay=0.1)),
        Row("k8.busyl", (300,) * 8, net(base=0.005, jitter_mean=0.002, busy_for=0.7, busy_delay=0.1)),
        Row("k4.stall", (300,) * 4, net(), stalls=1.0),
        Row("k8.stall", (300,) * 8, net(), stalls=1.0),
        Row("k8.stall2", (300,) * 8, net(), stalls=2.0),
        Row("stag2", (300,) * 4, net(), apart=2.0),
        Row("stag10", (300,) * 4, net(), apart=10.0),
        Row("stag1k8", (300,) * 8, net(), apart=1.0),
        Row("late2", (600,) * 2, net(), apart=5.0),
        Row("u4", (100, 200, 300, 400), net()),
        Row("u4l", (100, 200, 300, 400), n5),
        Row("u4x4", (400, 800, 1200, 1600), net()),
        Row("u4x10", (1000, 2000, 3000, 4000), net()),
        Row("stag10x4", (1200,) * 4, net(), apart=10.0),
        Row("k8x4", (1200,) * 8, net()),
    ]


#: Makes process ``i``'s bucket on the simulation clock (the trace swaps in one that records its turns).
BucketFactory = Callable[[int, sim.SimClock, int, AdaptiveParams], AdaptiveBucket]


def _adaptive(i: int, clock: sim.SimClock, seed: int, params: AdaptiveParams) -> AdaptiveBucket:
    return AdaptiveBucket(sim.LIMIT, clock=clock, seed=seed, params=params)


def simulate(
    row: Row, seed: int, params: AdaptiveParams, make: BucketFactory = _adaptive, draw: int = 0
) -> tuple[float, list[sim.Client], sim.Outcome]:
    """``(start time, clients, outcome)`` of one seed of one row (the buckets' random draws set
    ``draw``): the board's seeding of the starts, stalls and bucket seeds, shared with
    ``pacing_trace.py`` so that a traced seed is the board's."""
    clock = sim.SimClock()
    rng = random.Random(seed)
    clients = []
    for i, images in enumerate(row.sizes):
        start = row.apart * i if row.apart else rng.uniform(0.0, row.spread)
        bucket = make(i, clock, seed * 100 + i + draw * DRAW_STRIDE, params)
        client = sim.Client(i, bucket, images, start=start)
        if row.stalls:
            client.stalls = sim.stalls(
                rng, clock.now + start, per_second=5.0 * row.stalls, mean=0.03 * row.stalls
            )
        clients.append(client)
    first = clock.now
    return first, clients, sim.simulate(clients, clock, seed=seed, network=row.network, until=900)


def run(row: Row, seed: int, params: AdaptiveParams, draw: int = 0) -> tuple[float, float, bool]:
    """(aggregate ÷ limit, refused share, turns exact) of one seed of one row."""
    first, clients, outcome = simulate(row, seed, params, draw=draw)
    aggregate, refused, _ = sim.whole_run(outcome, first)
    buckets = [c.bucket for c in clients if isinstance(c.bucket, AdaptiveBucket)]
    ranks = {b.rank for b in buckets}
    exact = all(b.group == len(clients) for b in buckets) and len(ranks) == len(clients)
    return aggregate, refused, exact


def overrides_from(argv: list[str]) -> dict[str, Any]:
    """``AdaptiveParams`` overrides from ``name=value`` arguments, typed as the defaults are."""
    defaults = AdaptiveParams()
    return {
        key: type(getattr(defaults, key))(value) for key, value in (a.split("=", 1) for a in argv if "=" in a)
    }


def _met(aggregate: float, refused: float) -> bool:
    return aggregate >= TARGET_AGGREGATE and refused <= TARGET_THROTTLED


def _run_one(job: tuple[Row, int, int, AdaptiveParams]) -> tuple[str, int, int, tuple[float, float, bool]]:
    row, seed, draw, params = job
    return row.name, seed, draw, run(row, seed, params, draw)


def _option(argv: list[str], flag: str, default: int) -> tuple[int, list[str]]:
    if flag not in argv:
        return default, argv
    at = argv.index(flag)
    return int(argv[at + 1]), argv[:at] + argv[at + 2 :]


def main(argv: list[str]) -> None:
    overrides = overrides_from(argv)
    seeds, argv = _option(argv, "--seeds", SEEDS)
    draws, argv = _option(argv, "--draws", 1)
    jobs, argv = _option(argv, "--jobs", 1)
    only = [a for a in argv if "=" not in a]
    params = dataclasses.replace(AdaptiveParams(), **overrides)
    rows = [row for row in _rows() if not only or row.name in only]
    per = f"{seeds} seeds" + (f" × {draws} draws" if draws > 1 else "")
    print(f"AdaptiveParams overrides: {overrides or 'none'}; {per} per row")
    work = [
        (row, seed, draw, params) for row in rows for seed in range(1, seeds + 1) for draw in range(draws)
    ]
    if jobs > 1:
        with multiprocessing.Pool(jobs) as pool:
            done = pool.map(_run_one, work, chunksize=4)
    else:
        done = [_run_one(job) for job in work]
    results: dict[str, list[tuple[int, tuple[float, float, bool]]]] = {}
    for name, _, draw, result in done:
        results.setdefault(name, []).append((draw, result))
    medians, means = [], []
    equal_met = [0] * draws
    n = seeds * draws
    for row in rows:
        aggregates = [a for _, (a, _, _) in results[row.name]]
        refused = [r for _, (_, r, _) in results[row.name]]
        exact = sum(1 for _, (_, _, e) in results[row.name] if e)
        met = sum(1 for _, (a, r, _) in results[row.name] if _met(a, r))
        if row.name in EQUAL_START:
            for draw, (a, r, _) in results[row.name]:
                equal_met[draw] += _met(a, r)
        medians.append(statistics.median(aggregates))
        means.append(statistics.mean(aggregates))
        print(
            f"{row.name:9s} aggregate min {min(aggregates):.3f} mean {means[-1]:.3f}"
            f" median {medians[-1]:.3f}"
            f"   refused median {statistics.median(refused):5.1%} max {max(refused):5.1%}"
            f"   turns exact {exact:2d}/{n}   P8 met {met:2d}/{n}",
            flush=True,
        )
    if medians:
        print(
            f"mean of the medians: {statistics.mean(medians):.3f}; of the means: {statistics.mean(means):.3f}"
        )
    counted = [row.name for row in rows if row.name in EQUAL_START]
    if counted:
        print(
            f"P8 met, equal-start worlds ({len(counted)} here), per draw: "
            f"{', '.join(str(m) for m in equal_met)} of {len(counted) * seeds} (total {sum(equal_met)})"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
