"""MPS wire layer: TC3-verified JSON API 3.0 requests in, `{"Response": {...}}` envelopes out.

Every answer is HTTP 200 with `Content-Type: application/json` exactly (the SDK only recognises an
error envelope with that exact header, mps-api.md §0.5). Errors go under `Response.Error{Code,
Message}`; every response carries a fresh `RequestId`.

Checks, in order: body size (RequestSizeLimitExceeded) → signature (AuthFailure.*) → X-TC-Version
(NoSuchVersion) → action (InvalidAction) → X-TC-Region, when sent, one of the documented MPS regions
(UnsupportedRegion) → per-SecretId rate limit (RequestLimitExceeded; refused requests create nothing)
→ JSON body (InvalidParameter) → the action's own validation.

DescribeImageTasks as api.json documents it: `Status` required, `PROCESSING` or `FINISH` only;
`ScrollToken` is the next record's TaskId ("" = no more); rows carry no `Input` unless
`echo_listing_input` is set; WAITING tasks are handled per `listing_waiting`.

Choices where the real service is not documented (docs/emulator-fidelity.md): an unknown TaskId is
`ResourceNotFound.TaskNotFound`; DescribeImageTasks lists newest first; WAITING tasks are not listed.
A task older than the retention (7 days from its CreateTime, `task_retention_seconds`) is unknown to
both actions, as the service keeps tasks for 7 days.
"""

from __future__ import annotations

import calendar
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from airflow_mps.emulator.config import MPS_VERSION
from airflow_mps.emulator.http import EmulatorRequest, EmulatorResponse
from airflow_mps.emulator.mps.models import (
    FINISH,
    PROCESSING,
    WAITING,
    MpsBackend,
    SubmitError,
    TaskNotFound,
    TaskRecord,
)
from airflow_mps.emulator.safejson import loads_request_body
from airflow_mps.emulator.signing import SignatureError, verify_tc3
from airflow_mps.models.constants import API_TIME_FORMAT

MAX_BODY_BYTES = 10 * 1024 * 1024
ACTIONS = ("ProcessImage", "DescribeImageTaskDetail", "DescribeImageTasks")


