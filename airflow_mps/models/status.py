"""What MPS says about image tasks: :class:`ImageTaskStatus` (one task's detail), its outputs and
sub-results, and :class:`ImageTaskInfo` (one row of a listing).

Every reader is null-tolerant: the service documents most fields as "may return null"
(DescribeImageTaskDetail; mps-api.md §2.1). The rules relied on by the operators, the sensor and
the triggers:

* ``FINISH`` is not success: ``ErrCode``, ``ErrMsg`` and each sub-result's ``Status``/``ErrMsg`` decide.
* A ``FINISH`` task with no error signal and an empty result set counts as succeeded with no outputs
  (the 2025 service returned exactly that shape for a successful task).
* Outputs without their own ``OutputStorage`` were written next to a COS input (the API's default).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from airflow_mps.models.constants import FINISH, PROCESSING, TASK_STATES, UNSET_TIMES, WAITING
from airflow_mps.models.listing import image_task_conflicts
from airflow_mps.models.storage import cos_uri

__all__ = ["ImageTaskInfo", "ImageTaskStatus", "SubTaskResult", "TaskOutput"]


@dataclass(frozen=True)
class TaskOutput:
    """One output file of a finished task. ``path`` is the object key without a leading slash."""

    bucket: str | None
    region: str | None
    path: str | None
    uri: str | None = None
    signed_url: str | None = None
    content: str | None = None
    file_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (XCom, trigger events); :meth:`from_dict` inverts it."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskOutput:
        """Inverse of :meth:`to_dict` (missing keys read as ``None``)."""
        return cls(**{f.name: data.get(f.name) for f in fields(cls)})

    @classmethod
    def from_api(
        cls, output: Mapping[str, Any] | None, default_storage: Mapping[str, Any] | None = None
    ) -> TaskOutput | None:
        """From an ``ImageProcessTaskOutput`` dict; ``None`` when there is nothing to report."""
        if not output:
            return None
        raw_path = output.get("Path") or None
        storage = output.get("OutputStorage") or default_storage or {}
        cos = storage.get("CosOutputStorage") or {}
        s3 = storage.get("S3OutputStorage") or {}
        bucket = cos.get("Bucket") or s3.get("S3Bucket") or None
        region = cos.get("Region") or s3.get("S3Region") or None
        path = raw_path.lstrip("/") if raw_path else None
        uri = None
        if bucket and path:
            uri = f"s3://{bucket}/{path}" if storage.get("Type") == "AWS-S3" else cos_uri(bucket, path)
        result = cls(
            bucket=bucket,
            region=region,
            path=path,
            uri=uri,
            signed_url=output.get("SignedUrl") or None,
            content=output.get("Content") or None,
            file_id=output.get("FileId") or None,
        )
        if not any((result.path, result.signed_url, result.content, result.file_id)):
            return None
        return result


#: An ``ErrMsg`` that is a code: ``FailedOperation.Xxx`` or a single PascalCase word.
_CODE_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*(\.[A-Za-z0-9_]+)+|[A-Z][A-Za-z0-9]+")


def _looks_like_code(text: str | None) -> bool:
    """Whether an ``ErrMsg`` is an error code (``FailedOperation.Xxx``) rather than prose."""
    return bool(text) and _CODE_RE.fullmatch(text or "") is not None


def _time(value: Any) -> str | None:
    """An API time string as sent, or ``None`` when unset (``0000-00-00T00:00:00Z``) or not a string."""
    if not isinstance(value, str) or value in UNSET_TIMES:
        return None
    return value


@dataclass(frozen=True)
class SubTaskResult:
    """One ``ImageProcessTaskResult``: status ``PROCESSING|SUCCESS|FAIL``, error text, progress."""

    status: str | None
    err_msg: str | None = None
    message: str | None = None
    progress: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form; :meth:`from_dict` inverts it."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SubTaskResult:
        """Inverse of :meth:`to_dict` (missing keys read as ``None``)."""
        return cls(**{f.name: data.get(f.name) for f in fields(cls)})


def _plain_int(value: Any) -> int | None:
    """``value`` if it is an int (never a bool), else ``None``."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _state(status: Any) -> str:
    """A task state of ``TASK_STATES``: as sent, or upper-cased; ``WAITING`` when missing and
    ``PROCESSING`` when unknown (the task is not done until the service says ``FINISH``)."""
    state: str = status or WAITING
    if state not in TASK_STATES:
        state = str(state).upper() if str(state).upper() in TASK_STATES else PROCESSING
    return state


def _default_storage(resp: Mapping[str, Any]) -> dict[str, Any] | None:
    """Where outputs without their own OutputStorage were written: next to a COS input (the API's
    default); ``None`` for other inputs."""
    input_info = resp.get("InputInfo") or {}
    if isinstance(input_info, Mapping) and input_info.get("Type") == "COS":
        cos_in = input_info.get("CosInputInfo") or {}
        if isinstance(cos_in, Mapping) and cos_in.get("Bucket"):
            return {
                "Type": "COS",
                "CosOutputStorage": {"Bucket": cos_in.get("Bucket"), "Region": cos_in.get("Region")},
            }
    return None


