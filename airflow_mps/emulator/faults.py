"""Fault injection for the emulator: what can go wrong in front of (and inside) the real service.

A `FaultPlan` holds `Fault` rules. Each rule names a kind, the actions it applies to (an fnmatch
pattern: `ProcessImage`, `Describe*`, `cos:*`, `cos:GetObject`, `*`) and when it fires: with a
probability, for the next N matching requests, and/or for T seconds from when it was added. The RNG is
seeded so a run with the same seed and request sequence injects the same faults.

Kinds (request faults are decided by the server before/after dispatch; `task_fail` by the workers):
- `latency`        sleep `ms` milliseconds before handling (network round trip)
- `slow`           sleep `seconds` after handling, before answering (a slow backend)
- `throttle`       answer RequestLimitExceeded (COS: 503 SlowDown) without processing
- `internal_error` answer InternalError (COS: 500 InternalError) without processing
- `http_502` / `http_503`  answer a bare gateway error page with that HTTP status
- `reset_before`   drop the connection (TCP RST) before reading the body — the request is never processed
- `reset_after`    process the request (e.g. the task IS created), then drop the connection unanswered
- `task_fail`      the task FINISHes failed with `err_code` / `err_msg` / `message`

CLI syntax (`--fault`, repeatable): `KIND[@ACTION][,key=value...]` with keys `p` (probability),
`next` (count), `for` (seconds), `ms`, `seconds`, `code`, `errmsg`, `message`, e.g.
`throttle@ProcessImage,p=0.3`, `reset_after@ProcessImage,next=1`, `latency@*,ms=150`,
`task_fail,next=2,code=70000,errmsg=InternalError`.
"""

from __future__ import annotations

import fnmatch
import random
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

REQUEST_KINDS = frozenset(
    {
        "latency",
        "slow",
        "throttle",
        "internal_error",
        "api_error",
        "http_502",
        "http_503",
        "reset_before",
        "reset_after",
    }
)
TASK_KINDS = frozenset({"task_fail"})
KINDS = REQUEST_KINDS | TASK_KINDS
#: Kinds that replace the normal answer; at most one of them fires per request.
TERMINAL_KINDS = ("reset_before", "http_502", "http_503", "throttle", "internal_error", "api_error")


@dataclass
class Fault:
    """One fault rule; see the module docstring for the kinds."""

    kind: str
    action: str = "*"
    probability: float = 1.0
    count: int | None = None
    duration: float | None = None
    ms: float = 0.0
    seconds: float = 0.0
    err_code: int = 70000
    err_msg: str = "InternalError"
    message: str = "Injected task failure."
    #: For ``api_error``: the error code and message answered instead of the normal response (any
    #: MPS or common code, e.g. ``UnauthorizedOperation`` for a CAM policy that denies one action).
    api_code: str = "UnauthorizedOperation"
    api_message: str = "Injected API error."
    id: int = 0
    created: float = field(default_factory=time.monotonic)
    fired: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; allowed: {sorted(KINDS)}")
        if not 0.0 <= float(self.probability) <= 1.0:
            raise ValueError(f"fault probability must be within [0, 1], got {self.probability!r}")
        if self.count is not None and int(self.count) < 0:
            raise ValueError(f"fault count must be >= 0, got {self.count!r}")
        if self.duration is not None and float(self.duration) <= 0:
            raise ValueError(f"fault duration must be > 0 seconds, got {self.duration!r}")
        if self.kind == "task_fail":
            self.action = "task"

    def expired(self, now: float) -> bool:
        if self.count is not None and self.fired >= self.count:
            return True
        return self.duration is not None and now - self.created > self.duration

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("created")
        return data


_SPEC_KEYS = {
    "p": ("probability", float),
    "probability": ("probability", float),
    "next": ("count", int),
    "count": ("count", int),
    "for": ("duration", float),
    "duration": ("duration", float),
    "ms": ("ms", float),
    "seconds": ("seconds", float),
    "code": ("err_code", int),
    "err_code": ("err_code", int),
    "errmsg": ("err_msg", str),
    "err_msg": ("err_msg", str),
    "message": ("message", str),
    "api_code": ("api_code", str),
    "api_message": ("api_message", str),
}


def parse_fault_spec(spec: str) -> Fault:
    """Parse the CLI form `KIND[@ACTION][,key=value...]` into a `Fault`."""
    head, *pairs = [part.strip() for part in spec.split(",")]
    kind, _, action = head.partition("@")
    kwargs: dict[str, Any] = {"kind": kind.strip(), "action": action.strip() or "*"}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key.strip() not in _SPEC_KEYS:
            raise ValueError(f"bad fault option {pair!r} in {spec!r}; allowed keys: {sorted(_SPEC_KEYS)}")
        name, conv = _SPEC_KEYS[key.strip()]
        kwargs[name] = conv(value.strip())
    return Fault(**kwargs)


