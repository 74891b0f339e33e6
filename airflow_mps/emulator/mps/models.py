"""MPS backend state: image tasks (persisted in sqlite), the worker pool that runs them, rate limits.

Wire concerns (envelopes, codes, JSON) live in `mps/responses.py`, the sqlite task records in
`mps/store.py`; this module knows nothing of HTTP. A task goes WAITING → PROCESSING → FINISH on a
bounded pool of worker threads; every transition is committed before it becomes visible, so a stop (or
kill -9) and start loses nothing: tasks found WAITING/PROCESSING at start-up are queued again and finished.

A task that cannot be done FINISHes failed with an ``ErrMsg`` from the documented media-processing task
error list (doc 862/50369, VOD's 266/50368): see :data:`TASK_FAILURES` and docs/emulator-fidelity.md.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from airflow_mps.emulator.config import EmulatorConfig
from airflow_mps.emulator.faults import FaultPlan
from airflow_mps.emulator.mps.store import (
    FINISH,
    PROCESSING,
    STATUSES,
    WAITING,
    TaskNotFound,
    TaskRecord,
    TaskStore,
)
from airflow_mps.emulator.stats import Stats
from airflow_mps.models.storage import input_path_of, render_output_path

__all__ = [
    "FINISH",
    "PROCESSING",
    "STATUSES",
    "TASK_FAILURES",
    "WAITING",
    "MpsBackend",
    "RateLimiter",
    "SubmitError",
    "TaskFailure",
    "TaskNotFound",
    "TaskRecord",
    "TaskStore",
    "imaging_failure_kind",
    "input_key",
    "resolve_output",
]

log = logging.getLogger(__name__)


#: Numeric ``ErrCode`` of failed tasks, one per family of documented ``ErrMsg`` codes. The service
#: publishes no numbers for image tasks: these are the emulator's own. Match on ``ErrMsg``.
ERR_INVALID_INPUT = 40000  # InvalidInput*
ERR_SOURCE_FILE = 60000  # SourceFileError*
ERR_INTERNAL = 70000  # InternalError (also the default of an injected `task_fail`)

#: Every way an emulated task fails → (ErrCode, ErrMsg). ErrMsg values are from the documented task
#: error list (doc 862/50369; the finer SourceFileError.* and InvalidInput.ConfigurationUnsupported
#: from VOD's 266/50368, whose meanings fit best). The reasons are in docs/emulator-fidelity.md.
TASK_FAILURES: dict[str, tuple[int, str]] = {
    # the COS input object or its bucket does not exist ("如文件不存在")
    "missing_input": (ERR_SOURCE_FILE, "SourceFileError.ContentMalformed"),
    # a URL input could not be downloaded ("尝试下载输入文件时，这些文件无法访问")
    "download_failed": (ERR_SOURCE_FILE, "SourceFileError.DownloadNotAccessible"),
    # empty, truncated or not an image ("文件损坏、媒体文件无法解码")
    "corrupt_input": (ERR_SOURCE_FILE, "SourceFileError.ContentMalformed"),
    # an image the emulator will not hold (too many pixels: "不受支持的文件大小")
    "unsupported_input": (ERR_SOURCE_FILE, "SourceFileError.ContentUnsupported"),
    # a parameter value that cannot be applied to this image, or a config the emulator cannot run
    # ("配置无效 … 输入参数取值非法")
    "bad_parameters": (ERR_INVALID_INPUT, "InvalidInput.ConfigurationUnsupported"),
    # the output cannot be written (the output bucket does not exist, or COS refuses the key): a bad
    # OutputStorage, "输入参数不合法" (862/50369)
    "bad_output": (ERR_INVALID_INPUT, "InvalidInput"),
    # anything else that went wrong inside the emulator
    "internal": (ERR_INTERNAL, "InternalError"),
}


class RateLimiter:
    """Per (SecretId, action) sliding one-second window over *accepted* requests.

    A request is refused when `limit` requests were already accepted in the last second; refused
    requests do not consume quota. `N` in the refusal message counts every request in the window
    (accepted and refused), like the real service's "request times equals to N in a second".
    """

    def __init__(self, limits: Callable[[str], int], window: float = 1.0) -> None:
        self._limits = limits
        self._window = window
        self._lock = threading.Lock()
        self._accepted: dict[tuple[str, str], deque[float]] = {}
        self._seen: dict[tuple[str, str], deque[float]] = {}

    def check(self, secret_id: str, action: str, now: float | None = None) -> tuple[bool, int, int]:
        """Return (allowed, requests in the window including this one, limit)."""
        limit = self._limits(action)
        if limit <= 0:
            return True, 0, limit
        now = time.monotonic() if now is None else now
        key = (secret_id, action)
        with self._lock:
            accepted = self._accepted.setdefault(key, deque())
            seen = self._seen.setdefault(key, deque())
            horizon = now - self._window
            while accepted and accepted[0] <= horizon:
                accepted.popleft()
            while seen and seen[0] <= horizon:
                seen.popleft()
            seen.append(now)
            if len(accepted) >= limit:
                return False, len(seen), limit
            accepted.append(now)
            return True, len(seen), limit

    def reset(self) -> None:
        with self._lock:
            self._accepted.clear()
            self._seen.clear()


class SubmitError(Exception):
    """ProcessImage refused at submit time; `code` is the MPS error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class TaskFailure(Exception):
    """Processing failed; the task FINISHes with these values."""

    def __init__(self, err_code: int, err_msg: str, message: str) -> None:
        super().__init__(message)
        self.err_code = err_code
        self.err_msg = err_msg
        self.message = message

    @classmethod
    def of(cls, kind: str, message: str) -> TaskFailure:
        """The failure of one of the :data:`TASK_FAILURES` kinds."""
        err_code, err_msg = TASK_FAILURES[kind]
        return cls(err_code, err_msg, message)


