"""P5 helper, run in a fresh interpreter: time parsing one DAG file; prints one JSON line.

Default (the P5 headline): nothing preloaded, so the time includes importing Airflow — a fresh
interpreter parsing the file. ``--warm`` measures the incremental per-parse cost instead:

The DAG processor forks each parse from a process that has ``airflow.dag_processing.processor``
loaded and pre-imports the ``airflow.*`` modules the file names (``parsing_pre_import_modules``), so per
parse a file pays for executing itself, including importing any non-Airflow module (the provider, an
SDK). This script loads the same modules first, then times
``runpy.run_path`` of the file and prints ``{"file_seconds": ..., "tasks": ...}`` as JSON.
"""

from __future__ import annotations

import importlib
import json
import os
import runpy
import sys
import tempfile
import time

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="airflow-mps-bench-parse-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")


def main(path: str, warm: bool) -> None:
    if warm:
        import airflow.dag_processing.processor  # noqa: F401  (loaded in the process parses fork from)
        from airflow.utils.file import iter_airflow_imports

        for module in iter_airflow_imports(path):
            importlib.import_module(module)
    t0 = time.perf_counter()
    namespace = runpy.run_path(path, run_name="bench_dag")
    seconds = time.perf_counter() - t0
    from airflow.sdk import DAG

    dags = [v for v in namespace.values() if isinstance(v, DAG)]
    tasks = sum(len(d.tasks) for d in dags)
    print(json.dumps({"file_seconds": seconds, "tasks": tasks}))


if __name__ == "__main__":
    main(sys.argv[1], "--warm" in sys.argv[2:])
