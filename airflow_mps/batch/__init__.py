"""The engine behind ``MpsBatchProcessImageOperator``: planning, durable submission records, waiting.

Kept apart from the operator and the trigger so that each piece is plain Python that can be unit
tested without Airflow, and so that the operator (sync wait) and the trigger (async wait) share one
implementation of "which of my tasks finished, and how":

* :mod:`airflow_mps.batch.plan` — source listing → ``BatchItem`` (input, expected output key), argument
  validation, skip-existing.
* :mod:`airflow_mps.batch.ledger` — submissions recorded in ``task_state_store`` in small shards so a
  retry adopts what the previous try submitted.
* :mod:`airflow_mps.batch.progress` — the wait state shared by the trigger and the in-process poll
  loop, the compact record codec used in trigger kwargs and events, and the manifest.

Nothing here imports the Tencent Cloud SDK: the hook is passed in.
"""