def input_key(info: dict[str, Any]) -> str:
    """A stable identity of a ProcessImage input (for duplicate-submission stats and reconciliation)."""
    kind = str(info.get("Type") or "").upper()
    if kind == "COS":
        cos = info.get("CosInputInfo") or {}
        return f"cos://{cos.get('Bucket', '')}/{str(cos.get('Object', '')).lstrip('/')}"
    if kind == "URL":
        return str((info.get("UrlInputInfo") or {}).get("Url", ""))
    return json.dumps(info, sort_keys=True)


def resolve_output(request: dict[str, Any], fmt: str) -> tuple[str, str, str]:
    """(bucket, region, key) of the output per mps-api.md §3.

    Storage: OutputStorage.CosOutputStorage, blank fields inherited from the COS input. Key: the
    provider's own rule, :func:`airflow_mps.models.storage.render_output_path` (every OutputPath
    variable, OutputDir or the input's directory), so what the emulator writes is what
    ``expected_output_key`` predicts.
    """
    info = request.get("InputInfo") or {}
    cos: dict[str, Any] = {}
    if str(info.get("Type") or "").upper() == "COS":
        cos = info.get("CosInputInfo") or {}
    storage = (request.get("OutputStorage") or {}).get("CosOutputStorage") or {}
    bucket = str(storage.get("Bucket") or cos.get("Bucket") or "")
    region = str(storage.get("Region") or cos.get("Region") or "")
    definition = request.get("Definition")
    key = render_output_path(
        input_path_of(info) or "output",
        fmt,
        output_dir=request.get("OutputDir") or None,
        output_path=request.get("OutputPath") or None,
        definition=definition if isinstance(definition, int) else None,
    )
    return bucket, region, key


@dataclass
class _Clock:
    wall: Callable[[], float] = time.time


