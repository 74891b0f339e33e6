"""Adaptive pacing (``AIRFLOW_MPS_PACING=adaptive``, issue 13): :class:`AdaptiveBucket`, a
:class:`~airflow_mps.hooks._pacing.TokenBucket` (same contract) that shares one account's limit with
processes it cannot see by reading the service's refusals; tuned by ``_pacing.AdaptiveParams``. Its
turns on the shared grid (slots held, contests, probes) are ``_turns.GridTurns``."""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from airflow_mps.hooks._pacing import (
    AdaptiveParams,
    TokenBucket,
    _check_rate,
    _slots,
    measure_group,
    storm_rank,
    throttle_counts,
)
from airflow_mps.hooks._turns import GridTurns

_HOLD = "hold"
_OPEN = 1 << 30  # no cap on unanswered requests


class AdaptiveBucket(GridTurns, TokenBucket):
    """A pacer that shares one account's limit with other processes it cannot see (issue 13).

    The service refuses a request when ``limit`` requests were accepted in the last ``window``, and
    its refusal counts the requests in that window, accepted and refused: within a second every
    arrival raises the count by one, so a refusal's count is a **ticket** no other request holds.

    * **Alone** (the start, and whenever it holds the whole limit): evenly spaced at ``ceiling ÷ (1
      + margin)``, the margin following jitter; a request waits (up to ``hold_back`` of a slot)
      until the one ``limit`` sends before it is surely out of the window, counted as late as its
      answer was slower than usual. Slow start: two requests unanswered until two answers in a row
      took about as long (a host too busy to answer is not stormed).
    * **Storm** (a refusal showing other processes): K processes that started together at the full
      rate send one request each per interval, so our tickets are K apart and one interval's K
      tickets are consecutive. K is the count's growth per request of ours over up to ``gaps``
      intervals (plus one if we had filled the window alone: our old requests left as fast as we
      sent), rounded to the nearest of ``GROUP_SIZES``; our rank is our usual ``ticket mod K``
      after the first interval (where each first refusal lands ahead of or behind a neighbour's;
      with no usual place, the first's). Until ``gaps`` of ours went out after the first refusal
      we go on at our pace (round trips shorter than our interval leave nothing in flight to
      measure with); then nothing until our requests have left the window, then turn ``rank`` of
      ``K``. A count growing by one per request of ours means we came late to a full account: one
      slot per window, then probing.
    * **Shared** (the grid): every process cuts wall-clock time into the same slots, ``window × (1 +
      shared_margin) ÷ limit`` wide, numbered from the epoch; a bucket holds residues ``H`` modulo
      ``M`` and sends only in slots ``g mod M`` in ``H``. After a storm ``M = K``, ``H = {rank}``:
      ``limit ÷ K`` each, no two in one slot, never above the limit, finishing together.

    **Contests.** Two requests in one slot: the first is kept; a bucket sends later in its slot the
    larger its share, so the smaller holder wins. Three evenly spaced refusals of a residue mean
    another sender there: leave it that slot (at its grain), or — our only residue — move (our
    tickets name candidates, then any other), halving when none is free (a latecomer keeps its one slot per
    window: that slot finds the room an incumbent leaves). A refusal counting ``storm_factor ×
    limit`` is somebody's storm and costs nothing; refusals of over ``crowd_fraction`` of what we
    sent halve our share (shares adding up to more than the limit: a group measured wrong).

    **Probing.** Holding less than everything, now and then take more (small holders more often) —
    but not for ``storm_quiet`` after a storm that measured the group (nobody has finished yet: a
    probe then can only feed on a passing hole, pushing a neighbour off its turn): a
    refused probe is given back and the next waits twice as long (up to ``2**max_probe_backoff``;
    not at all below the fair share of the group we measured: squeezed there, the room we lost is
    likely still free); a probe whose every slot was accepted over a window, and ``probe_confirm``
    times in all, is kept and the next comes at once, taking twice as much (room found is often more
    room: a process that finished left its whole turn). Holding everything, the bucket is alone
    again.

    Feedback: ``on_success(sent_at)``, ``on_throttled(sent_at, message)`` (``sent_at`` = ``now()``
    after ``acquire``). Thread- and asyncio-safe: one lock, never held while waiting. The clock is
    wall time so that processes (and NTP-synced hosts) share the grid.
    """

    adaptive = True

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
        self.storms = self.cuts = self.moves = self.widenings = self.probes = self.failed_probes = 0
        #: The last storm's raw group estimate and the counts it read them from (for benchmarks).
        self.estimate: float | None = None
        self.tickets_seen: list[int] = []
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
        self._last_widen = self._last_grant = self._hold_until = -math.inf
        #: Grid slot → the epoch it was reserved in (void reservations of older epochs hold no place).
        self._reserved: dict[int, int] = {}
        self._window_cap = p.start_window
        self._granted: list[float] = []  # send times reserved, not yet claimed (while it is closed)
        self._answered: deque[float] = deque(maxlen=256)  # sent_at of recent answers
        self._refusals: deque[float] = deque(maxlen=64)  # when recent refusals came back
        self._crowd: deque[float] = deque(maxlen=64)  # sent_at of recent refusals on the grid
        self._tickets: list[tuple[float, int]] | None = None  # a storm's (sent, seen)
        self._measuring = 0  # sends left to measure a storm with
        self._incumbent = False  # we had the window to ourselves when the storm began
        self._guessed = False  # our share was guessed, not measured
        self._latencies: deque[float] = deque(maxlen=64)  # recent round trips
        self._trips: deque[tuple[float, float]] = deque(maxlen=64)  # (sent, round trip) of recent answers
        self._group: int | None = None
        self.rank: int | None = None  # our turn among them (public for benchmarks)
        self._candidates: list[int] = []
        self._lost: dict[int, list[int]] = {}
        self._moving = 0
        self._lost_slot: tuple[int, int | None] = (0, None)
        self._probing: frozenset[int] = frozenset()
        self._probe_ok: dict[int, int] = {}
        self._probe_need = p.probe_confirm
        self._probe_lost = False
        self._wins = self._fails = 0
        self._next_probe = math.inf
        self._tokens = 0.0  # the refusal budget: + probe_budget per call accepted, - 1 per refused
        self._budget_from, self._budget_wait = math.inf, None

    # ---- state ------------------------------------------------------------------------------
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

    @property
    def measuring(self) -> bool:
        """Whether a storm's pause is on: its tickets are still being read (group not known yet)."""
        return self._tickets is not None

    @property
    def guessed(self) -> bool:
        """Whether the share taken at the last storm was guessed (too few tickets), not measured."""
        return self._guessed

    def shared(self) -> bool:
        """Whether the bucket paces on the common grid (other processes were seen)."""
        return not self._alone

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
            if self._measuring > 0 and self._tickets is not None:  # a storm's measuring sends
                self._measuring -= 1
                send_at = max(now, self._last_grant + p.window * (1.0 + self._margin) / self._slots)
                self._last_grant = send_at
                return send_at - now, (self.epoch, None, self._mod, send_at)
            if now < self._hold_until:  # a storm's window is draining: wait, then reserve again
                return self._hold_until - now, (self.epoch, _HOLD, 0, self._hold_until)
            self._settle(now)
            # Never `limit` + 1 sends in a window, counting when they really went out (late ones too).
            earliest = max(now, self._last_grant + 1e-6) if self._alone else now
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
            self._last_grant = max(self._last_grant, send_at)
            return send_at - now, (self.epoch, residue, self._mod, send_at)

    def still_valid(self, ticket: Any) -> bool:
        """A reservation stays good unless the bucket paused or gave its slot up meanwhile."""
        epoch, residue, mod, _ = ticket
        if epoch != self.epoch or residue == _HOLD:
            return False
        return residue is None or (mod == self._mod and residue in self._held and not self._alone)

    def _claim(self, ticket: Any) -> float | None:
        """Send now? Not if the reservation was voided, nor if the caller woke up so late that it
        would land in the next slot (on a busy host sleepers wake in bunches): it reserves again.
        Alone or measuring a storm, never ``limit`` + 1 sends in a window, and not before the
        request a window back is surely out of the service's window: if that one reached the service
        late (its answer took longer than usual), wait as much (up to ``hold_back`` of a slot)."""
        with self._lock:
            p = self.params
            now = self._clock()
            slot = p.window / self._slots
            if not self.still_valid(ticket) or now > ticket[3] + p.late * slot:
                self._ungrant(ticket[3])
                return None
            if ticket[1] is None and len(self.ledger) >= self._slots:  # not a turn on the grid
                back, span = self.ledger[-self._slots], p.window * (1 + self._margin)
                ready = self._arrived(back) + span
                limit = max(ticket[3] + p.hold_back * slot, back + span)  # the ceiling holds anyway
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
        """Whether the last round trips took about as long as each other: a host too busy to answer
        (every process starting at once) answers late and unevenly, and gets no more until then."""
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

    def _drained(self, arrived: float) -> float:
        """When a request that reached the service at ``arrived`` is surely out of its window."""
        return arrived + self.params.window * (1.0 + self.params.shared_margin) + self._width()

    # ---- storms -------------------------------------------------------------------------------
    def _storm(self, sent: float, now: float, seen: int | None) -> None:
        """Company: stop, measure the group from the tickets still arriving, resume on the grid once
        our oldest request in the window has aged out."""
        p = self.params
        self.storms += 1
        self._alone = False
        self._tickets = [] if seen is None else [(sent, seen)]
        # Had we filled the window alone? (Then the count grows by the others' requests only.)
        self._incumbent = sum(1 for t in self.ledger if sent - p.window < t <= sent) >= 0.9 * self._slots
        # Our requests in the window, at when they reached the service: none may count against us.
        mine = [a for a in (self._arrived(t) for t in self.ledger if t <= sent) if a > sent - p.window]
        drained = self._drained(min(mine, default=sent))
        # ... and the refusals of what we still have in flight come back (they are our tickets).
        answered = max(self.ledger, default=sent) + 1.5 * self._usual_latency()
        self._hold_until = max(drained, answered)
        # Too few in flight to measure (round trips shorter than our interval): keep sending at our
        # pace until ``gaps`` went out after this one — the others do the same, so the counts still
        # grow by the whole group (stopping at once, each would read only those not yet stopped).
        self._measuring = max(0, p.gaps - sum(1 for t in self.ledger if t > sent))
        self._last_grant = max(self.ledger, default=now)  # reservations voided here hold no place
        self._probing = frozenset()
        self.epoch += 1

    def _settle(self, now: float) -> None:
        """After a storm's pause: take the rank the tickets gave — or, when the count grew by only
        one per request of ours (we came late to a full account), one slot per window, and probe."""
        if self._tickets is None or now < self._hold_until:
            return
        tickets, self._tickets = sorted(self._tickets), None
        p = self.params
        self.tickets_seen = [seen for _, seen in tickets[:8]]
        group, self.estimate = measure_group(tickets, self.ledger, p.gaps, self._incumbent)
        self._guessed = group is None  # no group measured: what we take is a guess, probe sooner
        if group is None and self._incumbent:
            group = 2  # we had the account; somebody came: too few tickets to say more, halve
        self._moving = self._wins = self._fails = 0
        self._group = group
        if group is not None:  # our turn; the other places our tickets showed are where to move
            self.rank, self._candidates = storm_rank(tickets, group, p.gaps, self._rng)
            self._hold(group, {self.rank})
        else:
            self.rank, self._candidates = None, []
            self._hold(self._slots, {self._rng.randrange(self._slots)})
        self._defer_probe(now)
        if group is not None and not self._guessed:  # nobody has finished yet: no room to find
            self._next_probe = max(self._next_probe, now + p.storm_quiet * self._rng.uniform(0.5, 1.5))
        self.epoch += 1

    # ---- feedback -----------------------------------------------------------------------------
    def on_success(self, sent_at: float | None = None) -> None:
        """A call paced by this bucket was answered (not throttled): narrow the margin, confirm a
        probe, maybe start one."""
        with self._lock:
            self.successes += 1
            p = self.params
            self._tokens = min(p.probe_tokens, self._tokens + p.probe_budget)
            now = self._clock()
            self._answer(sent_at)
            if self._window_cap < _OPEN and self._steady():
                self._window_cap = _OPEN  # the host answers steadily: only the rate paces
            self._settle(now)
            if self._alone:
                self._margin = max(p.min_margin, self._margin_base - p.margin_decay * (now - self._margin_at))
                return
            if self._tickets is not None and sent_at is not None:  # accepted while measuring: in
                self._hold_until = max(self._hold_until, self._drained(sent_at))  # the window
            if self._tickets is not None or sent_at is None or sent_at < self._hold_until:
                return
            if self._accepted_on_grid(sent_at, now):
                self._alone = True  # every slot is ours: nobody else is sending
                self._margin = self._margin_base = p.start_margin
                self._margin_at = now
                self.epoch += 1

    def on_throttled(self, sent_at: float | None = None, message: str | None = None) -> None:
        """The service refused a call sent at ``sent_at`` with ``message`` (``RequestLimitExceeded``)."""
        with self._lock:
            self.throttles += 1
            p = self.params
            self._tokens = max(-p.probe_debt, self._tokens - 1.0)
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
            self._refused_on_grid(sent, now, counts)