def _results(
    results_raw: Any, default_storage: Mapping[str, Any] | None
) -> tuple[list[SubTaskResult], list[TaskOutput]]:
    """The sub-results of ``ImageProcessTaskResultSet`` (items that are not objects skipped) and the
    outputs they report."""
    results: list[SubTaskResult] = []
    outputs: list[TaskOutput] = []
    for item in results_raw:
        if not isinstance(item, Mapping):
            continue
        results.append(
            SubTaskResult(
                status=item.get("Status") or None,
                err_msg=item.get("ErrMsg") or None,
                message=item.get("Message") or None,
                progress=_plain_int(item.get("Progress")),
            )
        )
        out = TaskOutput.from_api(item.get("Output"), default_storage)
        if out is not None:
            outputs.append(out)
    return results, outputs


def _finish_error(
    err_code: int | None, err_msg: str | None, message: str | None, results: list[SubTaskResult]
) -> tuple[str | None, str | None]:
    """(error_code, error_message) of a ``FINISH``ed task, ``(None, None)`` without an error signal
    (the rules: :class:`ImageTaskStatus`'s docstring)."""
    # A sub-result with no Status at all (null-tolerance) is judged by its ErrMsg only.
    failing = [r for r in results if r.status in ("FAIL", "PROCESSING") or r.err_msg]
    if not (bool(err_msg) or (err_code not in (0, None)) or bool(failing)):
        return None, None
    sub = failing[0] if failing else None
    if _looks_like_code(err_msg):
        error_code = err_msg
    elif sub is not None and _looks_like_code(sub.err_msg):
        error_code = sub.err_msg
    elif err_code not in (0, None):
        error_code = str(err_code)
    else:
        error_code = "TaskFailed"
    candidates = [
        message,
        sub.message if sub else None,
        None if _looks_like_code(err_msg) else err_msg,
        sub.err_msg if sub and not _looks_like_code(sub.err_msg) else None,
    ]
    error_message = next((c for c in candidates if c), None)
    if error_message is None:
        if sub is not None and sub.status != "SUCCESS":
            error_message = f"sub-task status {sub.status or 'missing'}"
        else:
            error_message = f"task finished with error {error_code}"
    return error_code, error_message


def _progress(state: str, results: list[SubTaskResult]) -> int | None:
    """100 when finished; else the least sub-result progress, 0 while waiting, ``None`` if unknown."""
    if state == FINISH:
        return 100
    values = [r.progress for r in results if r.progress is not None]
    return min(values) if values else (0 if state == WAITING else None)


