"""Client-side pacing of MPS API calls: a process-wide, thread-safe bucket per account and action.

MPS limits each account (uin) per action (ProcessImage 20/s, Describe* 100/s), counting the requests
it accepted in a sliding one-second window; a refused request (``RequestLimitExceeded``) costs a round
trip and a backoff. Pacing keeps us under the limit in the first place. Buckets hand out
*reservations* — the delay the caller must wait before sending — so one object serves threads
(``time.sleep``) and coroutines (``asyncio.sleep``) without a lock held while waiting.

Buckets are shared by every hook in the process that uses the same SecretId and endpoint (the limit
is per account). Separate processes — several Airflow workers, the runs of a backfill — cannot see
each other's buckets. The default bucket is fixed (:class:`TokenBucket` at ``HEADROOM`` of the
connection's rate; separate processes overlap and the throttling retry absorbs it).
``AIRFLOW_MPS_PACING=adaptive`` selects :class:`AdaptiveBucket` (issue 13; the idea of botocore's
``adaptive`` retry mode, a client that follows what the service answers), which reads the service's
refusals to find the other processes and take turns with them. The configured rate is the ceiling
either way.

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
import os
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Fraction of the configured rate a fixed bucket paces at. The service counts requests in a sliding
#: one-second window; pacing at exactly the limit lets thread scheduling and network jitter put a 21st
#: request into some window (measured: ~4 throttles per 100 submissions at 100 %). At 97 % twenty
#: requests span 1.03 s, absorbing ~30 ms of jitter. An adaptive bucket alone instead starts at a 2 %
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
        waited = 0.0
        delay, ticket = self._reserve()
        while True:
            if delay > 0:
                (sleep or time.sleep)(delay)
                waited += delay
            claimed = self._claim(ticket)
            if claimed is None:
                delay, ticket = self._reserve()
            elif claimed > 0:
                delay = claimed
            else:
                return waited

    async def aacquire(self) -> float:
        """Wait (without blocking the event loop) until the caller's slot; return the time waited."""
        import asyncio

        waited = 0.0
        delay, ticket = self._reserve()
        while True:
            if delay > 0:
                await asyncio.sleep(delay)
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
        times = sorted(self.ledger)
        best = 0
        start = 0
        for end, t in enumerate(times):
            while t - times[start] >= window - 1e-9:  # float tolerance on the boundary
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
    #: How many intervals of our storm tickets (from the first) measure the group.
    gaps: int = 3
    #: A throttle counting ``storm_factor × limit`` requests on the grid is another process's storm
    #: (it stops by itself within a second): nothing is given up for it.
    storm_factor: float = 1.5
    #: A slot is lost when three of its instances, evenly spaced, were refused within twice
    #: ``max(loss_span instances, max_mod windows)`` (jitter refuses one here and there). A bucket
    #: that lost its only slot tries ``max_moves`` others before halving it.
    loss_span: int = 4
    max_moves: int = 3
    #: The finest grain a bucket refines its slots to, in windows (modulus ≤ ``max_mod × limit``).
    max_mod: int = 4
    #: On the grid, ``crowd_refusals`` refusals or more in ``crowd_window`` seconds, and at least
    #: ``crowd_fraction`` of what we sent then, halve what we hold (shares that add up to more than
    #: the limit shrink fast; probes grow them back where there is room).
    crowd_window: float = 2.0
    crowd_refusals: int = 3
    crowd_fraction: float = 0.25
    #: Probing: the wait before taking more is ``probe_interval × sqrt(share)`` (× 0.5–1.5 at random),
    #: doubled after every refused probe and halved after every probe kept, within
    #: [``min_probe_interval``, ``max_probe_interval``].
    probe_interval: float = 45.0
    #: ... times ``guess_probe`` when our share was a guess (no group could be measured).
    guess_probe: float = 0.25
    #: A probed slot is kept once this many of its instances in a row were accepted.
    probe_confirm: int = 3
    min_probe_interval: float = 0.3
    max_probe_interval: float = 120.0
    #: A bucket idle this long forgets what it learned (the next burst starts afresh).
    idle_reset: float = 30.0


