"""Test-session set-up shared by every test directory.

Airflow reads its configuration when it is first imported, so the isolated AIRFLOW_HOME and the
settings below are put in place here, before any test module imports Airflow.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

_AIRFLOW_HOME = tempfile.mkdtemp(prefix="airflow-mps-tests-")
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO_ROOT / "dags"))
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{_AIRFLOW_HOME}/airflow.db")
# Never let a developer's real Tencent Cloud credentials leak into a test run.
for _name in (
    "TENCENTCLOUD_SECRET_ID",
    "TENCENTCLOUD_SECRET_KEY",
    "TENCENTCLOUD_SESSION_TOKEN",
    "TENCENTCLOUD_TOKEN",
):
    os.environ.pop(_name, None)


# --------------------------------------------------------------------------------------------------
# Emulator fixtures (imported lazily so unit tests that never use them pay nothing).
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory):
    """One in-thread MPS + COS emulator for the whole session (`airflow_mps.emulator.testing.EmulatorServer`).

    Faults, counters and rate-limit windows are reset before every test that uses it (see
    `_reset_emulator`); tasks and objects persist for the session, so use unique keys per test.
    """
    from airflow_mps.emulator.testing import EmulatorServer

    with EmulatorServer(data_dir=tmp_path_factory.mktemp("emulator")) as server:
        yield server


@pytest.fixture(autouse=True)
def _reset_emulator(request: pytest.FixtureRequest):
    """Give each test that uses `emulator` a clean fault plan, counters and rate-limit windows."""
    if "emulator" in request.fixturenames:
        reset = getattr(request.getfixturevalue("emulator"), "reset", None)
        if callable(reset):
            reset()
    yield


@pytest.fixture
def mps_client(emulator):
    """Official sync `MpsClient` pointed at the session emulator."""
    return emulator.mps_client()


@pytest.fixture
def cos_client(emulator):
    """Official `CosS3Client` (IP/Port mode, no retries) pointed at the session emulator."""
    return emulator.cos_client()
