"""Client-side pacing of MPS API calls: a process-wide, thread-safe bucket per account and action.

MPS limits each account (uin) per action (ProcessImage 20/s, Describe* 100/s), counting the requests
it accepted in a sliding one-second window; a refused request (``RequestLimitExceeded``) costs a round
trip and a backoff. Pacing keeps us under the limit in the first place. Buckets hand out
*reservations* — the delay the caller must wait before sending — so one object serves threads
(``time.sleep``) and coroutines (``asyncio.sleep``) without a lock held while waiting.

Buckets are shared by every hook in the process that uses the same SecretId and endpoint (the limit
is per account). Separate processes — several Airflow workers, the runs of a backfill — cannot see
each other's buckets. The default bucket is ``_adaptive.AdaptiveBucket`` (issue 13; the idea of
botocore's ``adaptive`` retry mode, a client that follows what the service answers), which reads the
service's refusals to find the other processes and take turns with them; ``AIRFLOW_MPS_PACING=fixed``
selects :class:`TokenBucket` at ``HEADROOM`` of the connection's rate. The configured rate is the
ceiling either way. ``_buckets`` keeps the process-wide registry of both kinds.

The hook's side of the contract::

    bucket.acquire()                     # or: await bucket.aacquire()
    sent_at = bucket.now()
    ...send...
    bucket.on_success(sent_at)           # answered, and not a throttle
    bucket.on_throttled(sent_at, error.message)   # answered RequestLimitExceeded*

Internally ``acquire`` is ``_reserve`` (a delay and a ticket), a wait, and ``_claim(ticket)``: send
now (``0.0``), reserve again (``None``: the reservation was voided), or wait a little more.
"""

from __future__ import annotations

import math
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal

from airflow_mps.steps import adrive, drive

#: Fraction of the configured rate a fixed bucket paces at. The service counts requests in a sliding
#: one-second window; pacing at exactly the limit lets thread scheduling and network jitter put a 21st
#: request into some window (measured: ~4 throttles per 100 submissions at 100 %). At 97 % twenty
#: requests span 1.03 s, absorbing ~30 ms of jitter. An adaptive bucket alone instead starts at a 1 %
#: margin, narrows it while nothing is refused (to 0.5 %) and widens it when jitter shows.
HEADROOM = 0.97

# The documented throttle message: "Your current request times equals to `21` in a second, which
# exceeds the frequency limit `20` for a second." (docs: /work/shared/reference/mps-api.md §5.4).
_THROTTLE_COUNTS = re.compile(r"equals to\D*(\d+)\D+?limit\D*(\d+)", re.IGNORECASE)


def throttle_counts(message: str | None) -> tuple[int, int] | None:
    """``(requests seen in the window, limit)`` from a ``RequestLimitExceeded`` message, or None.

    The service says how many requests of the account it counted in the window (accepted and
    refused) and the limit: ``(21, 20)`` after a one-request overshoot, ``(160, 20)``-ish when eight
    processes each send at the full rate.
    """
    if not message:
        return None
    match = _THROTTLE_COUNTS.search(message)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


