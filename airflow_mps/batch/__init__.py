"""The engine behind ``MpsBatchProcessImageOperator``: planning, submission, adoption, waiting, report.

Kept apart from the operator and the trigger so that each piece is plain Python that can be unit
tested without Airflow. The decisions of waiting live once in :mod:`airflow_mps.waits.batch`; the
modules here that wait are its drivers.

* :mod:`airflow_mps.batch.plan` — arguments → ``BatchConfig`` and a ``Plan``: the ``BatchItem`` s (input,
  expected output key) and the inputs refused per image (``Planning.*`` codes), each item's
  ``ProcessImage`` request. Key rules: :mod:`airflow_mps.models.keys`.
* :mod:`airflow_mps.batch.ledger` — submissions recorded in ``task_state_store`` in small shards so a
  retry adopts what the previous try submitted.
* :mod:`airflow_mps.batch.adopt` — retry adoption: unrecorded tasks found by listing (FINISH and
  PROCESSING; rows without ``Input`` described) and verified, adopted tasks checked once
  (:func:`~airflow_mps.ownership.match_listed_rows` is the pure matcher).
* :mod:`airflow_mps.batch.resume` — phases 3-4 of a try: open the ledger, adopt, skip existing outputs.
* :mod:`airflow_mps.batch.submit` — the bounded, concurrent ``ProcessImage`` submitter.
* :mod:`airflow_mps.batch.overlap` — describing tasks that finish while the batch is still submitting
  (threaded driver of the wait core's listing half).
* :mod:`airflow_mps.batch.poll` — the in-place wait through the sync hook (driver of the wait core).
* :mod:`airflow_mps.batch.progress` — the wait state shared by every driver, and the compact record
  codec of the legacy (inline) trigger kwargs and events.
* :mod:`airflow_mps.batch.state` — the deferred batch's durable state: two objects next to the
  manifest, so trigger kwargs and events stay small at any N.
* :mod:`airflow_mps.batch.report` — manifest lines, the XCom summary, the partial-failure verdict.

Nothing here imports the Tencent Cloud SDK: the hook is passed in.
"""

from __future__ import annotations

#: File suffixes a listed prefix is filtered by when the operator's ``suffixes`` is not given (compared
#: case-insensitively). Here, not in :mod:`airflow_mps.batch.plan`, because it is the operator's
#: signature default: importing the package costs nothing at DAG-parse time, the planner does.
DEFAULT_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
