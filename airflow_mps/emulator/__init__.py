"""Local Tencent Cloud MPS (image processing) + COS emulator that the official SDKs talk to unchanged.

Run it with `airflow-mps-emulator` or `python -m airflow_mps.emulator`; drive it from tests with
`airflow_mps.emulator.testing.EmulatorServer` / `EmulatorProcess`. See docs/emulator.md.
The emulator never imports Airflow.
"""

from airflow_mps.emulator.config import DEFAULT_REGION, DEFAULT_SECRET_ID, EmulatorConfig

__all__ = ["DEFAULT_REGION", "DEFAULT_SECRET_ID", "EmulatorConfig"]
