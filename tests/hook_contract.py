"""The slices of ``MpsHook`` and ``CosHook`` that each consumer uses, as typing Protocols (issue 10 item 7).

The unit tests drive operators, sensors, triggers, waits and the batch engine with hand-written fake
hooks. Each fake
subclasses the Protocol it stands for, and tests/unit/test_hook_fakes_contract.py checks, with
``inspect.signature``, that the real hook class and every fake agree on each Protocol method: parameter
names, kinds and defaults, and sync / coroutine / async-generator flavour. A real hook whose signature
changes, or a fake that drifts from it, fails that test instead of passing against a hook that no
longer exists.

A Protocol lists the real method's full signature; only the methods the consumer calls are listed
(a private one too, when the consumer calls it: the batch's adoption reads ``_describe_response``). A
fake must take every required parameter under the same name, kind and position; an optional parameter
it declares must keep the real default, and the optional ones it ignores may be absorbed by
``**kwargs`` (the consumers pass optional arguments by keyword). Subclassing a Protocol is only
the declaration: the Protocol's bodies are never meant to run (the contract test refuses a fake that
inherits one instead of defining the method).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from airflow_mps.ownership import MAX_DESCRIBES

if TYPE_CHECKING:
    from airflow_mps.hooks._pacing import PacingState
    from airflow_mps.hooks.base import ClientSettings
    from airflow_mps.hooks.cos import CosObject
    from airflow_mps.models import ImageTaskInfo, ImageTaskStatus, ProcessImageRequest, Submission


class SendsImageTasks(Protocol):
    """The batch submitter (batch/submit.py): ProcessImage only; waiting is the wait drivers' job."""

    def process_image(self, request: ProcessImageRequest) -> Submission: ...


class DescribesImageTasks(Protocol):
    """One detail call per task: the batch's settle wait and adopted-task check (batch/adopt.py)."""

    def describe_image_task(self, task_id: str) -> ImageTaskStatus: ...


class SubmitsImageTasks(SendsImageTasks, DescribesImageTasks, Protocol):
    """The single-image operator's sync path: submit, then poll one task (operators/mps.py, base.py)."""


class ListsImageTasks(Protocol):
    """DescribeImageTasks, all pages: what a batch retry lists before it adopts (batch/resume.py)."""

    def list_image_tasks(
        self,
        status: str,
        start_time: datetime | str | None = None,
        end_time: datetime | str | None = None,
        sub_task_has_failed: bool | None = None,
        page_size: int = 100,
    ) -> Iterator[ImageTaskInfo]: ...


class WatchesImageTasks(ListsImageTasks, DescribesImageTasks, Protocol):
    """The batch's sync waits (batch/overlap.py while submitting, batch/poll.py in place): list the
    FINISHed tasks, describe the ones it waits for."""


class AdoptsImageTasks(ListsImageTasks, Protocol):
    """The batch's retry adoption (batch/adopt.py ``reconcile``): list, then describe raw — the ownership
    rules read ``InputInfo``, which ``ImageTaskStatus`` does not keep, so the hook's private call."""

    def _describe_response(self, task_id: str) -> dict[str, Any]: ...


class FindsImageTasks(SubmitsImageTasks, ListsImageTasks, Protocol):
    """The operator's reconcile path (issue 6): which tasks did an unanswered submit create?"""

    def find_tasks_for(
        self,
        request: ProcessImageRequest | Mapping[str, Any],
        since: datetime,
        *,
        clock_skew_seconds: float | None = None,
        until: datetime | None = None,
        max_describes: int = MAX_DESCRIBES,
    ) -> list[str]: ...


class DescribesImageTasksAsync(Protocol):
    """The per-task trigger (triggers/mps.py): one async detail call per poll."""

    async def adescribe_image_task(self, task_id: str) -> ImageTaskStatus: ...


class PollsImageTasksAsync(DescribesImageTasksAsync, Protocol):
    """The shared poller (triggers/_poller.py) and the batch trigger (triggers/batch.py): list finished
    tasks, detail the ones it wants, close."""

    def alist_image_tasks(
        self,
        status: str,
        start_time: datetime | str | None = None,
        end_time: datetime | str | None = None,
        sub_task_has_failed: bool | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[ImageTaskInfo]: ...

    async def aclose(self) -> None: ...


class ChecksCosObjects(Protocol):
    """The COS waits (waits/cos.py ``perform_check``): HEAD one key, list one prefix."""

    def object_exists(self, bucket: str, key: str, region: str | None = None) -> bool: ...

    def list_objects(
        self, bucket: str, prefix: str = "", region: str | None = None
    ) -> Iterator[CosObject]: ...


class ReadsAndWritesCosObjects(Protocol):
    """The batch's durable state (batch/state.py, the batch trigger's ``_cos()``): write an object, read
    it back."""

    def read_object(self, bucket: str, key: str, region: str | None = None) -> bytes: ...

    def write_object(
        self,
        bucket: str,
        key: str,
        data: bytes | str,
        content_type: str | None = None,
        region: str | None = None,
    ) -> str: ...


class ReportsPacing(SendsImageTasks, Protocol):
    """The batch submitter's summary (batch/submit.py): how ProcessImage was paced while it submitted."""

    def pacing(self, action: str) -> PacingState: ...


class ReadsConnectionSettings(Protocol):
    """The operators' region check (operators/base.py): the connection's settings, before any API call."""

    def get_settings(self) -> ClientSettings: ...


class ChecksCosObjectsFromTrigger(ChecksCosObjects, Protocol):
    """The COS triggers (triggers/cos.py): resolve the connection on the loop, then check in a thread."""

    async def aget_settings(self) -> ClientSettings: ...


#: Each Protocol and the real hook classes that must satisfy it.
REAL_HOOKS: dict[type, tuple[str, ...]] = {
    SendsImageTasks: ("airflow_mps.hooks.mps:MpsHook",),
    DescribesImageTasks: ("airflow_mps.hooks.mps:MpsHook",),
    SubmitsImageTasks: ("airflow_mps.hooks.mps:MpsHook",),
    ListsImageTasks: ("airflow_mps.hooks.mps:MpsHook",),
    WatchesImageTasks: ("airflow_mps.hooks.mps:MpsHook",),
    AdoptsImageTasks: ("airflow_mps.hooks.mps:MpsHook",),
    FindsImageTasks: ("airflow_mps.hooks.mps:MpsHook",),
    DescribesImageTasksAsync: ("airflow_mps.hooks.mps:MpsHook",),
    PollsImageTasksAsync: ("airflow_mps.hooks.mps:MpsHook",),
    ChecksCosObjects: ("airflow_mps.hooks.cos:CosHook", "airflow_mps.hooks.mps:MpsHook"),
    ReadsAndWritesCosObjects: ("airflow_mps.hooks.cos:CosHook", "airflow_mps.hooks.mps:MpsHook"),
    ReportsPacing: ("airflow_mps.hooks.mps:MpsHook",),
    ReadsConnectionSettings: ("airflow_mps.hooks.mps:MpsHook", "airflow_mps.hooks.cos:CosHook"),
    ChecksCosObjectsFromTrigger: ("airflow_mps.hooks.cos:CosHook",),
}
