"""Test-session set-up shared by every test directory.

Airflow reads its configuration when it is first imported, so the isolated AIRFLOW_HOME and the
settings below are put in place here, before any test module imports Airflow.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.metrics_support import StatsStub

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


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[None]:
    """Reset (create + migrate) the isolated SQLite metadata DB configured above, once per test
    process. Only here: a reset later in the session would orphan what earlier tests in the same
    process cached (serialized DAG versions), and one process runs several test directories (the
    floor lane runs tests/unit, tests/integration and tests/floor together)."""
    from airflow.utils import db

    db.resetdb()
    yield


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


# --------------------------------------------------------------------------------------------------
# Artifacts a person should look at (the emulator page's browser screenshots): kept under
# .test-artifacts/ after the run and listed at the end of the terminal output, pass or fail.
ARTIFACTS_DIR = REPO_ROOT / ".test-artifacts"
_ARTIFACTS: list[tuple[str, Path]] = []


@pytest.fixture
def artifact(request: pytest.FixtureRequest) -> Callable[[str, str], Path]:
    """``artifact(name, what)`` -> a path under ``.test-artifacts/<test name>/`` to write to; the path
    and ``what`` are printed in the run's summary."""

    def make(name: str, what: str) -> Path:
        folder = ARTIFACTS_DIR / request.node.name.replace("/", "_")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        _ARTIFACTS.append((what, path))
        return path

    return make


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    written = [(what, path) for what, path in _ARTIFACTS if path.is_file()]
    if written:
        terminalreporter.section("artifacts")
        for what, path in written:
            terminalreporter.write_line(f"{what}: {path}")


@pytest.fixture
def stats(monkeypatch: pytest.MonkeyPatch) -> StatsStub:
    """Airflow's ``Stats`` replaced by a recorder for the provider's metrics."""
    from airflow_mps.utils import metrics as metrics_module
    from tests.metrics_support import StatsStub

    stub = StatsStub()
    monkeypatch.setattr(metrics_module, "_airflow_stats", lambda: stub)
    return stub
