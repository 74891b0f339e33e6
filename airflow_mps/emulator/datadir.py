"""Who owns an emulator data dir right now: a running server, a `seed` command, or nobody.

Why this exists: the COS backend keeps an in-memory index of each bucket, loaded once from disk
(`cos/models.py`), so bytes another process writes into a data dir behind a running server's back stay
invisible to it (listing skips them, GET answers NoSuchKey). Whoever writes a data dir therefore
announces itself here:

- a server holds an exclusive `flock` on ``<data_dir>/emulator.lock`` for its whole life and writes its
  endpoint into the file, so the `seed` command finds it and uploads through its signed COS API;
- the `seed` command, when the lock is free (no server), holds the same lock while it writes directly
  through `CosBackend`, so a server starting meanwhile waits until the objects are complete on disk.

The file's content (one JSON object: ``role``, ``pid``, and for a server ``endpoint``, ``scheme``,
``region``, ``secret_id``, ``tls_cert``) only means something while its lock is held: after a
``kill -9`` the kernel drops the lock and the stale content is overwritten by the next holder. No secret
is ever written to it. Locking is POSIX ``flock``; where ``fcntl`` is missing (Windows) there is no
exclusion, so seed only while the server is stopped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_mps.emulator.config import EmulatorConfig

log = logging.getLogger(__name__)

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]  # no advisory locks there: the lock is skipped

#: The lock file's name inside the data dir.
LOCK_NAME = "emulator.lock"


class DataDirBusy(RuntimeError):
    """The data dir is held by someone who will not let go (another running server)."""


class DataDirLock:
    """An exclusive, non-inheritable ``flock`` on ``<data_dir>/emulator.lock`` plus its holder note."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.path = Path(data_dir) / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self, info: dict[str, Any]) -> bool:
        """Take the lock without waiting and write ``info`` as the holder note; False if someone holds it."""
        if self._fd is not None:
            self.update(info)
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
        self._fd = fd
        self.update(info)
        return True

    def update(self, info: dict[str, Any]) -> None:
        """Rewrite the holder note (a server adds its endpoint once it is listening)."""
        if self._fd is None:
            raise RuntimeError("the data dir lock is not held")
        data = json.dumps({"pid": os.getpid(), **info}, sort_keys=True).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        """Clear the note and drop the lock (closing the descriptor releases the flock)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)

    def __enter__(self) -> DataDirLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_holder(data_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The holder note as written, or None (no file, empty, or half written). Trust it only while locked."""
    try:
        raw = (Path(data_dir) / LOCK_NAME).read_text("utf-8")
        note = json.loads(raw) if raw.strip() else None
    except (OSError, ValueError):
        return None
    return note if isinstance(note, dict) else None


def server_note(config: EmulatorConfig, endpoint: str, tls_cert: Path | None) -> dict[str, Any]:
    """What a listening server writes into the lock note: how to reach it, never its key."""
    return {
        "role": "server",
        "endpoint": endpoint,
        "scheme": config.scheme,
        "region": config.region,
        "secret_id": config.secret_id,
        "token_required": bool(config.token),
        "tls_cert": str(tls_cert) if tls_cert else None,
    }


def _log_wait(data_dir: str | os.PathLike[str], holder: dict[str, Any] | None) -> None:
    who = f"pid {holder.get('pid')}" if holder else "another process"
    log.warning("data dir %s is locked by a seed command (%s); starting once it has finished", data_dir, who)


def claim_for_server(
    data_dir: str | os.PathLike[str],
    *,
    timeout: float = 300.0,
    on_wait: Callable[[dict[str, Any] | None], None] | None = None,
) -> DataDirLock:
    """Lock ``data_dir`` for a server starting up.

    A `seed` command holding it is waited for (it finishes its writes, then lets go; ``on_wait`` — by
    default a log warning — is told once, so the wait is never silent); another *server* holding it is an error at once, because two
    servers on one data dir would each keep their own index and re-run each other's tasks.
    """
    lock = DataDirLock(data_dir)
    deadline = time.monotonic() + timeout
    told = False
    while not lock.try_acquire({"role": "server"}):
        holder = read_holder(data_dir)
        if holder and holder.get("role") == "server":
            where = holder.get("endpoint") or "starting up"
            raise DataDirBusy(
                f"the data dir {data_dir} is already served by another airflow-mps-emulator "
                f"(pid {holder.get('pid')}, {where}); stop it or choose another --data-dir"
            )
        if time.monotonic() > deadline:
            raise DataDirBusy(
                f"the data dir {data_dir} stayed locked by {holder or 'another process'} for {timeout:g} s"
            )
        if not told:
            (on_wait or (lambda h: _log_wait(data_dir, h)))(holder)
            told = True
        time.sleep(0.05)
    return lock


__all__ = ["LOCK_NAME", "DataDirBusy", "DataDirLock", "claim_for_server", "read_holder", "server_note"]