@dataclass
class MpsBackend:
    """Tasks, workers and limits of one emulator instance."""

    config: EmulatorConfig
    faults: FaultPlan
    stats: Stats
    cos: Any = None
    clock: _Clock = field(default_factory=_Clock)

    def __post_init__(self) -> None:
        db = None if self.config.data_dir is None else Path(self.config.data_dir) / "mps" / "tasks.sqlite3"
        self.store = TaskStore(db)
        self.limiter = RateLimiter(self._limit_for)
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._rng = random.Random(self.config.seed)
        self._rng_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._submit_lock = threading.Lock()
        self._idle = threading.Condition()
        self._busy = 0

    def _limit_for(self, action: str) -> int:
        if action == "ProcessImage":
            return int(self.config.process_image_rate)
        if action.startswith("Describe"):
            return int(self.config.describe_rate)
        return 0

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the workers and queue every task a previous run left unfinished."""
        for rec in self.store.unfinished():
            log.info("re-queueing unfinished task %s (%s)", rec.task_id, rec.status)
            self._enqueue(rec.task_id)
        for i in range(max(1, int(self.config.workers))):
            t = threading.Thread(target=self._worker, name=f"mps-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()
        self.store.close()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until no task is queued or running (tests use it instead of sleeping)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(min(remaining, 0.1))
        return True

    # -- API operations ----------------------------------------------------------------------------
    def submit(self, body: dict[str, Any], request_id: str) -> TaskRecord:
        """Create a task for an already validated ProcessImage body and queue it."""
        self._check_supported(body)
        info = body.get("InputInfo") or {}
        rec = TaskRecord(
            task_id=f"{self.config.appid}-WorkflowTask-{uuid.uuid4().hex}",
            seq=0,
            status=WAITING,
            request=body,
            input_key=input_key(info),
            create_time=self.clock.wall(),
            request_id=request_id,
        )
        with self._rng_lock:
            lo, hi = self.config.task_duration
            rec.duration = lo if hi <= lo else self._rng.uniform(lo, hi)
        self.store.insert(rec)
        self.stats.task_created(rec.input_key)
        self._enqueue(rec.task_id)
        return rec

    def _enqueue(self, task_id: str) -> None:
        # `_busy` counts queued + running tasks, so `wait_idle` cannot miss one between get() and run.
        with self._idle:
            self._busy += 1
        self._queue.put(task_id)

    def _check_supported(self, body: dict[str, Any]) -> None:
        """Refuse, at submit time, what the emulator cannot store or read (AWS-S3/VOD storage).

        A ``ScheduleId`` request passes (InputInfo may even be absent, as api.json allows): the task is
        created as the service would, and FINISHes failed because orchestrations are not emulated.
        """
        if body.get("ScheduleId") is not None:
            return
        info = body.get("InputInfo")
        if not isinstance(info, dict):
            raise SubmitError("MissingParameter", "The request is missing a required parameter `InputInfo`.")
        kind = str(info.get("Type") or "")
        if kind.upper() not in ("COS", "URL"):
            raise SubmitError(
                "InvalidParameterValue",
                f"InputInfo.Type {kind!r} is not supported by the emulator; allowed values: COS, URL "
                "(AWS-S3 and VOD inputs need the real service).",
            )
        if kind.upper() == "COS":
            cos = info.get("CosInputInfo") or {}
            for name in ("Bucket", "Region", "Object"):
                if not cos.get(name):
                    raise SubmitError(
                        "MissingParameter",
                        f"The request is missing a required parameter `InputInfo.CosInputInfo.{name}`.",
                    )
        else:
            url = str((info.get("UrlInputInfo") or {}).get("Url") or "")
            if not url:
                raise SubmitError(
                    "MissingParameter",
                    "The request is missing a required parameter `InputInfo.UrlInputInfo.Url`.",
                )
            if urlsplit(url).scheme not in ("http", "https"):
                raise SubmitError(
                    "InvalidParameterValue",
                    f"InputInfo.UrlInputInfo.Url must be an http(s) URL, got {url!r}.",
                )
        storage = body.get("OutputStorage")
        if storage is not None:
            stype = str((storage or {}).get("Type") or "")
            if stype.upper() != "COS":
                raise SubmitError(
                    "InvalidParameterValue",
                    f"OutputStorage.Type {stype!r} is not supported by the emulator; allowed values: COS "
                    "(AWS-S3 and VOD outputs need the real service).",
                )
        cos_out = (storage or {}).get("CosOutputStorage") or {}
        if kind.upper() == "URL" and not (cos_out.get("Bucket") and cos_out.get("Region")):
            raise SubmitError(
                "InvalidParameterValue",
                "OutputStorage.CosOutputStorage (Bucket and Region) is required when InputInfo.Type is URL: "
                "there is no input storage to inherit.",
            )

    def retention_cutoff(self) -> float | None:
        """The CreateTime before which a task is forgotten (``None``: tasks are kept forever).

        MPS answers for tasks of the last 7 days only (mps-api.md §2.1, §2.3); the emulator counts
        ``config.task_retention_seconds`` back from its own clock (``clock.wall``), so a test can move
        time. Expired tasks stay in the store (moving the clock back shows them again).
        """
        retention = self.config.task_retention_seconds
        return None if retention is None else self.clock.wall() - retention

    def get(self, task_id: str) -> TaskRecord:
        """The task as the API sees it: ``TaskNotFound`` when unknown or older than the retention."""
        rec = self.store.get(task_id)
        cutoff = self.retention_cutoff()
        if cutoff is not None and rec.create_time < cutoff:
            raise TaskNotFound(task_id)
        return rec

    def list(self, **filters: Any) -> tuple[list[TaskRecord], int]:
        """``TaskStore.query`` over the tasks still kept (created at or after the retention cutoff)."""
        cutoff = self.retention_cutoff()
        if cutoff is not None:
            start = filters.get("start")
            filters["start"] = cutoff if start is None else max(float(start), cutoff)
        return self.store.query(**filters)

    # -- workers -----------------------------------------------------------------------------------
    def _worker(self) -> None:
        while not self._stopping.is_set():
            task_id = self._queue.get()
            if task_id is None:
                return
            try:
                self._run(task_id)
            except Exception:  # a bug must not kill the worker; the task is finished as failed
                log.exception("task %s crashed", task_id)
                try:
                    rec = self.store.get(task_id)
                    self._finish(rec, TaskFailure.of("internal", "Emulator internal error."))
                except Exception:
                    log.exception("could not record the failure of %s", task_id)
            finally:
                with self._idle:
                    self._busy -= 1
                    self._idle.notify_all()

    def _run(self, task_id: str) -> None:
        rec = self.store.get(task_id)
        if rec.status == FINISH:
            return
        started = time.monotonic()
        rec.status = PROCESSING
        rec.begin_time = rec.begin_time or self.clock.wall()
        rec.progress = 10
        self.store.update(rec)
        failure: TaskFailure | None = None
        try:
            injected = self.faults.for_task()
            if injected is not None:
                raise TaskFailure(injected.err_code, injected.err_msg, injected.message)
            schedule = rec.request.get("ScheduleId")
            if schedule is not None:
                raise TaskFailure.of(
                    "bad_parameters",
                    f"ScheduleId {schedule} orchestrations are not emulated (they need the real service).",
                )
            data = self._read_input(rec.request)
            processed = self._process(data, rec.request)
            bucket, region, key = resolve_output(rec.request, processed.format)
            self._write_output(bucket, key, processed)
            rec.output = {"bucket": bucket, "region": region, "key": key}
        except TaskFailure as exc:
            failure = exc
        remaining = rec.duration - (time.monotonic() - started)
        if remaining > 0 and not self._stopping.wait(remaining):
            pass
        if self._stopping.is_set():
            return  # left PROCESSING on disk: re-queued at the next start
        self._finish(rec, failure)

    def _finish(self, rec: TaskRecord, failure: TaskFailure | None) -> None:
        rec.status = FINISH
        rec.finish_time = self.clock.wall()
        if rec.begin_time is None:
            rec.begin_time = rec.finish_time
        if failure is None:
            rec.result_status, rec.progress = "SUCCESS", 100
            rec.err_code, rec.err_msg, rec.message = 0, "", "SUCCESS"
        else:
            rec.result_status, rec.progress = "FAIL", 0
            rec.err_code, rec.err_msg, rec.message = failure.err_code, failure.err_msg, failure.message
        self.store.update(rec)
        self.stats.task_finished(failure is None)

    def _read_input(self, request: dict[str, Any]) -> bytes:
        info = request["InputInfo"]
        if str(info.get("Type")).upper() == "URL":
            url = str(info["UrlInputInfo"]["Url"])
            try:
                with urllib.request.urlopen(url, timeout=self.config.url_fetch_timeout) as resp:
                    return bytes(resp.read())
            except (urllib.error.URLError, OSError, ValueError) as exc:
                raise TaskFailure.of("download_failed", f"Failed to download the input URL: {exc}") from None
        cos = info["CosInputInfo"]
        bucket, key = str(cos["Bucket"]), str(cos["Object"]).lstrip("/")
        if self.cos is None:
            raise TaskFailure.of("internal", "The emulator's COS backend is not available.")
        from airflow_mps.emulator.cos import errors as cos_errors

        try:
            obj = self.cos.get_object(bucket, key)
        except (cos_errors.CosNoSuchBucket, cos_errors.CosInvalidBucketName):
            raise TaskFailure.of(
                "missing_input", f"The input file cos://{bucket}/{key} does not exist (no such bucket)."
            ) from None
        except (cos_errors.CosNoSuchKey, cos_errors.CosKeyTooLong):
            raise TaskFailure.of(
                "missing_input", f"The input file cos://{bucket}/{key} does not exist."
            ) from None
        return _object_bytes(obj)

    def _process(self, data: bytes, request: dict[str, Any]) -> Any:
        try:
            from airflow_mps.emulator import imaging
        except ImportError:
            raise TaskFailure.of("internal", "The emulator's imaging module is not available.") from None
        try:
            return imaging.process(data, _unset_zero_sides(request.get("ImageTask")))
        except imaging.ImagingError as exc:
            raise TaskFailure.of(imaging_failure_kind(exc.code, exc.message), exc.message) from None

    def _write_output(self, bucket: str, key: str, processed: Any) -> None:
        if self.cos is None:
            raise TaskFailure.of("internal", "The emulator's COS backend is not available.")
        from airflow_mps.emulator.cos import errors as cos_errors

        content_type = {
            "jpeg": "image/jpeg",
            "png": "image/png",
            "bmp": "image/bmp",
            "webp": "image/webp",
        }.get(processed.format, "application/octet-stream")
        try:
            # Real MPS cannot write into a bucket that does not exist: the task fails (a missing output
            # bucket is a bad OutputStorage). `auto_create_buckets` (lenient) is the old behaviour.
            self.cos.put_object(
                bucket,
                key,
                processed.data,
                content_type=content_type,
                create_bucket=self.config.auto_create_buckets,
            )
        except (cos_errors.CosNoSuchBucket, cos_errors.CosInvalidBucketName):
            raise TaskFailure.of(
                "bad_output",
                f"The output bucket {bucket!r} does not exist: create it first (COS PUT Bucket).",
            ) from None
        except cos_errors.CosError as exc:  # e.g. a key COS refuses (too long)
            raise TaskFailure.of(
                "bad_output", f"The output cos://{bucket}/{key} cannot be written: {exc}"
            ) from None

    def tasks(self) -> Iterator[TaskRecord]:
        """Every stored task, newest first, expired ones included (for inspection, not the API)."""
        before = None
        while True:
            page, _ = self.store.query(before_seq=before, limit=100)
            if not page:
                return
            yield from page
            before = page[-1].seq


def imaging_failure_kind(code: str, message: str) -> str:
    """The :data:`TASK_FAILURES` kind of an ``ImagingError``: its code says which family, and for
    ``InvalidParameterValue.SrcFile`` the message tells a too-large image from an unreadable one."""
    if code == "InvalidParameterValue.SrcFile":
        too_big = "pixels" in message or "too large" in message
        return "unsupported_input" if too_big else "corrupt_input"
    if code == "InternalError":
        return "internal"
    return "bad_parameters"  # UnsupportedOperation, InvalidParameterValue*, MissingParameter


#: ``AdvancedSuperResolutionConfig`` sides for which 0 means "not set" (the model accepts 0-4096).
_ZERO_UNSET_SIDES = ("Width", "Height", "LongSide", "ShortSide")


def _unset_zero_sides(image_task: Any) -> Any:
    """``image_task`` with AdvancedSuperResolutionConfig sides of 0 removed (0 = not set)."""
    if not isinstance(image_task, dict):
        return image_task
    enhance = image_task.get("EnhanceConfig")
    if not isinstance(enhance, dict):
        return image_task
    config = enhance.get("AdvancedSuperResolutionConfig")
    if not isinstance(config, dict) or not any(config.get(k) == 0 for k in _ZERO_UNSET_SIDES):
        return image_task
    cleaned = {k: v for k, v in config.items() if not (k in _ZERO_UNSET_SIDES and v == 0)}
    return {**image_task, "EnhanceConfig": {**enhance, "AdvancedSuperResolutionConfig": cleaned}}


def _object_bytes(obj: Any) -> bytes:
    """Bytes of whatever `CosBackend.get_object` returns (bytes, or an object with `.data`/`.read()`)."""
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj)
    for attr in ("data", "body", "content"):
        value = getattr(obj, attr, None)
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
    if hasattr(obj, "read"):
        return obj.read()
    path = getattr(obj, "path", None)
    if path is not None:
        return Path(path).read_bytes()
    raise TypeError(f"cannot read bytes from {type(obj).__name__}")
