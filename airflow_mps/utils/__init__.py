"""Neutral helpers shared by the operators, the sensors and the triggers (issue 10, design §8).

Each module has one role, and none of them imports an operator, a sensor or a trigger, so every one of
those can import from here without a cycle:

* :mod:`airflow_mps.utils.config`    — Airflow configuration the task classes read (``default_deferrable``).
* :mod:`airflow_mps.utils.deadlines` — the one deadline rule, the deferral timeout, seconds arguments.
* :mod:`airflow_mps.utils.events`    — the trigger event vocabulary (``EVENT_*``, error payloads, jitter).
* :mod:`airflow_mps.utils.results`   — what an MPS outcome becomes in Airflow (XCom, exceptions).
* :mod:`airflow_mps.utils.lineage`   — OpenLineage datasets of one ProcessImage.
* :mod:`airflow_mps.utils.metrics`   — the MPS operators' Airflow metrics.
* :mod:`airflow_mps.utils.rendered`  — checks of templated arguments right after rendering.
* :mod:`airflow_mps.utils.secrets`   — secrets in rendered arguments, registered with the masker.
* :mod:`airflow_mps.utils.sdk`       — loading the hook and the async SDK off the triggerer's event loop
  (what to load; the loading is ``airflow_mps.hooks._clients.preload_modules``).

The API's time strings are not here: they are domain facts, :mod:`airflow_mps.models.constants`
(``API_TIME_FORMAT``, ``format_api_time``, ``parse_api_time``).

Nothing heavy is imported at module level here (no SDK, no hook): DAG parsing imports some of these.
"""
