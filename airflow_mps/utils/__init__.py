"""Neutral helpers shared by the operators, the sensors and the triggers (issue 10, design §8).

Each module has one role, and none of them imports an operator, a sensor or a trigger, so every one of
those can import from here without a cycle:

* :mod:`airflow_mps.utils.config`    — Airflow configuration the task classes read (``default_deferrable``).
* :mod:`airflow_mps.utils.deadlines` — the one deadline rule, seconds arguments, API timestamps.
* :mod:`airflow_mps.utils.events`    — the trigger event vocabulary (``EVENT_*``, error payloads, jitter).
* :mod:`airflow_mps.utils.results`   — what an MPS outcome becomes in Airflow (XCom, exceptions).
* :mod:`airflow_mps.utils.lineage`   — OpenLineage datasets of one ProcessImage.
* :mod:`airflow_mps.utils.sdk`       — loading the hook and the async SDK off the triggerer's event loop.

Nothing heavy is imported at module level here (no SDK, no hook): DAG parsing imports some of these.
"""
