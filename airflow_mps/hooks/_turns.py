"""The shared half of adaptive pacing (issue 13): :class:`GridTurns`, the turns an
:class:`~airflow_mps.hooks._adaptive.AdaptiveBucket` takes on the common slot grid once it has seen
other processes — which slots it holds, how it wins or leaves a contested one, and how it probes for
room. Split from ``_adaptive.py`` (the alone mode, reservations, storms and feedback) so that each
stays readable; the two share one state, set up by ``AdaptiveBucket._start``."""

from __future__ import annotations

import math
import random
from collections import deque

from airflow_mps.hooks._pacing import AdaptiveParams


class GridTurns:
    """Turns on the grid: residues ``H`` modulo ``M`` of slots ``window × (1 + shared_margin) ÷
    limit`` wide, numbered from the epoch (see :class:`~airflow_mps.hooks._adaptive.AdaptiveBucket`
    for the rules). A mixin: every attribute below is the bucket's, set by its ``_start``."""

    params: AdaptiveParams
    epoch: int
    ledger: deque[float]
    cuts: int
    moves: int
    probes: int
    failed_probes: int
    _rng: random.Random
    _slots: int
    _tie: float
    _mod: int
    _held: frozenset[int]
    _order: list[int]
    _reserved: dict[int, int]
    _crowd: deque[float]
    _lost: dict[int, list[int]]
    _moving: int
    _lost_slot: tuple[int, int | None]
    _probing: frozenset[int]
    _probe_ok: dict[int, int]
    _probe_need: int
    _probe_lost: bool
    _wins: int
    _fails: int
    _next_probe: float
    _tokens: float
    _budget_from: float
    _budget_wait: float | None
    _candidates: list[int]
    _group: int | None
    _guessed: bool

    @property
    def share(self) -> float:
        """The fraction of the limit this bucket sends at now (1.0 alone)."""
        return len(self._held) / self._mod

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
                if t >= earliest and self._reserved.get(slot) != self.epoch:
                    if len(self._reserved) > 4 * self._slots:  # forget slots past or void
                        first = math.floor(earliest / width)
                        self._reserved = {
                            g: e for g, e in self._reserved.items() if e == self.epoch and g >= first
                        }
                    self._reserved[slot] = self.epoch
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

    def _slot(self, sent: float) -> int:
        """The grid slot a request sent at ``sent`` was in (offsets stay within the slot)."""
        return math.floor(sent / self._width())

    def _accepted_on_grid(self, sent_at: float, now: float) -> bool:
        """A request sent on the grid at ``sent_at`` was answered: confirm a probe (or a move), maybe
        start one. True when every slot is ours (nobody else is sending: the bucket is alone)."""
        p = self.params
        residue = self._slot(sent_at) % self._mod
        if residue in self._probing:
            # One acceptance may be a passing hole (a refusal left room); a free slot stays free.
            self._probe_ok[residue] = self._probe_ok.get(residue, 0) + 1
            if self._probe_ok[residue] < self._probe_need:
                return False
            self._probing = self._probing - {residue}
            if self._moving:
                self._moving = 0  # moved to a free slot
            elif not self._probing:  # every slot of the probe kept: there may be more room
                self._wins += 1  # (a finished process leaves its whole turn): look again now
                self._fails = 0
                self._next_probe = now + p.min_probe_interval
        if len(self._held) == self._mod and not self._probing:
            return True
        if not self._probing and not self._moving and self._probe_due(now):
            self._probe(now)
        return False

    def _refused_on_grid(self, sent: float, now: float, counts: tuple[int, int] | None) -> None:
        """A request sent on the grid at ``sent`` was refused with ``counts`` (seen, limit): a lost
        probe, somebody's storm (free), jitter, or another sender in our slot (leave it to them)."""
        p = self.params
        slot = self._slot(sent)
        residue = slot % self._mod
        if residue in self._probing:
            self._probe_refused(residue, now)
            return
        if residue not in self._held:
            return  # given up already
        self._crowd.append(sent)
        crowded = self._crowded(now)
        if not crowded and counts is not None and counts[0] >= p.storm_factor * counts[1]:
            return  # somebody's storm: it stops by itself, and nobody should pay for it
        horizon = 2 * max(p.loss_span * self._mod, p.loss_windows * self._slots)
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

    def _probe(self, now: float) -> None:
        free = [r for r in range(self._mod) if r not in self._held]
        if not free:
            return
        step = min(len(free), 2 ** min(self._wins, 3))
        self._probing = frozenset(self._rng.sample(free, step))
        self._start_probe()
        self._hold(self._mod, self._held | self._probing)
        self.probes += 1

    def _start_probe(self) -> None:
        """Count acceptances afresh for the residues now probed. Each is kept once it was accepted on
        enough instances to cover a window's slots (at a small modulus one residue stands for several
        slots, any of which another sender may hold) and the probe as a whole ``probe_confirm`` times:
        a latecomer's ramp of 2, 4, 8 residues at one slot per window confirms in a window, not in
        three (pacing board, two × 600 five seconds apart: mean 0.809 -> 0.845)."""
        self._probe_ok = {}
        self._probe_lost = False
        confirm = self.params.probe_confirm
        self._probe_need = max(math.ceil(confirm / len(self._probing)), math.ceil(self._slots / self._mod))

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
        self._defer_probe(now, at_least=True)
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
        if self._probe_lost:  # another of its residues was refused already: one probe, one failure
            return
        self._probe_lost = True
        self.failed_probes += 1
        self._fails += 1
        self._wins = 0
        self._defer_probe(now)

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
            self._defer_probe(now, at_least=True)
            return
        if len(self._held) > 1:
            self._hold(self._mod, self._held - {residue})
            self.cuts += 1
            self._wins = 0
            self._defer_probe(now, at_least=True)
            return
        self._moving = 0
        self._move(now, lost=residue, slot=slot)

    def _move(self, now: float, lost: int | None = None, slot: int | None = None) -> None:
        """Try another residue (one our storm tickets named first, then any); after as many refused
        tries as there are other residues (at least ``max_moves``), keep half of the slot we had —
        or, a latecomer at one slot per window, the slot itself."""
        p = self.params
        if lost is not None:
            self._lost_slot = (lost, slot)
        if self._moving < max(p.max_moves, self._mod - 1) and self._mod > 1:
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
                self._start_probe()
                self._hold(self._mod, {target})
                self.epoch += 1
                return
        residue, lost_slot = self._lost_slot
        self._moving = 0
        if self._group is None and self._mod >= self._slots:
            # A latecomer (no group: it came to a full account) keeps one slot per window: that slot
            # is how it finds the room an incumbent leaves when it finishes, and at half a slot every
            # doubling back waits twice as long (pacing board, late2: median 0.797 -> 0.831).
            mod, kept = self._mod, residue
        else:
            mod = self._mod * 2
            kept = residue + self._mod if lost_slot is not None and lost_slot % mod == residue else residue
            self.cuts += 1
        self._hold(mod, {kept})
        self._defer_probe(now)
        self.epoch += 1

    def _probe_due(self, now: float) -> bool:
        """Time to probe: the wait is over — or the refusals we met this burst are still within the
        budget (``probe_budget`` of what was accepted, in tokens) and ``budget_probe_interval`` has
        passed. The wait alone backs off to minutes in an account that stays full, which in a long
        run leaves the room a finished process leaves idle for minutes; the budget bounds what
        faster probing may cost at a share of our own traffic, whatever the group."""
        if now >= self._next_probe:
            return True
        p = self.params
        if self._tokens < 1.0:
            return False
        if self._budget_wait is None:  # drawn when first needed: no draw where it never is
            self._budget_wait = p.budget_probe_interval * self._rng.uniform(0.5, 1.5)
        return now >= self._budget_from + self._budget_wait

    def _defer_probe(self, now: float, at_least: bool = False) -> None:
        """Wait :meth:`_interval` before the next probe (or keep a later time, ``at_least``); a
        probe on the budget waits afresh too."""
        due = now + self._interval()
        self._next_probe = max(self._next_probe, due) if at_least else due
        self._budget_from, self._budget_wait = now, None

    def _interval(self) -> float:
        """Wait before the next probe: ``sqrt(share)`` makes small holders probe more often while the
        whole account's probing grows slowly with the number of processes; doubled per refused probe
        in a row (up to ``max_probe_backoff`` times; never below our group's fair share — pacing
        board, sixty seeds, this rule alone: eight 1 s apart mean 0.834 -> 0.873, K = 8 at 20 ms
        0.929 -> 0.942), halved per kept one (felt after a move's cut)."""
        p = self.params
        base = p.probe_interval * math.sqrt(self.share) * self._rng.uniform(0.5, 1.5)
        if self._guessed:
            base *= p.guess_probe
        # Below the fair share of the group we measured we were squeezed (a contest lost, a crowd
        # halved): the room is likely still there.
        squeezed = self._group is not None and self.share < 0.99 / self._group
        backoff = 2.0 ** (min(0 if squeezed else self._fails, p.max_probe_backoff) - self._wins)
        return min(p.max_probe_interval, max(p.min_probe_interval, base * backoff))