class TokenBucket:
    """Thread-safe rate limiter handing out send times at most ``rate`` per second (fixed pacing).

    ``burst`` is how many calls may go back to back after an idle period (default 1: evenly spaced,
    which keeps every 1-second window at or under ``rate``). A ledger of the most recent grant times
    is kept so tests and benchmarks can count grants per window (a grant is recorded when the caller
    sends: ``acquire`` after its wait, or ``reserve``, which commits at once). ``on_success``/``on_throttled``
    exist so the hook can report outcomes to any bucket; a fixed bucket ignores them.
    """

    #: Whether this bucket adapts (its rate is then the configured rate, a ceiling).
    adaptive: ClassVar[bool] = False

    def __init__(
        self,
        rate: float,
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
        ledger_size: int = 10_000,
    ) -> None:
        _check_rate(rate)
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst!r}")
        self._lock = threading.Lock()
        self._clock = clock
        self._rate = float(rate)
        self._burst = int(burst)
        self._tat = 0.0  # theoretical arrival time of the next call
        self.ledger: deque[float] = deque(maxlen=ledger_size)
        #: Bumped when reservations handed out earlier must be re-made (an adaptive bucket's pause).
        self.epoch = 0
        #: Outcomes reported by the hook (for benchmarks and logs).
        self.successes = 0
        self.throttles = 0

    @property
    def rate(self) -> float:
        """Calls per second this bucket allows now."""
        return self._rate

    @property
    def ceiling(self) -> float:
        """The configured rate (a fixed bucket's rate is its ceiling)."""
        return self._rate

    def now(self) -> float:
        """This bucket's clock (``time.monotonic`` unless a test injected another)."""
        return self._clock()

    def set_rate(self, rate: float) -> None:
        """Change the rate (e.g. a connection edited to another ``process_image_rate``)."""
        _check_rate(rate)
        with self._lock:
            self._retime(float(rate))

    def _retime(self, rate: float) -> None:
        """Switch to ``rate`` (lock held): the next slot is one *new* interval after the last one."""
        if rate == self._rate:
            return
        self._tat += 1.0 / rate - 1.0 / self._rate
        self._rate = rate

    def reserve(self) -> float:
        """Reserve the next slot and commit to sending in it; return how many seconds the caller must
        wait before sending (recorded in the ledger at its send time)."""
        delay, ticket = self._reserve()
        with self._lock:
            if self.still_valid(ticket):
                self.ledger.append(self._clock() + delay)
        return delay

    def _reserve(self) -> tuple[float, Any]:
        """``(delay, ticket)``: ``still_valid(ticket)`` says after the wait whether to send."""
        return self._reserve_slot(), self.epoch

    def still_valid(self, ticket: Any) -> bool:
        """Whether a reservation made with ``ticket`` may still be used (nothing voided it since)."""
        return bool(ticket == self.epoch)

    def _claim(self, ticket: Any) -> float | None:
        """After the wait: ``0.0`` — send now (the send goes in the ledger); ``None`` — the
        reservation was voided, reserve again; more — wait that many seconds, then claim again."""
        with self._lock:
            if not self.still_valid(ticket):
                return None
            self.ledger.append(self._clock())
            return 0.0

    def _reserve_slot(self) -> float:
        with self._lock:
            now = self._clock()
            interval = 1.0 / self._rate
            tolerance = (self._burst - 1) * interval
            tat = max(self._tat, now)
            send_at = max(now, tat - tolerance)
            self._tat = tat + interval
            return send_at - now

    def acquire(self, sleep: Callable[[float], None] | None = None) -> float:
        """Block the calling thread until its slot; return the time waited (``sleep``: ``time.sleep``
        unless a test passes a fake; looked up per call, never bound at import).

        A reservation voided while waiting (the bucket paused, or gave up the slot it was in) is
        dropped and a new one made: it was planned for a rate the service has since refused.
        """
        return drive(self._waits(), lambda delay: (sleep or time.sleep)(delay))

    async def aacquire(self) -> float:
        """Wait (without blocking the event loop) until the caller's slot; return the time waited."""
        import asyncio

        return await adrive(self._waits(), asyncio.sleep)

    def _waits(self) -> Generator[float, None, float]:
        """``acquire`` as a step machine: yields each wait (seconds), returns the time waited in all."""
        waited = 0.0
        delay, ticket = self._reserve()
        while True:
            if delay > 0:
                yield delay
                waited += delay
            claimed = self._claim(ticket)
            if claimed is None:
                delay, ticket = self._reserve()
            elif claimed > 0:
                delay = claimed
            else:
                return waited

    def on_success(self, sent_at: float | None = None) -> None:
        """The service answered a call paced by this bucket (anything but a throttle)."""
        with self._lock:
            self.successes += 1

    def on_throttled(self, sent_at: float | None = None, message: str | None = None) -> None:
        """The service answered ``RequestLimitExceeded*`` to a call sent at ``sent_at`` (``now()``)."""
        with self._lock:
            self.throttles += 1

    def max_in_window(self, window: float = 1.0) -> int:
        """Largest number of grants in any half-open window of ``window`` seconds (from the ledger)."""
        return most_in_window(self.ledger, window)


def most_in_window(times: Iterable[float], window: float = 1.0) -> int:
    """Largest number of ``times`` in any half-open window of ``window`` seconds."""
    ordered = sorted(times)
    best = 0
    start = 0
    for end, t in enumerate(ordered):
        while t - ordered[start] >= window - 1e-9:  # float tolerance on the boundary
            start += 1
        best = max(best, end - start + 1)
    return best


