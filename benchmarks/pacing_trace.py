"""One seed of one pacing-board world, traced: what each process's bucket did, and when.

The board (``benchmarks/pacing_board.py``) says which seeds of a world go badly; this says why. It
runs the same simulation (same rows, same seeding) with buckets that record every change of their
turns — a storm settled, a probe started or refused, a turn given up, a move, a halving — and
prints, in time order, the residues each held before and after, then (``--service T0,T1``) what the
service decided for every arrival in that span, with the grid slot and residue it fell in. Not part
of ``make bench``; a tool for reading a controller change's worst seeds.

    .venv/bin/python benchmarks/pacing_trace.py k8.005 15
    .venv/bin/python benchmarks/pacing_trace.py k8.005 15 --service 9.8,11.8
    .venv/bin/python benchmarks/pacing_trace.py k8.stall 4 max_probe_backoff=1
    .venv/bin/python benchmarks/pacing_trace.py k8.005 14 --draw 2   # the board's --draws 3, third

Times are seconds from the first process's start; ``8:[0, 5]p[5]`` is residues 0 and 5 of 8 held,
5 of them being probed.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pacing_board import _option, _rows, overrides_from, simulate

from airflow_mps.hooks._adaptive import AdaptiveBucket
from airflow_mps.hooks._pacing import AdaptiveParams, _slots
from tests import pacing_sim as sim

#: The bucket methods that change which turns it holds (the moments worth a line).
_TRACED = ("_settle", "_probe", "_probe_refused", "_give_up", "_move", "_halve")

Turns = tuple[int, tuple[int, ...], tuple[int, ...]]


@dataclass(frozen=True)
class Event:
    at: float
    process: int
    what: str
    before: Turns
    after: Turns


class TracedBucket(AdaptiveBucket):
    """An :class:`AdaptiveBucket` that records each change of its turns in ``events``."""

    def __init__(self, *args: Any, process: int, events: list[Event], origin: float, **kwargs: Any) -> None:
        self.process, self.events, self.origin = process, events, origin
        super().__init__(*args, **kwargs)

    def turns(self) -> Turns:
        return self._mod, tuple(sorted(self._held)), tuple(sorted(self._probing))


def _traced(name: str) -> Any:
    method = getattr(AdaptiveBucket, name)

    def record(self: TracedBucket, *args: Any, **kwargs: Any) -> Any:
        before = self.turns()
        result = method(self, *args, **kwargs)
        after = self.turns()
        if after != before:
            self.events.append(
                Event(self._clock() - self.origin, self.process, name.lstrip("_"), before, after)
            )
        return result

    return record


for _name in _TRACED:
    setattr(TracedBucket, _name, _traced(_name))


def show(turns: Turns) -> str:
    mod, held, probing = turns
    return f"{mod}:{list(held)}" + (f"p{list(probing)}" if probing else "")


def main(argv: list[str]) -> None:
    service_span: tuple[float, float] | None = None
    if "--service" in argv:
        at = argv.index("--service")
        first, last = argv[at + 1].split(",")
        service_span = float(first), float(last)
        argv = argv[:at] + argv[at + 2 :]
    draw, argv = _option(argv, "--draw", 0)
    overrides = overrides_from(argv)
    name, seed = (a for a in argv if "=" not in a)
    rows = {row.name: row for row in _rows()}
    if name not in rows:
        raise SystemExit(f"no world {name!r}; the board's worlds: {', '.join(rows)}")
    row, params = rows[name], dataclasses.replace(AdaptiveParams(), **overrides)
    events: list[Event] = []

    def traced(i: int, clock: sim.SimClock, bucket_seed: int, params: AdaptiveParams) -> TracedBucket:
        return TracedBucket(
            sim.LIMIT,
            clock=clock,
            seed=bucket_seed,
            params=params,
            process=i,
            events=events,
            origin=clock.now,
        )

    origin, clients, outcome = simulate(row, int(seed), params, traced, draw)
    aggregate, refused, spread = sim.whole_run(outcome, origin)
    print(
        f"{name} seed {seed}{f' draw {draw}' if draw else ''}, overrides {overrides or 'none'}: aggregate {aggregate:.3f} of the limit, "
        f"{refused:.1%} refused, completion spread {spread:.1f} s"
    )
    for client in clients:
        b = client.bucket
        assert isinstance(b, TracedBucket)
        places = [t % b.group for t in b.tickets_seen] if b.group else []
        print(
            f"  process {b.process}: group {b.group} (estimate {b.estimate}), rank {b.rank}, tickets "
            f"{b.tickets_seen} (mod group {places}); cuts {b.cuts}, moves {b.moves}, probes {b.probes} "
            f"({b.failed_probes} refused)"
        )
    for event in events:
        print(
            f"{event.at:8.2f}  p{event.process}  {event.what:13s} {show(event.before)} -> {show(event.after)}"
        )
    if service_span is not None:
        # The grid slot a request was sent in (its arrival less the base delay), and its residue
        # modulo the number of processes (the turns of equal starts).
        width = params.window * (1.0 + params.shared_margin) / _slots(sim.LIMIT, params.window)
        k = len(clients)
        for arrived, process, accepted in outcome.service.log:
            if service_span[0] <= arrived - origin <= service_span[1]:
                slot = math.floor((arrived - row.network.base) / width)
                verdict = "accepted" if accepted else "REFUSED"
                print(
                    f"{arrived - origin:8.3f}  p{process}  slot {slot} (residue {slot % k} of {k})  {verdict}"
                )


if __name__ == "__main__":
    main(sys.argv[1:])
