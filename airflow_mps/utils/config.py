"""Airflow configuration read by this package's operators and sensors."""

from __future__ import annotations

from airflow.providers.common.compat.sdk import conf

__all__ = ["default_deferrable"]


def default_deferrable() -> bool:
    """``[operators] default_deferrable`` — the default of every ``deferrable`` argument in this package.

    Airflow's ``BaseOperator``/``BaseSensorOperator`` take no ``deferrable=``; each operator declares it
    and defaults it from this option, as Airflow's own providers do.
    """
    return bool(conf.getboolean("operators", "default_deferrable", fallback=False))