@dataclass(frozen=True)
class AdaptiveParams:
    """Tuning of :class:`AdaptiveBucket`. The defaults come from the simulation in
    ``tests/unit/hooks/test_pacing_sim.py`` and bench P1/P8 (docs/performance.md); times are seconds."""

    #: The service's counting window.
    window: float = 1.0
    #: Jitter margin while alone: the period is ``window × (1 + margin)``. Starts at ``start_margin``,
    #: narrows by ``margin_decay`` per second of quiet down to ``min_margin``, and widens by
    #: ``margin_step`` (up to ``max_margin``) when a throttle shows jitter, not company.
    start_margin: float = 0.01
    #: A caller that wakes up more than ``late`` of a slot after its reservation reserves again;
    #: alone, one may be held back up to ``hold_back`` of a slot so that it reaches the service a
    #: window after the request ``limit`` sends before it (see ``_claim``).
    late: float = 1.5
    hold_back: float = 1.0
    #: A fresh bucket keeps at most ``start_window`` requests unanswered until two answers in a row
    #: took about as long (within ``steady`` of each other); then only the rate paces. A host too
    #: busy to answer — every process of a backfill starting at once on a small machine, answers
    #: seconds late and out of order — is not sent a storm it would scramble: the processes meet in
    #: the service's window once it answers steadily, and their counts there say who they are.
    #: Alone it costs about one round trip at a fraction of the rate.
    start_window: int = 2
    steady: float = 0.5
    min_margin: float = 0.005
    max_margin: float = 0.10
    margin_step: float = 0.005
    margin_decay: float = 0.001
    #: A throttle is "alone" when at most ``alone_others`` of the window's requests were not ours
    #: (counting ours over the window + ``jitter``, the delay spread that squeezed them together).
    alone_others: int = 1
    jitter: float = 0.1
    #: ... and when no more than ``alone_refusals`` refusals came back in the last window (jitter is
    #: rare; a steady trickle of refusals is another process however full of ours the window is).
    alone_refusals: int = 2
    #: Margin of the common slot grid once the account is shared (must be the same in every process).
    shared_margin: float = 0.015
    #: Within a slot a process sends later the larger its share (log scale, up to ``max_yield``), so
    #: that in a contest the smaller holder's request arrives first; ``tie_break`` is a random offset
    #: per bucket (equal holders: one of them wins consistently), ``probe_delay`` what a probe adds
    #: (an equal holder keeps its slot against a probe).
    max_yield: float = 0.010
    tie_break: float = 0.001
    probe_delay: float = 0.005
    #: How many intervals of our storm tickets (from the first) measure the group and our rank; a
    #: storm sends that many after its first refusal if fewer were in flight. Seven, not three: two
    #: neighbours whose requests arrive in either order read their places from more intervals, and
    #: the group from a longer growth (simulated, 8 × 300 images, 30 seeds a world: every process
    #: read the group and a rank of its own in 26 seeds of 30 at 150 ms, was 20); each storm costs
    #: four more refusals per process.
    gaps: int = 7
    #: A throttle counting ``storm_factor × limit`` requests on the grid is another process's storm
    #: (it stops by itself within a second): nothing is given up for it.
    storm_factor: float = 1.5
    #: A slot is lost when three of its instances, evenly spaced, were refused within twice
    #: ``max(loss_span instances, loss_windows windows)`` (jitter refuses one here and there; a
    #: latecomer's one slot per window is lost once a window). A bucket that lost its only slot
    #: tries ``max_moves`` others before halving it.
    loss_span: int = 4
    loss_windows: int = 4
    max_moves: int = 3
    #: The finest grain a bucket refines its slots to, in windows (modulus ≤ ``max_mod × limit``):
    #: one slot per window, a latecomer's. Finer grains (4 windows before) came mostly from two
    #: processes sharing a turn, whose losses fall at random and can look periodic: each kept most
    #: of the turn and neither moved (simulated, 8 × 300 at 20 ms, 30 seeds: P8's targets met in 21,
    #: was 10).
    max_mod: int = 1
    #: On the grid, ``crowd_refusals`` refusals or more in ``crowd_window`` seconds, and at least
    #: ``crowd_fraction`` of what we sent then, halve what we hold (shares that add up to more than
    #: the limit shrink fast; probes grow them back where there is room).
    crowd_window: float = 2.0
    crowd_refusals: int = 3
    crowd_fraction: float = 0.25
    #: Probing: the wait before taking more is ``probe_interval × sqrt(share)`` (× 0.5–1.5 at random),
    #: doubled after every refused probe, within [``min_probe_interval``, ``max_probe_interval``];
    #: after a probe kept, ``min_probe_interval``.
    probe_interval: float = 45.0
    #: ... times ``guess_probe`` when our share was a guess (no group could be measured).
    guess_probe: float = 0.25
    #: After a storm that measured its group, the first probe waits at least ``storm_quiet`` (× 0.5–1.5
    #: at random) seconds: every process of the group holds its share and none has finished yet, so
    #: a probe then can only be kept by feeding on a passing hole, pushing a neighbour off its turn
    #: (pacing board, sixty seeds under four sets of draws: P8's targets met in the eight equal-start
    #: worlds 1,531 -> 1,613 of 1,920, mean of the means 0.901 -> 0.907; docs/performance.md).
    storm_quiet: float = 40.0
    #: A probe is kept once this many of its instances in a row were accepted — and each of its
    #: residues over a window's slots (one residue of 4 stands for 5 slots of 20, any of which a
    #: latecomer may hold); a probe of 4 residues at one slot per window is kept in one window.
    probe_confirm: int = 3
    min_probe_interval: float = 0.3
    #: Refused probes in a row double the wait at most this many times: a full account refuses every
    #: probe, and the wait must stay short enough to find the room others leave when they finish.
    #: A bucket holding less than ``1 / group`` (squeezed by a contest or a crowd) does not back off.
    max_probe_backoff: int = 2
    max_probe_interval: float = 120.0
    #: The refusal budget: every call accepted earns ``probe_budget`` of a token (up to
    #: ``probe_tokens``), every call refused spends one (down to ``-probe_debt``: a start-up storm
    #: is paid back, not carried through the whole run); with a token in hand a bucket may probe
    #: every ``budget_probe_interval`` (× 0.5–1.5) seconds whatever its back-off. A burst's refused
    #: share stays near ``probe_budget`` where the back-off alone would let room stand idle.
    probe_budget: float = 0.03
    probe_tokens: float = 4.0
    probe_debt: float = 8.0
    budget_probe_interval: float = 2.0
    #: A bucket idle this long forgets what it learned (the next burst starts afresh).
    idle_reset: float = 30.0


