"""Parsing the shipped example DAGs with chosen settings (the DAG files read them at parse time);
shared by the DAG tests of this folder (imported by name: pytest puts a test file's folder on the path)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]


def parse_example_dags(env: Mapping[str, str | None]) -> dict[str, Any]:
    """Parse ``dags/`` with ``env`` applied (``None`` unsets a variable); the environment is restored."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow < 3.1 keeps DagBag in airflow.models
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    saved = {k: os.environ.get(k) for k in env}
    try:
        _apply(env)
        bag = DagBag(dag_folder=str(REPO / "dags"))  # examples are off (tests/conftest.py)
    finally:
        _apply(saved)
    assert bag.import_errors == {}
    return bag.dags


def _apply(env: Mapping[str, str | None]) -> None:
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
