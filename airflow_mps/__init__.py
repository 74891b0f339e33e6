"""Apache Airflow provider for Tencent Cloud MPS image processing."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def get_provider_info() -> dict[str, Any]:
    """Describe this provider to Airflow's ProvidersManager (the `apache_airflow_provider` entry point)."""
    return {
        "package-name": "airflow-provider-tencentcloud-mps",
        "name": "Tencent Cloud MPS",
        "description": "Tencent Cloud Media Processing Service (MPS) image processing: ProcessImage operators, "
        "sensor, deferrable triggers, and a local MPS + COS emulator.",
        "versions": [__version__],
    }