@dataclass(frozen=True)
class ImageTaskStatus:
    """The state of an image task (``DescribeImageTaskDetail``).

    ``succeeded``: ``FINISH`` and ``ErrCode`` in (0, None) and ``ErrMsg`` empty and no sub-result is
    ``FAIL`` (or still ``PROCESSING``) or carries an ``ErrMsg``; an empty result set counts as success
    with no outputs, and a sub-result without any ``Status`` is judged by its ``ErrMsg`` alone (null
    tolerance). ``failed``: ``FINISH`` and not succeeded. ``error_code``: ``ErrMsg`` when it is a code (``FailedOperation.Xxx``), else a failing
    sub-result's ``ErrMsg`` code, else ``str(ErrCode)`` when non-zero, else ``"TaskFailed"`` (a sub-result
    failed without a code). ``error_message``: ``Message``, else the failing sub-result's
    ``Message``/``ErrMsg``, else ``ErrMsg`` when it is prose.
    """

    task_id: str | None
    state: str
    outputs: tuple[TaskOutput, ...] = ()
    error_code: str | None = None
    error_message: str | None = None
    request_id: str | None = None
    create_time: str | None = None
    finish_time: str | None = None
    progress: int | None = None
    err_code: int | None = None
    results: tuple[SubTaskResult, ...] = ()
    #: The ``ImageTask`` the service echoes back, as canonical JSON (``None`` when not echoed). Used to
    #: tell our task from another request with the same input (:meth:`conflicts_with`); not part of
    #: :meth:`to_dict` (XCom and events stay small).
    image_task: str | None = field(default=None, compare=False, repr=False)

    @property
    def done(self) -> bool:
        """The task reached ``FINISH`` (successfully or not)."""
        return self.state == FINISH

    @property
    def succeeded(self) -> bool:
        """Finished with no error signal (see the class docstring)."""
        return self.done and self.error_code is None

    @property
    def failed(self) -> bool:
        """Finished with an error signal: ``error_code`` says which."""
        return self.done and not self.succeeded

    @classmethod
    def from_api(cls, response: Mapping[str, Any] | None, task_id: str | None = None) -> ImageTaskStatus:
        """From the ``Response`` object of DescribeImageTaskDetail (or the whole ``{"Response": …}``);
        tolerant of missing/null fields everywhere."""
        resp: Mapping[str, Any] = response or {}
        if "Response" in resp and isinstance(resp.get("Response"), Mapping):
            resp = resp["Response"]
        state = _state(resp.get("Status"))
        err_code = _plain_int(resp.get("ErrCode"))
        results, outputs = _results(resp.get("ImageProcessTaskResultSet") or [], _default_storage(resp))
        error_code: str | None = None
        error_message: str | None = None
        if state == FINISH:
            error_code, error_message = _finish_error(
                err_code, resp.get("ErrMsg") or None, resp.get("Message") or None, results
            )
        return cls(
            task_id=task_id if task_id is not None else (resp.get("TaskId") or None),
            state=state,
            outputs=tuple(outputs),
            error_code=error_code,
            error_message=error_message,
            request_id=resp.get("RequestId") or None,
            create_time=_time(resp.get("CreateTime")),
            finish_time=_time(resp.get("FinishTime")),
            progress=_progress(state, results),
            err_code=err_code,
            results=tuple(results),
            image_task=(
                json.dumps(resp["ImageTask"], sort_keys=True, separators=(",", ":"))
                if isinstance(resp.get("ImageTask"), Mapping)
                else None
            ),
        )

    def conflicts_with(
        self,
        *,
        image_task: Mapping[str, Any] | None,
        output_bucket: str | None = None,
        output_key: str | None = None,
        output_dir: str | None = None,
    ) -> str | None:
        """Why this task cannot be the one a request with these values created, or ``None``.

        Reconciliation matches listed tasks by input; another pipeline processing the same image
        (thumbnails next to enhanced copies) creates tasks with the same input. Two proofs tell them
        apart: the echoed ``ImageTask`` contradicts ours (:func:`image_task_conflicts`), or the task
        finished with outputs none of which is at our output key (or under our output directory).
        Fields the service did not return never conflict (null tolerance): no proof, no conflict.
        """
        if self.image_task is not None and image_task_conflicts(image_task, json.loads(self.image_task)):
            return "its ImageTask differs from ours"
        paths = [(o.bucket, (o.path or "").lstrip("/")) for o in self.outputs if o.path]
        if paths and (output_key or output_dir):
            want_key = (output_key or "").lstrip("/")
            want_dir = (output_dir or "").strip("/")

            def ours(bucket: str | None, path: str) -> bool:
                """Whether an output at ``bucket``/``path`` is where this request writes."""
                if output_bucket and bucket and bucket != output_bucket:
                    return False
                if want_key:
                    return path == want_key
                return path.startswith(want_dir + "/") if want_dir else "/" not in path

            if not any(ours(b, p) for b, p in paths):
                return f"its outputs ({', '.join(p for _, p in paths)}) are not where ours go"
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (XCom, trigger events); :meth:`from_dict` inverts it."""
        return {
            "task_id": self.task_id,
            "state": self.state,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "outputs": [o.to_dict() for o in self.outputs],
            "error_code": self.error_code,
            "error_message": self.error_message,
            "request_id": self.request_id,
            "create_time": self.create_time,
            "finish_time": self.finish_time,
            "progress": self.progress,
            "err_code": self.err_code,
            "results": [r.to_dict() for r in self.results],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImageTaskStatus:
        """Inverse of :meth:`to_dict` (the echoed ``ImageTask`` is not carried)."""
        return cls(
            task_id=data.get("task_id"),
            state=data.get("state") or WAITING,
            outputs=tuple(TaskOutput.from_dict(o) for o in data.get("outputs") or ()),
            error_code=data.get("error_code"),
            error_message=data.get("error_message"),
            request_id=data.get("request_id"),
            create_time=data.get("create_time"),
            finish_time=data.get("finish_time"),
            progress=data.get("progress"),
            err_code=data.get("err_code"),
            results=tuple(SubTaskResult.from_dict(r) for r in data.get("results") or ()),
        )


@dataclass(frozen=True)
class ImageTaskInfo:
    """One row of ``DescribeImageTasks.TaskSet``."""

    task_id: str
    status: str | None = None
    create_time: str | None = None
    begin_process_time: str | None = None
    finish_time: str | None = None
    sub_task_has_failed: bool | None = None
    input: str | None = None

    @classmethod
    def from_api(cls, row: Mapping[str, Any]) -> ImageTaskInfo:
        """From one ``TaskSet`` row; missing or null fields read as ``None`` (``task_id`` as ``""``)."""
        row = row or {}
        failed = row.get("SubTaskHasFailed")
        return cls(
            task_id=row.get("TaskId") or "",
            status=row.get("Status") or None,
            create_time=_time(row.get("CreateTime")),
            begin_process_time=_time(row.get("BeginProcessTime")),
            finish_time=_time(row.get("FinishTime")),
            sub_task_has_failed=failed if isinstance(failed, bool) else None,
            input=row.get("Input") or None,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form; :meth:`from_dict` inverts it."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImageTaskInfo:
        """Inverse of :meth:`to_dict` (missing keys read as ``None``)."""
        values: dict[str, Any] = {f.name: data.get(f.name) for f in fields(cls)}
        return cls(**values)