#: The group sizes a storm's measurement is rounded to (nearest, on a log scale). Jitter moves the
#: measurement by about one at sizes around 8 — 7.3 where there are 8 — and every process of the
#: group must agree; a backfill's runs (``max_active_runs``) come in sizes like these. A group of
#: another size (7, 9, ...) settles by probing and the crowding rule instead of exactly.
GROUP_SIZES = (2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128)


def measure_group(
    tickets: list[tuple[float, int]], ours: Sequence[float], gaps: int, incumbent: bool
) -> tuple[int | None, float | None]:
    """``(group size, raw estimate)`` from a storm's ``(sent, seen)`` tickets, sorted by send time:
    the growth of the service's count from our first ticket to our last (at most ``gaps`` later)
    per request of ours (send times ``ours``) in between, plus one if we had filled the window alone
    (our old requests left it as fast as we sent); summing over intervals evens out jitter. The
    size is None with too few tickets, or with a growth of one per request of ours although we had
    not filled the window (we came late to a full one)."""
    if not tickets:
        return None, None
    first = tickets[0]
    for last in reversed(tickets[1 : gaps + 1]):
        between = sum(1 for t in ours if first[0] < t <= last[0])
        if between > 0 and last[1] > first[1]:
            estimate = (last[1] - first[1]) / between + (1.0 if incumbent else 0.0)
            if estimate < 1.5:
                return None, round(estimate, 2)
            return min(GROUP_SIZES, key=lambda size: abs(math.log(size / estimate))), round(estimate, 2)
    return None, None


