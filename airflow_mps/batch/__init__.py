"""The engine behind ``MpsBatchProcessImageOperator``: planning, submission, adoption, waiting, report.

Kept apart from the operator and the trigger so that each piece is plain Python that can be unit
tested without Airflow. The decisions of waiting live once in :mod:`airflow_mps.waits.batch`; the
modules here that wait are its drivers.

* :mod:`airflow_mps.batch.plan` — arguments → ``BatchConfig`` and ``BatchItem`` (input, expected output
  key), validation, each item's ``ProcessImage`` request.
* :mod:`airflow_mps.batch.ledger` — submissions recorded in ``task_state_store`` in small shards so a
  retry adopts what the previous try submitted.
* :mod:`airflow_mps.batch.adopt` — retry adoption: unrecorded tasks found by listing and verified,
  adopted tasks checked once (:func:`~airflow_mps.ownership.match_listed_rows` is the pure matcher).
* :mod:`airflow_mps.batch.submit` — the bounded, concurrent ``ProcessImage`` submitter.
* :mod:`airflow_mps.batch.overlap` — describing tasks that finish while the batch is still submitting
  (threaded driver of the wait core's listing half).
* :mod:`airflow_mps.batch.poll` — the in-place wait through the sync hook (driver of the wait core).
* :mod:`airflow_mps.batch.progress` — the wait state shared by every driver, and the compact record
  codec used in trigger kwargs and events.
* :mod:`airflow_mps.batch.report` — manifest lines, the XCom summary, the partial-failure verdict.

Nothing here imports the Tencent Cloud SDK: the hook is passed in.
"""

from __future__ import annotations

#: File suffixes a listed prefix is filtered by when the operator's ``suffixes`` is not given (compared
#: case-insensitively). Here, not in :mod:`airflow_mps.batch.plan`, because it is the operator's
#: signature default: importing the package costs nothing at DAG-parse time, the planner does.
DEFAULT_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