def fault_from_dict(data: dict[str, Any]) -> Fault:
    """Build a `Fault` from the admin endpoint's JSON (field names of `Fault`, or the CLI's short keys)."""
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("kind", "action"):
            kwargs[key] = str(value)
        elif key in _SPEC_KEYS:
            name, conv = _SPEC_KEYS[key]
            kwargs[name] = None if value is None else conv(value)
        else:
            raise ValueError(f"unknown fault field {key!r}")
    return Fault(**kwargs)


@dataclass
class RequestFaults:
    """The faults decided for one request."""

    latency: float = 0.0
    slow: float = 0.0
    terminal: str | None = None
    reset_after: bool = False
    #: (code, message) when ``terminal`` is ``api_error``.
    api_error: tuple[str, str] | None = None

    @property
    def any(self) -> bool:
        return bool(self.latency or self.slow or self.terminal or self.reset_after)


class FaultPlan:
    """Thread-safe, seeded set of fault rules (the Python API behind flags and the admin endpoint)."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._next_id = 1
        self._rng = random.Random(seed)
        self._seed = seed

    # -- management -------------------------------------------------------------------------------
    def add(self, kind: str, action: str = "*", **options: Any) -> Fault:
        """Add a rule: `add("throttle", "ProcessImage", probability=0.5, count=None, duration=None)`."""
        return self.add_fault(Fault(kind=kind, action=action, **options))

    def add_fault(self, fault: Fault) -> Fault:
        with self._lock:
            fault.id = self._next_id
            self._next_id += 1
            fault.created = time.monotonic()
            self._faults.append(fault)
        return fault

    def clear(self, reseed: bool = True) -> None:
        """Remove every rule (and reseed the RNG so the next scenario is deterministic again)."""
        with self._lock:
            self._faults.clear()
            if reseed:
                self._rng = random.Random(self._seed)

    def remove(self, fault_id: int) -> bool:
        with self._lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if f.id != fault_id]
            return len(self._faults) != before

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            now = time.monotonic()
            self._faults = [f for f in self._faults if not f.expired(now)]
            return [f.to_dict() for f in self._faults]

    # -- convenience (same names on the remote proxy in testing.py) --------------------------------
    def latency(self, ms: float, action: str = "*", **opts: Any) -> Fault:
        return self.add("latency", action, ms=ms, **opts)

    def slow(self, seconds: float, action: str = "*", **opts: Any) -> Fault:
        return self.add("slow", action, seconds=seconds, **opts)

    def throttle(self, action: str = "*", **opts: Any) -> Fault:
        return self.add("throttle", action, **opts)

    def internal_error(self, action: str = "*", **opts: Any) -> Fault:
        return self.add("internal_error", action, **opts)

    def api_error(
        self, code: str, action: str = "*", message: str = "Injected API error.", **opts: Any
    ) -> Fault:
        """Answer ``action`` with the error envelope ``code``/``message`` (e.g. an access denial)."""
        return self.add("api_error", action, api_code=code, api_message=message, **opts)

    def http_error(self, status: int, action: str = "*", **opts: Any) -> Fault:
        if status not in (502, 503):
            raise ValueError(f"http_error status must be 502 or 503, got {status}")
        return self.add(f"http_{status}", action, **opts)

    def reset_before(self, action: str = "*", **opts: Any) -> Fault:
        return self.add("reset_before", action, **opts)

    def reset_after(self, action: str = "*", **opts: Any) -> Fault:
        return self.add("reset_after", action, **opts)

    def fail_tasks(
        self,
        err_code: int = 70000,
        err_msg: str = "InternalError",
        message: str = "Injected task failure.",
        **opts: Any,
    ) -> Fault:
        return self.add("task_fail", "task", err_code=err_code, err_msg=err_msg, message=message, **opts)

    # -- decisions --------------------------------------------------------------------------------
    def _fires(self, fault: Fault, now: float) -> bool:
        if fault.expired(now):
            return False
        if fault.probability < 1.0 and self._rng.random() >= fault.probability:
            return False
        fault.fired += 1
        return True

    def for_request(self, action: str) -> RequestFaults:
        """Decide the faults for one request to `action` (consumes `next N` budgets that fire)."""
        decided = RequestFaults()
        with self._lock:
            now = time.monotonic()
            for fault in self._faults:
                if fault.kind in TASK_KINDS or not fnmatch.fnmatchcase(action, fault.action):
                    continue
                if fault.kind == "latency":
                    if self._fires(fault, now):
                        decided.latency += fault.ms / 1000.0
                elif fault.kind == "slow":
                    if self._fires(fault, now):
                        decided.slow += fault.seconds
                elif fault.kind == "reset_after":
                    if decided.terminal is None and not decided.reset_after and self._fires(fault, now):
                        decided.reset_after = True
                elif decided.terminal is None and not decided.reset_after and self._fires(fault, now):
                    decided.terminal = fault.kind
                    if fault.kind == "api_error":
                        decided.api_error = (fault.api_code, fault.api_message)
            self._faults = [f for f in self._faults if not f.expired(now)]
        return decided

    def for_task(self) -> Fault | None:
        """The `task_fail` rule that fires for the task about to be processed, if any."""
        with self._lock:
            now = time.monotonic()
            for fault in self._faults:
                if fault.kind == "task_fail" and self._fires(fault, now):
                    return fault
        return None