#: The group sizes a storm's measurement is rounded to (nearest, on a log scale). Jitter moves the
#: measurement by about one at sizes around 8 — 7.3 where there are 8 — and every process of the
#: group must agree; a backfill's runs (``max_active_runs``) come in sizes like these. A group of
#: another size (7, 9, ...) settles by probing and the crowding rule instead of exactly.
GROUP_SIZES = (2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128)

_HOLD = "hold"
_OPEN = 1 << 30  # no cap on unanswered requests


class AdaptiveBucket(TokenBucket):
    """A pacer that shares one account's limit with other processes it cannot see (issue 13).

    The service refuses a request when ``limit`` requests were accepted in the last ``window``, and
    its refusal says how many requests it counted in that window, accepted and refused: within a
    second every arrival raises the count by one, so a refusal's count is a **ticket** — a number no
    other request in that window holds. The bucket has three ways of sending:

    * **Alone** (the start, and whenever it holds the whole limit): evenly spaced at ``ceiling ÷ (1
      + margin)``; the margin follows jitter (narrows while nothing is refused, widens when a refusal
      counts only our own requests). A request is held back, up to half a slot, until the one
      ``limit`` sends before it is surely out of the service's window, counting that one as late as
      its answer was slower than usual. A fresh bucket keeps two requests unanswered until two
      answers in a row took about as long (slow start): a host too busy to answer is not stormed.
    * **Storm** (a refusal whose count shows other processes): K processes that started together at
      the full rate each send one request per interval, so our consecutive tickets are K apart and
      the K tickets of one interval are consecutive numbers. The group size is the count's growth
      per request of ours over up to ``gaps`` intervals, rounded to the nearest of
      :data:`GROUP_SIZES`; our rank is our usual ``ticket mod K``. The bucket sends nothing until
      its requests have aged out of the window (counted at when they reached the service), then
      takes turn ``rank`` of ``K``. A count that grew by one per request of ours means the account
      was already full (we came late): one slot per window, then probing.
    * **Shared** (the grid): every process cuts wall-clock time into the same slots, ``window × (1 +
      shared_margin) ÷ limit`` wide, numbered from the epoch. A bucket holds residues ``H`` modulo
      ``M`` and sends only in slots ``g`` with ``g mod M`` in ``H``; after a storm ``M = K`` and
      ``H = {rank}``: K processes take turns, ``limit ÷ K`` each, no two in one slot, never more
      than the limit in any window, so they finish together and nothing is refused but jitter.

    **Contests.** Two requests in one slot: the service keeps the first. Within a slot a bucket sends
    later the larger its share, so the smaller holder wins. Three refusals of one residue, evenly
    spaced, mean another process sends there on that period: the bucket leaves it that slot (the
    finer grain, if the period is not ours), or — its only residue — moves to another (its tickets
    name candidates) and halves after ``max_moves`` refused moves. A refusal counting
    ``storm_factor × limit`` is somebody's storm and costs nothing; refusals of more than
    ``crowd_fraction`` of what we sent halve what we hold (shares that add up to more than the
    limit: a group measured wrong).

    **Probing.** Holding less than everything, now and then take more residues (small holders more
    often); a probe refused is given back and the next waits twice as long; a probe accepted
    ``probe_confirm`` times in a row is kept, and the next comes twice as fast and takes twice as
    much (a process that finished frees its turns: the others find them). Holding every residue,
    the bucket is alone again.

    Feedback comes from the hook: ``on_success(sent_at)``, ``on_throttled(sent_at, message)``
    (``sent_at`` = ``now()`` just after ``acquire``; the message is the service's, whose count is
    read by :func:`throttle_counts`). Thread- and asyncio-safe: state changes under one lock, no
    lock is held while waiting. The clock is wall time by default so that processes (and hosts,
    NTP-synced) share the grid.
    """

    def __init__(
        self,
        ceiling: float,
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.time,
        ledger_size: int = 10_000,
        params: AdaptiveParams | None = None,
        seed: int | None = None,
    ) -> None:
        _check_rate(ceiling)
        super().__init__(ceiling, burst, clock=clock, ledger_size=ledger_size)
        self.params = params or AdaptiveParams()
        self._rng = random.Random(seed)
        self._slots = _slots(ceiling, self.params.window)
        self._tie = self._rng.uniform(0.0, self.params.tie_break)
        #: Counters for benchmarks and logs.
        self.storms = 0
        self.cuts = 0
        self.moves = 0
        self.widenings = 0
        self.probes = 0
        self.failed_probes = 0
        self._start(clock())

    def _start(self, now: float) -> None:
        """Forget everything learned: alone, at the full ceiling (lock held, or from ``__init__``)."""
        p = self.params
        self._alone = True
        self._mod = 1
        self._held: frozenset[int] = frozenset({0})
        self._order: list[int] = [0]
        self._margin = self._margin_base = p.start_margin
        self._margin_at = now
        self._last_widen = -math.inf
        self._last_grant = -math.inf
        self._last_slot = -1  # the grid slot of the latest reservation
        self._window_cap = p.start_window
        self._granted: list[float] = []  # send times reserved, not yet claimed (while it is closed)
        self._answered: deque[float] = deque(maxlen=256)  # sent_at of recent answers
        self._refusals: deque[float] = deque(maxlen=64)  # when recent refusals came back
        self._crowd: deque[float] = deque(maxlen=64)  # sent_at of recent refusals on the grid
        self._hold_until = -math.inf
        self._tickets: list[tuple[float, int]] | None = None  # a storm's (sent, seen)
        self._incumbent = False  # we had the window to ourselves when the storm began
        self._guessed = False  # our share was guessed, not measured
        self._latencies: deque[float] = deque(maxlen=64)  # recent round trips
        self._trips: deque[tuple[float, float]] = deque(maxlen=64)  # (sent, round trip) of recent answers
        self._group: int | None = None
        self._rank: int | None = None
        self._candidates: list[int] = []
        self._lost: dict[int, list[int]] = {}
        self._moving = 0
        self._lost_slot: tuple[int, int | None] = (0, None)
        self._probing: frozenset[int] = frozenset()
        self._probe_ok: dict[int, int] = {}
        self._wins = 0
        self._fails = 0
        self._next_probe = math.inf

    # ---- state ------------------------------------------------------------------------------
    @property
    def share(self) -> float:
        """The fraction of the limit this bucket sends at now (1.0 alone)."""
        return len(self._held) / self._mod

    @property
    def budget(self) -> float:
        """Requests per window this bucket sends now (``share × limit``)."""
        return round(self.share * self._slots, 3)

    @property
    def group(self) -> int | None:
        """The group size measured at the last storm (None before any)."""
        return self._group

    @property
    def pacing_rate(self) -> float:
        """Calls per second this bucket sends at now (at most ``rate``)."""
        p = self.params
        margin = self._margin if self._alone else p.shared_margin
        return self.share * self._slots / (p.window * (1.0 + margin))

    def shared(self) -> bool:
        """Whether the bucket paces on the common grid (other processes were seen)."""
        return not self._alone

    def _width(self) -> float:
        p = self.params
        return p.window * (1.0 + p.shared_margin) / self._slots

    def _hold(self, mod: int, held: frozenset[int] | set[int]) -> None:
        """Hold residues ``held`` modulo ``mod`` (never none: a bucket always keeps one slot). A new
        modulus renames every slot: what was lost or probed under the old one is forgotten."""
        if mod != self._mod:
            self._lost.clear()
            self._probing = frozenset()
            self._moving = 0
        self._mod = mod
        self._held = frozenset(held) or frozenset({self._rng.randrange(mod)})
        self._probing &= self._held
        self._order = sorted(self._held)

    def set_rate(self, rate: float) -> None:
        """Change the ceiling (a connection edited to another ``process_image_rate``): start afresh."""
        _check_rate(rate)
        with self._lock:
            self._rate = float(rate)
            self._slots = _slots(rate, self.params.window)
            self._start(self._clock())
            self.epoch += 1

    # ---- reservations -------------------------------------------------------------------------
    def _reserve(self) -> tuple[float, Any]:
        with self._lock:
            now = self._clock()
            p = self.params
            if self._last_grant > now + 60.0:  # the wall clock stepped back: start afresh
                self._last_grant = -math.inf
            elif now - self._last_grant > p.idle_reset and now > self._hold_until + p.idle_reset:
                self._start(now)  # idle for a while: what we learned may be stale
            if now < self._hold_until:  # a storm's window is draining: wait, then reserve again
                return self._hold_until - now, (self.epoch, _HOLD, 0, self._hold_until)
            self._settle(now)
            # Never `limit` + 1 sends in one window, counting from when they really went out: a
            # send that left late (a thread that woke late) pushes the one a window after it.
            earliest = max(now, self._last_grant + 1e-6)
            if len(self.ledger) >= self._slots:
                margin = self._margin if self._alone else p.shared_margin
                earliest = max(earliest, self._arrived(self.ledger[-self._slots]) + p.window * (1 + margin))
            residue: int | None = None
            if self._alone:
                period = p.window * (1.0 + self._margin)
                if (
                    self._window_cap < _OPEN
                    and self._unanswered(now) + len(self._granted) >= self._window_cap
                ):
                    # slow start: wait for answers (a fraction of a slot, then reserve again)
                    return 0.25 * p.window / self._slots, (self.epoch, _HOLD, 0, now)
                send_at = max(earliest, self._last_grant + period / self._slots)
                if self._window_cap < _OPEN:
                    self._granted.append(send_at)
            else:
                send_at, residue = self._next_slot(earliest)
            self._last_grant = send_at
            return send_at - now, (self.epoch, residue, self._mod, send_at)

    def _next_slot(self, earliest: float) -> tuple[float, int]:
        """The first instance, at or after ``earliest``, of a slot we hold (with our offset in it)."""
        width = self._width()
        mod = self._mod
        base = self._yield_offset() + self._tie
        cycle = math.floor(earliest / width) // mod
        while True:
            for r in self._order:
                slot = cycle * mod + r
                offset = base + (self.params.probe_delay if r in self._probing else 0.0)
                t = slot * width + min(offset, 0.45 * width)
                if t >= earliest and slot > self._last_slot:  # offsets change; slots never repeat
                    self._last_slot = slot
                    return t, r
            cycle += 1

    def _yield_offset(self) -> float:
        """Later in the slot the larger our share (log scale): the smaller holder wins a contest. A
        probe competes at the share we had before it."""
        held = len(self._held) - len(self._probing)
        if held <= 0 or self._slots <= 1:
            return 0.0
        scale = 1.0 + math.log(held / self._mod) / math.log(self._slots)
        return self.params.max_yield * min(1.0, max(0.0, scale))

    def still_valid(self, ticket: Any) -> bool:
        """A reservation stays good unless the bucket paused or gave its slot up meanwhile."""
        epoch, residue, mod, _ = ticket
        if epoch != self.epoch or residue == _HOLD:
            return False
        return residue is None or (mod == self._mod and residue in self._held and not self._alone)

    def _claim(self, ticket: Any) -> float | None:
        """Send now? Not if the reservation was voided, nor if the caller woke up so late that it
        would land in the next slot (on a busy host sleepers wake in bunches): it reserves again.
        Alone, not before the request a window back is surely out of the service's window: if
        that one reached the service late (its answer took longer than usual), wait as much."""
        with self._lock:
            p = self.params
            now = self._clock()
            slot = p.window / self._slots
            if not self.still_valid(ticket) or now > ticket[3] + p.late * slot:
                self._ungrant(ticket[3])
                return None
            if self._alone and len(self.ledger) >= self._slots:
                ready = self._arrived(self.ledger[-self._slots]) + p.window * (1 + self._margin)
                limit = ticket[3] + p.hold_back * slot  # held back at most this much in all
                if ready > now + 1e-6 and limit > now + 1e-6:
                    return min(ready, limit) - now
            self._ungrant(ticket[3])
            self.ledger.append(now)
            return 0.0

    def _ungrant(self, send_at: float) -> None:
        if send_at in self._granted:
            self._granted.remove(send_at)

    def _unanswered(self, now: float) -> int:
        """Requests sent in the last window that have not been answered yet (calls that failed
        otherwise are never answered: they drop out after a window)."""
        horizon = now - self.params.window
        sent = sum(1 for t in self.ledger if t > horizon)
        answered = sum(1 for t in self._answered if t > horizon)
        return max(0, sent - answered)

    def _answer(self, sent_at: float | None) -> None:
        now = self._clock()
        self._answered.append(now if sent_at is None else sent_at)
        if sent_at is None:
            return
        latency = now - sent_at
        self._latencies.append(latency)
        self._trips.append((sent_at, latency))

    def _steady(self) -> bool:
        """Whether the last round trips took about as long as each other: a host too busy to
        answer (every process starting at once) answers late and unevenly, and is not sent more
        until it settles."""
        if len(self._latencies) < 2:
            return False
        last, before = self._latencies[-1], self._latencies[-2]
        return abs(last - before) <= self.params.steady * min(last, before)

    def _usual_latency(self) -> float:
        """A short round trip (the 10th percentile of recent ones; 0.2 s before any answer)."""
        if not self._latencies:
            return 0.2
        return sorted(self._latencies)[len(self._latencies) // 10]

    def _arrived(self, sent: float) -> float:
        """When a request we sent at ``sent`` may have reached the service: later by as much as its
        answer took longer than usual (the delay may have come before the service counted it)."""
        if not self._latencies:
            return sent
        usual = self._usual_latency()
        for when, latency in self._trips:
            if abs(when - sent) < 0.002:
                return sent + max(0.0, latency - usual)
        return sent

    def _slot(self, sent: float) -> int:
        """The grid slot a request sent at ``sent`` was in (offsets stay within the slot)."""
        return math.floor(sent / self._width())

    # ---- storms -------------------------------------------------------------------------------
    def _storm(self, sent: float, now: float, seen: int | None) -> None:
        """Company: stop, measure the group from the tickets still arriving, resume on the grid once
        our oldest request in the window has aged out."""
        p = self.params
        self.storms += 1
        self._alone = False
        self._tickets = [] if seen is None else [(sent, seen)]
        # Did we fill the window alone before this? Then our own requests of a window ago age out
        # as fast as we send: the count grows by the others' requests only.
        self._incumbent = sum(1 for t in self.ledger if sent - p.window < t <= sent) >= 0.9 * self._slots
        # Our requests the service counted in the window, at when they reached it (a host too busy
        # to answer held some of them back): none of them may count against our first turn.
        mine = [a for a in (self._arrived(t) for t in self.ledger if t <= sent) if a > sent - p.window]
        drained = min(mine, default=sent) + p.window * (1.0 + p.shared_margin) + self._width()
        # ... and the refusals of what we still have in flight come back (they are our tickets).
        answered = max(self.ledger, default=sent) + 1.5 * self._usual_latency()
        self._hold_until = max(drained, answered)
        self._last_grant = max(self._last_grant, self._hold_until - p.window / self._slots)
        self._probing = frozenset()
        self.epoch += 1

    def _settle(self, now: float) -> None:
        """After a storm's pause: take the rank the tickets gave — or, when the count grew by only
        one per request of ours (we came late to a full account), one slot per window, and probe."""
        if self._tickets is None or now < self._hold_until:
            return
        tickets, self._tickets = sorted(self._tickets), None
        p = self.params
        group = self._measure(tickets) if tickets else None
        self._guessed = group is None  # no group measured: what we take is a guess, probe sooner
        if group is None and self._incumbent:
            group = 2  # we had the account; somebody came: too few tickets to say more, halve
        self._moving = 0
        self._wins = self._fails = 0
        self._group = group
        if group is not None:
            # Our place in each interval, as a residue; the most frequent one is our rank (jitter
            # shifts single intervals' by a place or two), the others are where to move first.
            seen = [t % group for _, t in tickets[: p.gaps + 1]] or [self._rng.randrange(group)]
            counts = {r: seen.count(r) for r in seen}
            self._rank = max(counts, key=lambda r: counts[r])
            self._candidates = [r for r in counts if r != self._rank]
            self._hold(group, {self._rank})
        else:
            self._rank = None
            self._candidates = []
            self._hold(self._slots, {self._rng.randrange(self._slots)})
        self._next_probe = now + self._interval()
        self.epoch += 1

    def _measure(self, tickets: list[tuple[float, int]]) -> int | None:
        """The group size: how much the service's count grew from our first ticket to our last (at
        most ``gaps`` later), per request of ours sent in between — plus one if we had filled the
        window alone before (our requests of a window ago left it as fast as we sent: the growth is
        the others'). Jitter moves a single ticket by a place or two; the sum over several
        intervals much less. None when there are too few tickets or the count grew by one per
        request of ours although we had not filled the window (it was already full and only we
        were adding to it: we came late)."""
        window = tickets[: self.params.gaps + 1]
        first = window[0]
        for last in reversed(window[1:]):
            ours = sum(1 for t in self.ledger if first[0] < t <= last[0])
            if ours > 0 and last[1] > first[1]:
                estimate = (last[1] - first[1]) / ours + (1.0 if self._incumbent else 0.0)
                if estimate < 1.5:
                    return None
                return min(GROUP_SIZES, key=lambda size: abs(math.log(size / estimate)))
        return None

    # ---- feedback -----------------------------------------------------------------------------
    def on_success(self, sent_at: float | None = None) -> None:
        """A call paced by this bucket was answered (not throttled): narrow the margin, confirm a
        probe, maybe start one."""
        with self._lock:
            self.successes += 1
            p = self.params
            now = self._clock()
            self._answer(sent_at)
            if self._window_cap < _OPEN and self._steady():
                self._window_cap = _OPEN  # the host answers steadily: only the rate paces
            self._settle(now)
            if self._alone:
                self._margin = max(p.min_margin, self._margin_base - p.margin_decay * (now - self._margin_at))
                return
            if self._tickets is not None or sent_at is None or sent_at < self._hold_until:
                return
            residue = self._slot(sent_at) % self._mod
            if residue in self._probing:
                # A lone acceptance may be a passing hole (somebody's refusal a second ago left room);
                # a slot that is really free is accepted instance after instance.
                self._probe_ok[residue] = self._probe_ok.get(residue, 0) + 1
                if self._probe_ok[residue] < p.probe_confirm:
                    return
                self._probing = self._probing - {residue}
                if self._moving:
                    self._moving = 0  # moved to a free slot
                elif not self._probing:  # every slot of the probe kept: probe again sooner
                    self._wins += 1
                    self._fails = 0
                    self._next_probe = now + self._interval()
            if len(self._held) == self._mod and not self._probing:
                self._alone = True  # every slot is ours: nobody else is sending
                self._margin = self._margin_base = p.start_margin
                self._margin_at = now
                self.epoch += 1
                return
            if not self._probing and not self._moving and now >= self._next_probe:
                self._probe(now)

    def _probe(self, now: float) -> None:
        free = [r for r in range(self._mod) if r not in self._held]
        if not free:
            return
        step = min(len(free), 2 ** min(self._wins, 3))
        self._probing = frozenset(self._rng.sample(free, step))
        self._probe_ok = {}
        self._hold(self._mod, self._held | self._probing)
        self.probes += 1

    def on_throttled(self, sent_at: float | None = None, message: str | None = None) -> None:
        """The service refused a call sent at ``sent_at`` with ``message`` (``RequestLimitExceeded``)."""
        with self._lock:
            self.throttles += 1
            p = self.params
            now = self._clock()
            self._answer(sent_at)
            self._refusals.append(now)
            sent = now if sent_at is None else sent_at
            counts = throttle_counts(message)
            seen = None if counts is None else counts[0]
            if self._tickets is not None:  # measuring a storm: every refusal of ours is a ticket
                if seen is not None and now < self._hold_until:
                    self._tickets.append((sent, seen))
                    return
                self._settle(now)
            if sent < self._hold_until:
                return  # sent before the pause took effect: an echo of the storm
            if self._alone:
                near = sum(1 for t in self.ledger if sent - p.window - p.jitter < t <= sent)
                refused = sum(1 for t in self._refusals if t > now - p.window)
                if seen is not None and seen - near <= p.alone_others and refused <= p.alone_refusals:
                    if self._margin < p.max_margin and sent >= self._last_widen + 1.0:
                        self._margin = self._margin_base = min(p.max_margin, self._margin + p.margin_step)
                        self._margin_at = self._last_widen = now
                        self.widenings += 1
                    return
                self._storm(sent, now, seen)
                return
            slot = self._slot(sent)
            residue = slot % self._mod
            if residue in self._probing:
                self._probe_refused(residue, now)
                return
            if residue not in self._held:
                return  # given up already
            self._crowd.append(sent)
            crowded = self._crowded(now)
            if not crowded and seen is not None and counts is not None and seen >= p.storm_factor * counts[1]:
                return  # somebody's storm: it stops by itself, and nobody should pay for it
            horizon = 2 * max(p.loss_span * self._mod, p.max_mod * self._slots)
            lost = [g for g in self._lost.get(residue, []) if slot - horizon < g < slot]
            period = self._period(lost, slot)
            if period is None:  # a lone refusal: jitter, or a probe that took a passing hole
                self._lost[residue] = [*lost, slot]
                if crowded:  # ... unless there are too many of them
                    self._halve(now)
                return
            # Somebody else sends there, every `period` slots (its grain): leave it to them.
            self._lost.pop(residue, None)
            self._give_up(residue, slot, period, now)

    def _crowded(self, now: float) -> bool:
        """Refused too often to be jitter or a passing storm, whatever the slots: the shares add up
        to more than the limit (a group measured wrong, several processes reclaiming at once)."""
        p = self.params
        since = now - p.crowd_window
        refused = sum(1 for t in self._crowd if t > since)
        sent = sum(1 for t in self.ledger if t > since)
        return refused >= p.crowd_refusals and refused >= p.crowd_fraction * sent

    def _halve(self, now: float) -> None:
        """Keep half of what we hold (every other residue, or half of our only one: the modulus
        doubles), and wait for fresh evidence before judging again."""
        self._probing = frozenset()
        self._moving = 0
        if len(self._held) > 1:
            self._hold(self._mod, set(self._order[::2]))
        else:
            self._hold(self._mod * 2, {self._order[0]})
        self._crowd.clear()
        self._lost.clear()
        self.cuts += 1
        self._wins = 0
        self._next_probe = max(self._next_probe, now + self._interval())
        self.epoch += 1

    def _period(self, lost: list[int], slot: int) -> int | None:
        """The period of another sender in one of our residues, from the slots we lost there: three
        lost slots evenly spaced (every instance, when it sends every time we do; or on a grain of
        its own). Refusals from jitter are scattered."""
        for i, a in enumerate(lost):
            for b in lost[i + 1 :]:
                if b - a == slot - b:
                    return slot - b
        return None

    def _probe_refused(self, residue: int, now: float) -> None:
        self._probing = self._probing - {residue}
        self._hold(self._mod, self._held - {residue})
        if self._moving:  # moving off a contested slot: try the next one
            self._move(now)
            return
        self.failed_probes += 1
        self._fails += 1
        self._wins = 0
        self._next_probe = now + self._interval()

    def _give_up(self, residue: int, slot: int, period: int, now: float) -> None:
        """Another process keeps winning this slot, every ``period`` slots: leave it that much — the
        finer grain, if its period is not ours (a latecomer holding one slot per window in our
        rank) — or the whole residue; down to one residue, move or halve."""
        mod = math.lcm(self._mod, period)
        if self._mod < mod <= self.params.max_mod * self._slots:
            grain = mod // self._mod
            held = {h + k * self._mod for h in self._held for k in range(grain)} - {slot % mod}
            self._hold(mod, held)
            self.cuts += 1
            self._wins = 0
            self._next_probe = max(self._next_probe, now + self._interval())
            return
        if len(self._held) > 1:
            self._hold(self._mod, self._held - {residue})
            self.cuts += 1
            self._wins = 0
            self._next_probe = max(self._next_probe, now + self._interval())
            return
        self._moving = 0
        self._move(now, lost=residue, slot=slot)

    def _move(self, now: float, lost: int | None = None, slot: int | None = None) -> None:
        """Try another residue (one our storm tickets named first, then any); after ``max_moves``
        refused tries, keep half of the slot we had (the other half is the winner's)."""
        p = self.params
        if lost is not None:
            self._lost_slot = (lost, slot)
        if self._moving < p.max_moves and self._mod > 1:
            taken = set(self._held) | {self._lost_slot[0]}
            options = [r for r in self._candidates if r not in taken]
            if not options:
                options = [r for r in range(self._mod) if r not in taken]
            if options:
                target = (
                    options[0]
                    if self._candidates and options[0] in self._candidates
                    else self._rng.choice(options)
                )
                if target in self._candidates:
                    self._candidates.remove(target)
                self._moving += 1
                self.moves += 1
                self._probing = frozenset({target})
                self._probe_ok = {}
                self._hold(self._mod, {target})
                self.epoch += 1
                return
        residue, lost_slot = self._lost_slot
        self._moving = 0
        mod = self._mod * 2
        kept = residue + self._mod if lost_slot is not None and lost_slot % mod == residue else residue
        self._hold(mod, {kept})
        self.cuts += 1
        self._next_probe = now + self._interval()
        self.epoch += 1

    def _interval(self) -> float:
        """Wait before the next probe: ``sqrt(share)`` makes small holders probe more often while the
        whole account's probing grows only slowly with the number of processes; doubled per refused
        probe in a row, halved per kept one."""
        p = self.params
        base = p.probe_interval * math.sqrt(self.share) * self._rng.uniform(0.5, 1.5)
        if self._guessed:
            base *= p.guess_probe
        return min(p.max_probe_interval, max(p.min_probe_interval, base * 2.0 ** (self._fails - self._wins)))


def _slots(ceiling: float, window: float) -> int:
    return max(1, math.ceil(ceiling * window - 1e-9))


def _check_rate(rate: float) -> None:
    if rate <= 0:
        raise ValueError(f"rate must be > 0 requests/second, got {rate!r}")


_REGISTRY: dict[tuple[str, ...], TokenBucket] = {}
_REGISTRY_LOCK = threading.Lock()


#: Fixed pacing (``HEADROOM`` × the configured rate) is the default. ``AIRFLOW_MPS_PACING=adaptive`` in
#: the environment of every worker opts in to :class:`AdaptiveBucket` (docs/connection.md): processes
#: that start together take turns with few throttles; where the service answers late and out of
#: order while they meet (a host too busy), their shares come out uneven (bench P8).
def _adaptive_from_environment() -> bool:
    return os.environ.get("AIRFLOW_MPS_PACING", "fixed").strip().lower() == "adaptive"


_ADAPTIVE = _adaptive_from_environment()


def use_adaptive_pacing(enabled: bool) -> None:
    """Choose the kind of bucket ``shared_bucket`` creates from now on (fixed unless
    ``AIRFLOW_MPS_PACING=adaptive``).

    ``False`` restores fixed pacing at ``HEADROOM`` × the configured rate — the benchmark's baseline
    (P8) and a way to rule the controller out when diagnosing. Existing buckets are forgotten.
    """
    global _ADAPTIVE
    with _REGISTRY_LOCK:
        _ADAPTIVE = bool(enabled)
        _REGISTRY.clear()


def shared_bucket(key: tuple[str, ...], rate: float, burst: int = 1) -> TokenBucket:
    """Return the process-wide bucket for ``key`` (account, endpoint, action), creating it if needed.

    ``rate`` is the configured limit: an adaptive bucket's ceiling, a fixed bucket paces at
    ``HEADROOM`` of it. The most recently configured rate wins, so all hooks sharing the account
    follow one rate.
    """
    with _REGISTRY_LOCK:
        bucket = _REGISTRY.get(key)
        if bucket is None:
            if _ADAPTIVE:
                bucket = _REGISTRY[key] = AdaptiveBucket(rate, burst)
            else:
                bucket = _REGISTRY[key] = TokenBucket(rate * HEADROOM, burst)
        else:
            wanted = float(rate) if isinstance(bucket, AdaptiveBucket) else float(rate) * HEADROOM
            if bucket.ceiling != wanted:
                bucket.set_rate(wanted)
        return bucket


def reset_shared_buckets() -> None:
    """Forget every shared bucket (tests use this to start from an idle limiter)."""
    with _REGISTRY_LOCK:
        _REGISTRY.clear()