def storm_rank(
    tickets: list[tuple[float, int]], group: int, gaps: int, rng: random.Random
) -> tuple[int, list[int]]:
    """``(rank, other places)`` from a storm's ``(sent, seen)`` tickets, sorted by send time: our
    usual place (``seen mod group``) after the first interval — where each first refusal lands ahead
    of or behind a neighbour's — if it repeats, else the first ticket's place (at random with no
    ticket); the other places the tickets showed, in order, are where to move if the turn is lost."""
    seen = [t % group for _, t in tickets[: gaps + 1]] or [rng.randrange(group)]
    later = seen[1:]
    usual = max(later, key=later.count, default=seen[0])
    rank = usual if later.count(usual) > 1 else seen[0]
    return rank, [r for r in dict.fromkeys(seen) if r != rank]


#: What a bucket is doing, as :class:`PacingState` names it.
PacingMode = Literal["fixed", "alone", "measuring", "turns", "late"]


@dataclass(frozen=True)
class PacingState:
    """How this process paces one API action, as ``_buckets.pacing_state`` read it: what a batch reports
    when it has submitted, so that a batch that ran slowly because others shared the account says so.

    ``mode`` is ``"fixed"`` (``AIRFLOW_MPS_PACING=fixed``), ``"alone"`` (the whole limit),
    ``"measuring"`` (a storm: other processes were just found, their number is being read), ``"turns"``
    (sharing after a storm: ``group`` processes, ``measured`` or — too few tickets — guessed) or
    ``"late"`` (it came to an account others kept full: a small share, probing for more). The counts
    (answers the bucket was told of: accepted, throttled) are since the bucket was made, or since an
    earlier state of the same bucket with :meth:`since`.
    """

    action: str
    mode: PacingMode
    #: Calls per second it sends at now, and the connection's rate (fixed pacing: the pace).
    rate: float
    ceiling: float
    share: float
    group: int | None
    measured: bool
    accepted: int
    throttled: int
    storms: int
    #: Which bucket this was read from (a registry reset between two states makes a new one).
    bucket: int = field(default=0, compare=False, repr=False)

    def since(self, earlier: PacingState | None) -> PacingState | None:
        """This state with the counts since ``earlier``; None when they cannot be told apart (no
        earlier state, or one of another bucket) — never the counts of something else."""
        if earlier is None or earlier.bucket != self.bucket:
            return None
        delta = replace(
            self,
            accepted=self.accepted - earlier.accepted,
            throttled=self.throttled - earlier.throttled,
            storms=self.storms - earlier.storms,
        )
        return delta if min(delta.accepted, delta.throttled, delta.storms) >= 0 else None

    def describe(self) -> str:
        """One line for a task log, e.g. ``sharing the account (the last storm found 4 processes):
        25% of the 20/s limit, 4.9/s; ProcessImage: 300 accepted, 9 throttled (2.9%); 1 storm``."""
        limit = f"{self.ceiling:g}/s"
        if self.mode == "fixed":
            how = f"fixed pacing at {self.rate:.1f}/s (AIRFLOW_MPS_PACING=fixed)"
        elif self.mode == "alone":
            how = f"alone on the account at {self.rate:.1f}/s (limit {limit})"
        elif self.mode == "measuring":
            how = "other processes just found on the account, measuring how many (a storm)"
        elif self.mode == "turns":
            found = (
                f"the last storm found {self.group} processes"
                if self.measured
                else f"a storm too short to measure, taken as {self.group} processes"
            )
            how = f"sharing the account ({found}): {self.share:.0%} of the {limit} limit, {self.rate:.1f}/s"
        else:
            how = (
                f"came to an account others kept full: {self.share:.0%} of the {limit} limit, "
                f"{self.rate:.1f}/s, probing for more (batches that start seconds apart share "
                "unevenly: docs/batch.md, Pools)"
            )
        answered = self.accepted + self.throttled
        counts = f"{self.action}: {self.accepted} accepted, {self.throttled} throttled"
        if answered:
            counts += f" ({self.throttled / answered:.1%})"
        storms = f"; {self.storms} storm{'' if self.storms == 1 else 's'}" if self.storms else ""
        return f"{how}; {counts}{storms}"


def _slots(ceiling: float, window: float) -> int:
    return max(1, math.ceil(ceiling * window - 1e-9))


def _check_rate(rate: float) -> None:
    if rate <= 0:
        raise ValueError(f"rate must be > 0 requests/second, got {rate!r}")
