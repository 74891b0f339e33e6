"""The provider as the Airflow CLI sees it (`airflow providers hooks|list` in a child process).

Moved from tests/unit/test_provider_info.py: they start a subprocess, which unit tests may not
(issue 10 item 7); the in-process provider-info checks stay there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _airflow_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)  # conftest put the isolated AIRFLOW_HOME in place
    return subprocess.run(
        [sys.executable, "-m", "airflow", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )


def test_airflow_providers_hooks_lists_tencentcloud() -> None:
    result = _airflow_cli("providers", "hooks", "--output", "json")
    assert result.returncode == 0, result.stderr[-2000:]
    payload = next(line for line in result.stdout.splitlines() if line.startswith("[{"))
    rows = json.loads(payload)
    mine = [row for row in rows if row.get("connection_type") == "tencentcloud"]
    assert mine, result.stdout[-2000:]
    assert mine[0]["class"] == "airflow_mps.hooks.mps.MpsHook"
    assert mine[0]["package_name"] == "airflow-provider-tencentcloud-mps"


def test_airflow_providers_list_still_works() -> None:
    result = _airflow_cli("providers", "list", "--output", "json")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "airflow-provider-tencentcloud-mps" in result.stdout
