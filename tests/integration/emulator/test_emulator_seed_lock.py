"""The data-dir lock between a seed and a server, with a real thread waiting on it.

Moved from tests/unit/emulator/test_emulator_seed.py: it waits in real time (a server thread polling the lock),
which unit tests may not (issue 10 item 7).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from airflow_mps.emulator.datadir import DataDirBusy, DataDirLock, claim_for_server, read_holder


def test_a_server_waits_for_a_seed_and_refuses_a_second_server(tmp_path: Path) -> None:
    seeding = DataDirLock(tmp_path)
    assert seeding.try_acquire({"role": "seed"})
    assert read_holder(tmp_path)["role"] == "seed"  # type: ignore[index]
    claimed: list[DataDirLock] = []
    waited: list[object] = []
    thread = threading.Thread(
        target=lambda: claimed.append(claim_for_server(tmp_path, on_wait=waited.append))
    )
    thread.start()
    time.sleep(0.3)
    assert not claimed and waited and waited[0]["role"] == "seed"  # type: ignore[index]
    seeding.release()
    thread.join(5)
    assert claimed and claimed[0].held
    claimed[0].update({"role": "server", "endpoint": "127.0.0.1:1"})
    with pytest.raises(DataDirBusy, match="already served by another airflow-mps-emulator"):
        claim_for_server(tmp_path, timeout=5)
    seed_lock = DataDirLock(tmp_path)
    assert not seed_lock.try_acquire({"role": "seed"})  # a seed sees the server instead
    assert read_holder(tmp_path)["endpoint"] == "127.0.0.1:1"  # type: ignore[index]
    claimed[0].release()
    assert seed_lock.try_acquire({"role": "seed"})
    seed_lock.release()
