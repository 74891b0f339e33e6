"""The emulator's image-task records and their sqlite store (`<data-dir>/mps/tasks.sqlite3`).

A `TaskRecord` is one task as the backend knows it (the submitted body, its state, its result); the
`TaskStore` persists records and answers the listing queries DescribeImageTasks needs: newest first,
filtered by states, creation time and failure, paged by an immutable sequence number.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from airflow_mps.models.constants import FINISH, PROCESSING, TASK_STATES, WAITING

__all__ = ["FINISH", "PROCESSING", "STATUSES", "WAITING", "TaskNotFound", "TaskRecord", "TaskStore"]

#: The task states, defined once in the models (re-exported here for the backend and its tests).
STATUSES = TASK_STATES


class TaskNotFound(KeyError):
    """No task with this id, or (raised by ``MpsBackend.get``) one older than the task retention."""


@dataclass
class TaskRecord:
    """One image task. `request` is the ProcessImage body as submitted (API-shaped)."""

    task_id: str
    seq: int
    status: str
    request: dict[str, Any]
    input_key: str
    create_time: float
    request_id: str = ""
    begin_time: float | None = None
    finish_time: float | None = None
    err_code: int = 0
    err_msg: str = ""
    message: str = ""
    result_status: str = "PROCESSING"
    progress: int = 0
    #: Where the output was written: {"bucket", "region", "key"}.
    output: dict[str, str] | None = None
    duration: float = 0.0

    @property
    def failed(self) -> bool:
        return self.status == FINISH and (self.err_code != 0 or self.result_status == "FAIL")


class TaskStore:
    """sqlite persistence for `TaskRecord`s; one connection guarded by a lock (safe across threads)."""

    def __init__(self, path: Path | None) -> None:
        self._lock = threading.Lock()
        target = ":memory:"
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            target = str(path)
        self._db = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        with self._lock:
            if path is not None:
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS tasks (seq INTEGER PRIMARY KEY, task_id TEXT UNIQUE NOT NULL,"
                " status TEXT NOT NULL, create_time REAL NOT NULL, failed INTEGER NOT NULL DEFAULT 0,"
                " record TEXT NOT NULL)"
            )

    def next_seq(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM tasks").fetchone()
        return int(row[0]) + 1

    def insert(self, rec: TaskRecord) -> TaskRecord:
        """Insert a new task, assigning its `seq` atomically."""
        with self._lock:
            row = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM tasks").fetchone()
            rec.seq = int(row[0]) + 1
            self._db.execute(
                "INSERT INTO tasks (seq, task_id, status, create_time, failed, record) VALUES (?,?,?,?,?,?)",
                (rec.seq, rec.task_id, rec.status, rec.create_time, int(rec.failed), json.dumps(asdict(rec))),
            )
        return rec

    def update(self, rec: TaskRecord) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE tasks SET status=?, failed=?, record=? WHERE task_id=?",
                (rec.status, int(rec.failed), json.dumps(asdict(rec)), rec.task_id),
            )

    def get(self, task_id: str) -> TaskRecord:
        with self._lock:
            row = self._db.execute("SELECT record FROM tasks WHERE task_id=?", (task_id,)).fetchone()
        if row is None:
            raise TaskNotFound(task_id)
        return TaskRecord(**json.loads(row[0]))

    def unfinished(self) -> list[TaskRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT record FROM tasks WHERE status != ? ORDER BY seq", (FINISH,)
            ).fetchall()
        return [TaskRecord(**json.loads(r[0])) for r in rows]

    def _where(
        self, statuses: tuple[str, ...], start: float | None, end: float | None, failed: bool | None
    ) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        if statuses:
            clauses.append(f"status IN ({', '.join('?' for _ in statuses)})")
            args.extend(statuses)
        if start is not None:
            clauses.append("create_time >= ?")
            args.append(start)
        if end is not None:
            clauses.append("create_time <= ?")
            args.append(end)
        if failed is not None:
            clauses.append("failed = ?")
            args.append(int(failed))
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args

    def query(
        self,
        *,
        statuses: tuple[str, ...] = (),
        start: float | None = None,
        end: float | None = None,
        failed: bool | None = None,
        before_seq: int | None = None,
        limit: int = 10,
    ) -> tuple[list[TaskRecord], int]:
        """Newest first; returns (page, total count matching the filters, ignoring the page cursor).
        ``statuses`` empty = any status; ``before_seq`` lists records with a smaller ``seq`` only."""
        where, args = self._where(statuses, start, end, failed)
        with self._lock:
            total = int(self._db.execute(f"SELECT COUNT(*) FROM tasks{where}", args).fetchone()[0])
            page_where, page_args = where, list(args)
            if before_seq is not None:
                page_where = (where + " AND " if where else " WHERE ") + "seq < ?"
                page_args.append(before_seq)
            rows = self._db.execute(
                f"SELECT record FROM tasks{page_where} ORDER BY seq DESC LIMIT ?", [*page_args, limit]
            ).fetchall()
        return [TaskRecord(**json.loads(r[0])) for r in rows], total

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM tasks").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
