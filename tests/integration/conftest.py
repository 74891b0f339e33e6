"""Integration-test set-up: a migrated Airflow metadata DB (once per session) for dag.test()."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[None]:
    """Reset (create + migrate) the isolated SQLite metadata DB that tests/conftest.py configured."""
    from airflow.utils import db

    db.resetdb()
    yield