class ApiError(Exception):
    """An error envelope to return (`code`, `message`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class MpsOutcome:
    """What the server needs for stats: the response, the action and the error code if any."""

    response: EmulatorResponse
    action: str
    error_code: str | None = None


def envelope(payload: dict[str, Any], request_id: str) -> EmulatorResponse:
    body = json.dumps({"Response": {**payload, "RequestId": request_id}}, ensure_ascii=False).encode("utf-8")
    return EmulatorResponse(
        status=200,
        headers=[("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        body=body,
    )


def error_response(code: str, message: str, request_id: str | None = None) -> EmulatorResponse:
    return envelope({"Error": {"Code": code, "Message": message}}, request_id or str(uuid.uuid4()))


def throttle_message(count: int, limit: int) -> str:
    return (
        f"Your current request times equals to `{count}` in a second, which exceeds the frequency limit "
        f"`{limit}` for a second. Please reduce the frequency of calls."
    )


def iso(ts: float | None) -> str | None:
    return None if ts is None else time.strftime(API_TIME_FORMAT, time.gmtime(ts))


def parse_iso(value: Any, name: str) -> float:
    if not isinstance(value, str):
        raise ApiError("InvalidParameter", f"`{name}` must be a string in the format YYYY-MM-DDThh:mm:ssZ.")
    try:
        return float(calendar.timegm(time.strptime(value, API_TIME_FORMAT)))
    except ValueError:
        raise ApiError(
            "InvalidParameterValue", f"`{name}` {value!r} is not in the format YYYY-MM-DDThh:mm:ssZ."
        ) from None


class MpsApi:
    """Handles MPS requests for one emulator instance."""

    def __init__(
        self,
        backend: MpsBackend,
        *,
        signed_url: Callable[[str, str, str], str | None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = backend
        self.config = backend.config
        self.signed_url = signed_url
        self.clock = clock

    def handle(self, request: EmulatorRequest) -> MpsOutcome:
        request_id = str(uuid.uuid4())
        action = request.headers.get("X-TC-Action") or ""
        try:
            payload = self._handle(request, action)
        except ApiError as exc:
            return MpsOutcome(error_response(exc.code, exc.message, request_id), action, exc.code)
        return MpsOutcome(envelope(payload, request_id), action)

    # -- pipeline ----------------------------------------------------------------------------------
    def _handle(self, request: EmulatorRequest, action: str) -> dict[str, Any]:
        if len(request.body) > MAX_BODY_BYTES:
            raise ApiError(
                "RequestSizeLimitExceeded",
                f"The request body is {len(request.body)} bytes; the limit is {MAX_BODY_BYTES} bytes.",
            )
        creds = self.config.credentials()
        try:
            caller = verify_tc3(
                method=request.method,
                path=request.path.split("?", 1)[0] or "/",
                query=request.query,
                header_lookup=request.headers.get,
                body=request.body,
                secret_lookup=creds.get,
                now=self.clock(),
                expected_token=self.config.token,
            )
        except SignatureError as exc:
            raise ApiError(exc.code, exc.message) from None
        version = request.headers.get("X-TC-Version") or ""
        if version != MPS_VERSION:
            raise ApiError(
                "NoSuchVersion", f"The API version `{version}` does not exist; MPS supports `{MPS_VERSION}`."
            )
        if action not in ACTIONS:
            raise ApiError(
                "InvalidAction",
                f"The action `{action}` is not supported by the emulator; supported: {', '.join(ACTIONS)}.",
            )
        region = request.headers.get("X-TC-Region") or ""
        if region and region not in self.config.regions():
            raise ApiError(
                "UnsupportedRegion",
                f"The API does not support the region `{region}`; MPS regions: {', '.join(self.config.regions())}.",
            )
        allowed, count, limit = self.backend.limiter.check(caller.secret_id, action)
        if request.arrived is not None:
            self.backend.stats.limiter_lag(action, time.monotonic() - request.arrived)
        if not allowed:
            raise ApiError("RequestLimitExceeded", throttle_message(count, limit))
        try:
            body = loads_request_body(request.body)  # bounded depth/numbers: never a 500 (issue 12)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError("InvalidParameter", f"The request body is not valid JSON: {exc}.") from None
        if not isinstance(body, dict):
            raise ApiError("InvalidParameter", "The request body must be a JSON object.")
        handler = getattr(self, "_" + action)
        return handler(body)

    # -- actions -----------------------------------------------------------------------------------
    def _ProcessImage(self, body: dict[str, Any]) -> dict[str, Any]:
        validate_process_image(body)
        try:
            rec = self.backend.submit(body, request_id="")
        except SubmitError as exc:
            raise ApiError(exc.code, exc.message) from None
        return {"TaskId": rec.task_id}

    def _DescribeImageTaskDetail(self, body: dict[str, Any]) -> dict[str, Any]:
        task_id = body.get("TaskId")
        if task_id is None or task_id == "":
            raise ApiError("MissingParameter", "The request is missing a required parameter `TaskId`.")
        if not isinstance(task_id, str):
            raise ApiError("InvalidParameter", "`TaskId` must be a string.")
        try:
            rec = self.backend.get(task_id)
        except TaskNotFound:
            raise ApiError("ResourceNotFound.TaskNotFound", f"The task `{task_id}` does not exist.") from None
        return self.detail(rec)

    def _DescribeImageTasks(self, body: dict[str, Any]) -> dict[str, Any]:
        waiting = self.config.listing_waiting
        listable = (PROCESSING, FINISH, WAITING) if waiting == "waiting" else (PROCESSING, FINISH)
        status = body.get("Status")
        if status is None or status == "":
            raise ApiError("MissingParameter", "The request is missing a required parameter `Status`.")
        if not isinstance(status, str):
            raise ApiError("InvalidParameter", "`Status` must be a string.")
        if status not in listable:
            raise ApiError(
                "InvalidParameterValue",
                f"`Status` {status!r} is invalid; allowed values: {', '.join(listable)}.",
            )
        limit = body.get("Limit", 10)
        if limit is None:
            limit = 10
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise ApiError("InvalidParameter", "`Limit` must be an integer.")
        if not 1 <= limit <= 100:
            raise ApiError(
                "InvalidParameterValue.Limit", f"`Limit` {limit} is out of range; allowed: 1 to 100."
            )
        start = parse_iso(body["StartTime"], "StartTime") if body.get("StartTime") else None
        end = parse_iso(body["EndTime"], "EndTime") if body.get("EndTime") else None
        if start is not None and end is not None and end < start:
            raise ApiError("InvalidParameterValue", "`EndTime` must not be earlier than `StartTime`.")
        failed = body.get("SubTaskHasFailed")
        if failed is not None and not isinstance(failed, bool):
            raise ApiError("InvalidParameter", "`SubTaskHasFailed` must be a boolean.")
        # A WAITING task is listed as PROCESSING only with listing_waiting=processing; else only as itself.
        statuses = (WAITING, PROCESSING) if status == PROCESSING and waiting == "processing" else (status,)
        page, total = self.backend.list(
            statuses=statuses,
            start=start,
            end=None if end is None else end + 0.999999,
            failed=failed,
            before_seq=self._scroll_cursor(body.get("ScrollToken")),
            limit=limit + 1,
        )
        # ScrollToken = "the ID of the next record" (api.json); "" = no more. A TaskId never moves in
        # the newest-first order, so paging stays stable while new tasks are created.
        token = page[limit].task_id if len(page) > limit else ""
        echo = self.config.echo_listing_input
        rows = [task_info(r, echo_input=echo, show_waiting=waiting == "waiting") for r in page[:limit]]
        return {"TotalCount": total, "ScrollToken": token, "TaskSet": rows}

    def _scroll_cursor(self, token: Any) -> int | None:
        """The listing cursor a ScrollToken (the next record's TaskId) stands for: list from it on."""
        if token is None or token == "":
            return None
        if not isinstance(token, str):
            raise ApiError("InvalidParameter", "`ScrollToken` must be a string.")
        try:
            return self.backend.get(token).seq + 1
        except TaskNotFound:
            raise ApiError(
                "InvalidParameterValue", f"`ScrollToken` {token!r} is invalid or expired."
            ) from None

    # -- rendering ---------------------------------------------------------------------------------
    def detail(self, rec: TaskRecord) -> dict[str, Any]:
        req = rec.request
        results: list[dict[str, Any]] = []
        if rec.status == PROCESSING:
            results.append(
                {
                    "Status": "PROCESSING",
                    "ErrMsg": "",
                    "Message": "",
                    "Progress": rec.progress,
                    "Output": None,
                }
            )
        elif rec.status == FINISH:
            output = None
            if rec.output is not None and not rec.failed:
                out = rec.output
                output = {
                    "Path": "/" + out["key"],
                    "OutputStorage": {
                        "Type": "COS",
                        "CosOutputStorage": {"Bucket": out["bucket"], "Region": out["region"]},
                    },
                    "SignedUrl": self.signed_url(out["bucket"], out["region"], out["key"]) or "",
                    "Content": "",
                    "FileId": "",
                }
            results.append(
                {
                    "Status": "FAIL" if rec.failed else "SUCCESS",
                    "ErrMsg": rec.err_msg,
                    "Message": rec.message,
                    "Progress": rec.progress,
                    "Output": output,
                }
            )
        return {
            "TaskType": "WorkflowTask",
            "Status": rec.status,
            "ErrCode": rec.err_code if rec.status == FINISH else 0,
            "ErrMsg": rec.err_msg if rec.status == FINISH else "",
            "Message": rec.message if rec.status == FINISH else "",
            "ImageProcessTaskResultSet": results,
            "CreateTime": iso(rec.create_time),
            "FinishTime": iso(rec.finish_time) if rec.status == FINISH else None,
            "Definition": req.get("Definition"),
            "ImageTask": req.get("ImageTask"),
            "InputInfo": req.get("InputInfo"),
        }


def task_info(rec: TaskRecord, *, echo_input: bool = False, show_waiting: bool = False) -> dict[str, Any]:
    """One `ImageTaskInfo` row. Its `Status` is PROCESSING or FINISH, the two values api.json lists (a
    WAITING task shows as PROCESSING when it is listed at all, as WAITING only with `show_waiting`).
    `Input` — a string whose format is unpublished and which the official example omits — is sent only
    with `echo_input`, as the submitted InputInfo in compact JSON."""
    status = PROCESSING if rec.status == WAITING and not show_waiting else rec.status
    row: dict[str, Any] = {"TaskId": rec.task_id, "Status": status}
    if echo_input:
        row["Input"] = json.dumps(rec.request.get("InputInfo"), separators=(",", ":"), sort_keys=True)
    row.update(
        {
            "CreateTime": iso(rec.create_time),
            "BeginProcessTime": iso(rec.begin_time) if rec.status != WAITING else None,
            "FinishTime": iso(rec.finish_time) if rec.status == FINISH else None,
            "SubTaskHasFailed": rec.failed,
        }
    )
    return row


def validate_process_image(body: dict[str, Any]) -> None:
    """Validate a ProcessImage body with the project's one request model (`models.ProcessImageRequest`).

    `MpsValidationError.code/.message` become the error envelope, so the emulator refuses exactly
    what the provider refuses before calling the API.
    """
    try:
        from airflow_mps.errors import MpsValidationError
        from airflow_mps.models import ProcessImageRequest
    except ImportError:  # models.py not there yet: only the emulator's own checks apply
        return
    try:
        ProcessImageRequest.from_api(body)
    except MpsValidationError as exc:
        code = exc.code or "InvalidParameterValue"
        message = exc.message or str(exc)
        field = getattr(exc, "field", None)
        if field and field not in message:
            message = f"{field}: {message}"
        raise ApiError(code, message) from None
