"""``MpsBatchProcessImageOperator``: every image of a COS prefix (or a list) → MPS, in one Airflow task.

Flow (docs/batch.md has the user-facing version):

1. Validate every argument and build every ``ProcessImage`` request before any API call.
2. List the source prefix (paged, suffix filter) and the destination prefix once (skip-existing).
3. On a retry, adopt what the previous try submitted: the ledger in ``task_state_store`` (Airflow >=
   3.3), then the gap (a worker that died between ``ProcessImage`` and the ledger write) by listing the
   tasks created since the first try's window start and matching inputs. Adopted tasks that FINISHed
   with a failure are resubmitted once per try (the earlier task id is kept as history in the manifest).
4. Submit the rest with a thread pool; the hook's process-wide token bucket paces ``ProcessImage`` at
   the connection's rate, so ``submit_concurrency`` threads keep the limit saturated even with slow
   round trips. Each submission is recorded in the ledger as it completes.
5. Wait: defer to one ``MpsImageBatchTrigger`` or poll in place with the same logic.
6. Write the manifest (JSON lines) next to the outputs, return a small summary, then apply the
   partial-failure policy — only after everything finished and the manifest is written.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    BaseOperator,
    conf,
)

from airflow_mps.batch import plan as batch_plan
from airflow_mps.batch.ledger import FLUSH_SECONDS, LedgerState, SubmissionLedger
from airflow_mps.batch.overlap import SubmitTimeWatcher
from airflow_mps.batch.progress import (
    FAILED,
    SKIPPED,
    SUBMITTED,
    SUCCEEDED,
    UNFINISHED,
    BatchWaitState,
    TaskResult,
    manifest_lines,
    pack,
    unpack,
)
from airflow_mps.errors import (
    MpsError,
    MpsInvalidParameterError,
    MpsResourceNotFoundError,
    MpsTerminalError,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

#: The listing window starts this long before the first submission (clock skew between us and MPS).
WINDOW_SKEW = timedelta(minutes=5)
#: Without ``timeout`` the wait ends after MPS's own retention of tasks (7 days).
DEFAULT_WAIT = 7 * 24 * 3600
#: Statuses listed when reconciling a retry (WAITING is not accepted everywhere; errors are tolerated).
RECONCILE_STATUSES = ("WAITING", "PROCESSING", "FINISH")


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _listed_location(listed: str | None) -> tuple[str | None, str] | None:
    """(bucket or None, key) of a COS input named by a DescribeImageTasks ``Input``; None otherwise.

    The same parser as the hook's reconciliation (:func:`airflow_mps.models.parse_listed_input`).
    """
    from airflow_mps.models import parse_listed_input

    parsed = parse_listed_input(listed)
    if parsed is None or parsed[0] not in (None, "COS"):
        return None
    return parsed[1], parsed[2]


class MpsBatchProcessImageOperator(BaseOperator):
    """Process every image under a COS prefix (or an explicit list) with MPS ``ProcessImage``.

    :param source: ``cos://bucket/prefix/`` (listed, paged, filtered by ``suffixes``) or a list of
        ``cos://bucket/key`` inputs. Templated.
    :param destination: ``cos://bucket/prefix/``; the layout under the source prefix is mirrored and
        the extension follows ``image_task.EncodeConfig.Format`` (JPEG → ``.jpg``). Templated.
    :param image_task: the API's ``ImageTask`` dict (or its JSON), the same for every image. Templated.
    :param suffixes: file suffixes to take from a listed prefix, case-insensitive. Templated.
    :param max_images: take at most this many inputs (first in key order).
    :param overwrite: resubmit images whose output already exists (default: skip them).
    :param max_failed_ratio: fail the task when failed / (succeeded + failed) exceeds this (0..1).
    :param fail_on_empty: fail when the source has no image (default: succeed with total 0 and warn).
    :param submit_concurrency: submitter threads (1..64); the connection's rate limit paces them.
    :param tencentcloud_conn_id: connection of type ``tencentcloud``.
    :param region: MPS and COS region; ``None`` uses the connection's. Templated.
    :param wait_for_completion: ``False`` returns after submission (manifest states ``submitted``).
    :param deferrable: wait in the triggerer (no worker slot) instead of polling in place.
    :param poll_interval: seconds between polls.
    :param timeout: seconds to wait for the tasks (per try); ``None`` = 7 days (MPS keeps tasks 7 days).
    :param manifest_name: object name of the manifest under ``destination``.
    :param max_failed_in_xcom: cap on ``failed_inputs`` in the returned summary.
    """

    template_fields: Sequence[str] = ("source", "destination", "image_task", "suffixes", "region")
    template_fields_renderers = {"image_task": "json", "source": "json"}
    ui_color = "#e8f4ff"

    def __init__(
        self,
        *,
        source: str | list[str],
        destination: str,
        image_task: dict[str, Any] | str | None = None,
        suffixes: Sequence[str] | str = batch_plan.DEFAULT_SUFFIXES,
        max_images: int | None = None,
        overwrite: bool = False,
        max_failed_ratio: float = 0.0,
        fail_on_empty: bool = False,
        submit_concurrency: int = 8,
        tencentcloud_conn_id: str = "tencentcloud_default",
        region: str | None = None,
        wait_for_completion: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 15,
        timeout: float | None = None,
        manifest_name: str = "_mps_manifest.jsonl",
        max_failed_in_xcom: int = 100,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # No logic on templated fields here (apache/airflow #33786): they are checked in execute().
        self.source = source
        self.destination = destination
        self.image_task = image_task
        self.suffixes = suffixes
        self.max_images = max_images
        self.overwrite = overwrite
        self.max_failed_ratio = max_failed_ratio
        self.fail_on_empty = fail_on_empty
        self.submit_concurrency = submit_concurrency
        self.tencentcloud_conn_id = tencentcloud_conn_id
        self.region = region
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.manifest_name = manifest_name
        self.max_failed_in_xcom = max_failed_in_xcom

    # ------------------------------------------------------------------ helpers

    def _hook(self) -> Any:
        from airflow_mps.hooks.mps import MpsHook

        return MpsHook(tencentcloud_conn_id=self.tencentcloud_conn_id, region=self.region)

    def _resolve_region(self, hook: Any) -> str:
        region = self.region or hook.get_settings().region
        if not region:
            raise AirflowFailException(
                "region: no region given and the connection has no 'region' extra; COS inputs need one"
            )
        return region

    def _validate(self) -> dict[str, Any]:
        """Every argument check that needs no API call; raises AirflowFailException naming the argument."""
        try:
            batch_plan.validate_numbers(
                max_failed_ratio=self.max_failed_ratio,
                submit_concurrency=self.submit_concurrency,
                poll_interval=self.poll_interval,
                timeout=self.timeout,
                max_images=self.max_images,
                max_failed_in_xcom=self.max_failed_in_xcom,
            )
            if not isinstance(self.manifest_name, str) or not self.manifest_name or "/" in self.manifest_name:
                raise batch_plan.BatchArgumentError(
                    "manifest_name",
                    f"{self.manifest_name!r} is not a plain object name",
                    "a name without '/'",
                )
            source = batch_plan.parse_source(self.source)
            destination = batch_plan.parse_cos_location(self.destination, "destination", prefix=True)
            batch_plan.check_destination(source, destination)
            suffixes = batch_plan.normalize_suffixes(self.suffixes)
            image_task = batch_plan.normalize_image_task(self.image_task)
            extension = batch_plan.output_extension(image_task)
        except batch_plan.BatchArgumentError as err:
            raise AirflowFailException(str(err)) from err
        if image_task is not None:
            from airflow_mps.models import validate_image_task

            try:
                validate_image_task(image_task, "image_task")
            except MpsError as err:
                raise AirflowFailException(f"image_task: {err.message}") from err
        return {
            "source": source,
            "destination": destination,
            "suffixes": suffixes,
            "image_task": image_task,
            "extension": extension,
        }

    def _build_request(self, item: batch_plan.BatchItem, cfg: dict[str, Any], region: str) -> Any:
        from airflow_mps.models import ProcessImageRequest

        return ProcessImageRequest.build(
            input={
                "Type": "COS",
                "CosInputInfo": {
                    "Bucket": item.input_bucket,
                    "Region": region,
                    "Object": "/" + item.input_key,
                },
            },
            output_storage={
                "Type": "COS",
                "CosOutputStorage": {"Bucket": cfg["destination"].bucket, "Region": region},
            },
            output_path="/" + item.output_key,
            image_task=cfg["image_task"],
            region=region,
        )

    def _list_inputs(self, hook: Any, cfg: dict[str, Any]) -> list[batch_plan.BatchItem]:
        source = cfg["source"]
        if isinstance(source, batch_plan.CosLocation):
            keys = batch_plan.filter_keys(
                (obj.key for obj in hook.list_objects(source.bucket, source.key)),
                source.key,
                cfg["suffixes"],
                self.manifest_name,
            )
            locations = [batch_plan.CosLocation(source.bucket, k) for k in keys]
            prefix: str | None = source.key
        else:
            locations = list(source)
            prefix = None
        if self.max_images is not None:
            locations = locations[: self.max_images]
        try:
            return batch_plan.plan_items(locations, prefix, cfg["destination"], cfg["extension"])
        except batch_plan.BatchArgumentError as err:
            raise AirflowFailException(str(err)) from err

    @staticmethod
    def _store(context: Context) -> Any:
        """``task_state_store`` on Airflow >= 3.3, else ``None`` (detected at runtime)."""
        try:
            return context.get("task_state_store")
        except Exception:
            return None

    # ------------------------------------------------------------------ retry adoption

    def _reconcile(
        self, hook: Any, items: list[batch_plan.BatchItem], window_start: str, cfg: dict[str, Any]
    ) -> dict[str, str]:
        """Find tasks a previous try created for ``items`` but never recorded: input → task id.

        Listing matches by input only, and another pipeline reading the same partition (thumbnails
        next to enhanced copies) creates tasks with the same inputs in the same window. So every
        candidate is described and kept only when nothing proves it is someone else's: its echoed
        ImageTask agrees with ours and, once finished, its output is at our output key
        (``ImageTaskStatus.conflicts_with``). Newest candidate first; a refused one is logged.
        """
        wanted: dict[str, list[batch_plan.BatchItem]] = {}
        for item in items:
            wanted.setdefault(item.input_key, []).append(item)
        candidates: dict[str, list[tuple[str, str]]] = {}
        seen: set[str] = set()
        for status in RECONCILE_STATUSES:
            try:
                for info in hook.list_image_tasks(status, start_time=window_start):
                    location = _listed_location(info.input)
                    if location is None or info.task_id in seen:
                        continue
                    seen.add(info.task_id)
                    bucket, key = location
                    for item in wanted.get(key, ()):
                        if bucket is not None and bucket != item.input_bucket:
                            continue
                        candidates.setdefault(item.input_uri, []).append(
                            (info.create_time or "", info.task_id)
                        )
            except MpsInvalidParameterError as err:
                self.log.info(
                    "Listing %s tasks is not supported (%s); skipping that status", status, err.code
                )
        if not candidates:
            return {}
        by_uri = {item.input_uri: item for item in items}
        destination: batch_plan.CosLocation = cfg["destination"]

        def verify(entry: tuple[str, list[tuple[str, str]]]) -> tuple[str, str | None]:
            uri, found = entry
            item = by_uri[uri]
            for _created, task_id in sorted(found, reverse=True):
                try:
                    status = hook.describe_image_task(task_id)
                except MpsResourceNotFoundError:
                    continue
                reason = status.conflicts_with(
                    image_task=cfg["image_task"],
                    output_bucket=destination.bucket,
                    output_key=item.output_key,
                )
                if reason is None:
                    return uri, task_id
                self.log.info("Not adopting task %s for %s: %s", task_id, uri, reason)
            return uri, None

        with ThreadPoolExecutor(self.submit_concurrency) as pool:
            verified = dict(pool.map(verify, candidates.items()))
        return {uri: task_id for uri, task_id in verified.items() if task_id is not None}

    def _check_adopted(self, hook: Any, adopted: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        """Split adopted tasks into (keep, resubmit): FINISHed-with-failure and vanished ones are redone."""
        keep: dict[str, str] = {}
        redo: dict[str, str] = {}

        def describe(item: tuple[str, str]) -> tuple[str, str, str]:
            uri, task_id = item
            try:
                status = hook.describe_image_task(task_id)
            except MpsResourceNotFoundError:
                return uri, task_id, "gone"
            return uri, task_id, "failed" if status.failed else "keep"

        with ThreadPoolExecutor(self.submit_concurrency) as pool:
            for uri, task_id, verdict in pool.map(describe, adopted.items()):
                (keep if verdict == "keep" else redo)[uri] = task_id
        return keep, redo

    # ------------------------------------------------------------------ submission

    def _submit(
        self,
        hook: Any,
        items: list[batch_plan.BatchItem],
        cfg: dict[str, Any],
        region: str,
        ledger: SubmissionLedger,
        watcher: SubmitTimeWatcher | None = None,
    ) -> tuple[dict[str, str], dict[str, MpsError]]:
        """Submit ``items`` concurrently; returns (input → task id, input → per-image rejection).

        At most ``2 × submit_concurrency`` submissions are queued or in flight (a bounded window,
        refilled as each completes): waiting on a set of all N futures per completion was O(N²) —
        for 10,000 images, tens of seconds of lock churn competing with the submit threads for the
        GIL. The ledger is flushed at least every :data:`FLUSH_SECONDS` (the wait below wakes that
        often even when nothing completes). Each task is handed to ``watcher`` as it is created, and
        the watcher is drained once the last image is queued (see :mod:`airflow_mps.batch.overlap`).
        """
        submitted: dict[str, str] = {}
        rejected: dict[str, MpsError] = {}
        fatal: BaseException | None = None
        if not items:
            return submitted, rejected

        def one(item: batch_plan.BatchItem) -> tuple[Any, float, float]:
            request = self._build_request(item, cfg, region)
            sent = time.time()
            submission = hook.process_image(request)
            return submission, sent, time.time()

        window = 2 * self.submit_concurrency
        upcoming = iter(items)
        in_flight: dict[Future[tuple[Any, float, float]], batch_plan.BatchItem] = {}
        logged = 0
        with ThreadPoolExecutor(self.submit_concurrency, thread_name_prefix="mps-submit") as pool:
            while True:
                while fatal is None and len(in_flight) < window:
                    item = next(upcoming, None)
                    if item is None:
                        if watcher is not None:
                            watcher.drain()
                        break
                    in_flight[pool.submit(one, item)] = item
                if not in_flight:
                    break
                done, _ = wait(in_flight, timeout=FLUSH_SECONDS, return_when=FIRST_COMPLETED)
                for future in done:
                    item = in_flight.pop(future)
                    if future.cancelled():
                        continue
                    err = future.exception()
                    if err is None:
                        submission, sent, received = future.result()
                        task_id = submission.task_id
                        submitted[item.input_uri] = task_id
                        ledger.add(item.input_uri, task_id)
                        if watcher is not None:
                            watcher.add(task_id, item.input_uri, sent, received)
                    elif isinstance(err, (MpsInvalidParameterError, MpsResourceNotFoundError)):
                        rejected[item.input_uri] = err  # this image only; the batch goes on
                    elif fatal is None:
                        fatal = err  # stop: nothing new starts; what is in flight completes and is recorded
                        for other in in_flight:
                            other.cancel()
                ledger.maybe_flush()
                if len(submitted) // 100 > logged:
                    logged = len(submitted) // 100
                    self.log.info("Submitted %d/%d", len(submitted), len(items))
        ledger.flush()
        self.log.info("Submitted %d tasks (%d rejected)", len(submitted), len(rejected))
        if fatal is not None:
            if isinstance(fatal, MpsTerminalError):
                raise AirflowFailException(
                    f"Submission stopped after {len(submitted)} of {len(items)} images: {fatal}"
                ) from fatal
            raise AirflowException(
                f"Submission stopped after {len(submitted)} of {len(items)} images (recorded; a retry "
                f"submits only the rest): {fatal}"
            ) from fatal
        return submitted, rejected

    # ------------------------------------------------------------------ execute

    def execute(self, context: Context) -> Any:
        cfg = self._validate()
        hook = self._hook()
        region = self._resolve_region(hook)
        # Build (= validate) one request before any API call so a bad image_task fails fast.
        from airflow_mps.models import ProcessImageRequest  # noqa: F401  (import cost paid once here)

        # The destination listing (skip-existing) runs alongside the source listing: one round trip
        # less of worker-slot time before the first submission.
        dest: batch_plan.CosLocation = cfg["destination"]
        lister = ThreadPoolExecutor(1, thread_name_prefix="mps-list")
        existing_keys: Future[set[str]] | None = None
        if not self.overwrite:
            existing_keys = lister.submit(
                lambda: {obj.key for obj in hook.list_objects(dest.bucket, dest.key)}
            )
        lister.shutdown(wait=False)
        items = self._list_inputs(hook, cfg)
        for item in items:
            try:
                self._build_request(item, cfg, region)
            except MpsError as err:
                raise AirflowFailException(f"{item.input_uri}: {err}") from err
        if not items:
            message = f"No image under {self.source} (suffixes {', '.join(cfg['suffixes'])})"
            if self.fail_on_empty:
                raise AirflowFailException(message)
            self.log.warning("%s: nothing to do", message)

        now = datetime.now(timezone.utc)
        ledger = SubmissionLedger(self._store(context))
        previous: LedgerState = ledger.load()
        fresh = previous.completed or previous.window_start is None
        if previous.completed:
            self.log.info("The previous run of this task completed; starting afresh")
            previous = LedgerState()
        window_start = previous.window_start or _iso(now - WINDOW_SKEW)
        ledger.begin(window_start, fresh=fresh)

        by_uri = {i.input_uri: i for i in items}
        adopted = {uri: tid for uri, tid in previous.tasks.items() if uri in by_uri}
        history: dict[str, list[str]] = {u: list(h) for u, h in previous.history.items() if u in by_uri}

        # Reconcile the gap only when a previous try happened (its window start tells where to look).
        try_number = int(getattr(context.get("ti"), "try_number", 1) or 1)
        reconcile_from = previous.window_start
        if reconcile_from is None and not ledger.durable and try_number > 1:
            dag_run = context.get("dag_run")
            start = getattr(dag_run, "start_date", None)
            reconcile_from = _iso(start - WINDOW_SKEW) if start else None
        if reconcile_from is not None:
            gap = [i for i in items if i.input_uri not in adopted]
            if gap:
                recovered = self._reconcile(hook, gap, reconcile_from, cfg)
                if recovered:
                    self.log.info(
                        "Adopted %d tasks found by listing (records lost by the previous try)", len(recovered)
                    )
                    for uri, tid in recovered.items():
                        adopted[uri] = tid
                        ledger.add(uri, tid)
                    ledger.flush()
                window_start = min(window_start, reconcile_from)

        existing: set[str] = existing_keys.result() if existing_keys is not None else set()

        if adopted:
            unfinished = {u: t for u, t in adopted.items() if by_uri[u].output_key not in existing}
            done_ok = {u: t for u, t in adopted.items() if u not in unfinished}
            keep, redo = self._check_adopted(hook, unfinished) if unfinished else ({}, {})
            for uri, tid in redo.items():
                history.setdefault(uri, []).append(tid)
                self.log.info("Resubmitting %s: its earlier task %s failed or vanished", uri, tid)
            adopted = {**done_ok, **keep}
            self.log.info(
                "Adopted %d tasks from the previous try; %d will be resubmitted", len(adopted), len(redo)
            )

        skipped = [i for i in items if i.input_uri not in adopted and i.output_key in existing]
        skipped_uris = {i.input_uri for i in skipped}
        to_submit = [i for i in items if i.input_uri not in adopted and i.input_uri not in skipped_uris]
        self.log.info(
            "%d images: %d to submit, %d adopted, %d skipped (output exists)",
            len(items),
            len(to_submit),
            len(adopted),
            len(skipped),
        )
        # Overlap: describe tasks that finish while the rest is still being submitted (the Describe
        # budget is idle meanwhile), so only the tail is left to wait for afterwards.
        watcher: SubmitTimeWatcher | None = None
        if self.wait_for_completion and (to_submit or adopted):
            watcher = SubmitTimeWatcher(hook, window_start, float(self.poll_interval), log=self.log)
            for uri, tid in adopted.items():
                watcher.add(tid, uri)
            watcher.start()
        try:
            submitted, rejected = self._submit(hook, to_submit, cfg, region, ledger, watcher)
        finally:
            state = watcher.stop() if watcher is not None else BatchWaitState([])

        tasks = {**adopted, **submitted}
        carry = {
            "items": [[i.input_uri, i.output_key] for i in items],
            "skipped": sorted(skipped_uris),
            "rejected": {u: [e.code, e.message, e.request_id] for u, e in rejected.items()},
            "history": history,
            "submitted": len(submitted),
            "adopted": len(adopted),
        }
        end_time = time.time() + (self.timeout or DEFAULT_WAIT)

        if not self.wait_for_completion or not tasks:
            rows = [TaskResult(tid, uri, SUBMITTED).to_row() for uri, tid in tasks.items()]
            return self._finish(context, hook, cfg, carry, rows, ledger)
        self.log.info(
            "%s while submitting (%d listings, %d details); waiting for the other %d",
            state.progress_line(),
            state.listing_calls,
            state.detail_calls,
            len(state.pending),
        )
        if state.done:  # everything finished during the submission: nothing to wait for
            return self._finish(context, hook, cfg, carry, state.result_rows(), ledger)
        if self.deferrable:
            from airflow_mps.triggers.batch import MpsImageBatchTrigger

            self.defer(
                trigger=MpsImageBatchTrigger(
                    tasks=pack(state.pending_rows()),
                    tencentcloud_conn_id=self.tencentcloud_conn_id,
                    region=self.region,
                    poll_interval=self.poll_interval,
                    end_time=end_time,
                    window_start=window_start,
                    carry=pack(carry),
                    known=pack(state.known_rows()) if state.results else None,
                    prior_calls=[state.listing_calls, state.detail_calls],
                ),
                method_name="execute_complete",
            )
        rows, error = self._poll(hook, state, window_start, end_time)
        return self._finish(context, hook, cfg, carry, rows, ledger, error)

    def _poll(
        self, hook: Any, state: BatchWaitState, window_start: str, end_time: float
    ) -> tuple[list[list[Any]], dict[str, Any] | None]:
        """The non-deferrable wait: the trigger's logic through the sync hook, continuing ``state``."""
        last = ""
        while True:
            try:
                start = state.listing_start(window_start)
                listed = [info.task_id for info in hook.list_image_tasks("FINISH", start_time=start)]
                state.listing_calls += max(1, -(-len(listed) // 100))
                finished = state.finished_in(listed)
                finished += [t for t in state.direct_check_due() if t not in finished]

                def describe(task_id: str) -> tuple[str, Any]:
                    try:
                        return task_id, hook.describe_image_task(task_id)
                    except MpsResourceNotFoundError as err:
                        return task_id, err

                with ThreadPoolExecutor(min(8, max(1, len(finished)))) as pool:
                    for task_id, status in pool.map(describe, finished):
                        state.detail_calls += 1
                        if isinstance(status, MpsError):
                            state.record_error(task_id, status.code, status.message, status.request_id)
                        else:
                            state.record(task_id, status)
            except MpsError as err:
                if not err.retryable:
                    return state.result_rows(), {
                        "code": err.code,
                        "message": err.message,
                        "request_id": err.request_id,
                    }
                self.log.warning("Polling the batch failed, retrying: %s", err)
            line = state.progress_line()
            if line != last:
                self.log.info("%s", line)
                last = line
            if state.done:
                return state.result_rows(), None
            remaining = end_time - time.time()
            if remaining <= 0:
                return state.result_rows(), {
                    "code": "Timeout",
                    "message": f"{len(state.pending)} tasks unfinished at the deadline",
                    "request_id": None,
                }
            time.sleep(min(float(self.poll_interval), remaining))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        if not event:
            raise AirflowException("The batch trigger returned no event")
        cfg = self._validate()
        hook = self._hook()
        carry = unpack(event["carry"])
        rows = unpack(event["results"])
        error = event.get("error") if event.get("status") != "success" else None
        if event.get("status") == "error" and error and error.get("code") != "Timeout":
            raise AirflowFailException(
                f"Waiting for the batch stopped on a terminal MPS error [{error.get('code')}] "
                f"{error.get('message')} (RequestId: {error.get('request_id')})"
            )
        ledger = SubmissionLedger(self._store(context))
        ledger.load()
        return self._finish(context, hook, cfg, carry, rows, ledger, error)

    # ------------------------------------------------------------------ finish

    def _finish(
        self,
        context: Context,
        hook: Any,
        cfg: dict[str, Any],
        carry: dict[str, Any],
        rows: list[list[Any]],
        ledger: SubmissionLedger,
        error: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Manifest, summary, then the policy (after everything finished and the manifest is written)."""
        if error is not None and error.get("code") != "Timeout":
            raise AirflowFailException(
                f"Waiting for the batch stopped on a terminal MPS error [{error.get('code')}] "
                f"{error.get('message')} (RequestId: {error.get('request_id')})"
            )
        dest: batch_plan.CosLocation = cfg["destination"]
        results = {row[1]: TaskResult.from_row(row) for row in rows}
        skipped = set(carry["skipped"])
        rejected = carry["rejected"]
        history = carry["history"]
        records = []
        counts = {SUCCEEDED: 0, FAILED: 0, SKIPPED: 0, SUBMITTED: 0, UNFINISHED: 0}
        failed_inputs: list[dict[str, Any]] = []
        for input_uri, output_key in carry["items"]:
            record: dict[str, Any] = {
                "input": input_uri,
                "output": f"cos://{dest.bucket}/{output_key}",
                "task_id": None,
                "state": SKIPPED,
                "outputs": [],
                "error": None,
            }
            if input_uri in results:
                res = results[input_uri]
                record.update(
                    task_id=res.task_id,
                    state=res.state,
                    outputs=[f"cos://{o}" for o in res.outputs],
                )
                if res.state == FAILED:
                    record["error"] = {
                        "code": res.error_code,
                        "message": res.error_message,
                        "request_id": res.request_id,
                    }
            elif input_uri in rejected:
                code, message, request_id = rejected[input_uri]
                record.update(
                    state=FAILED, error={"code": code, "message": message, "request_id": request_id}
                )
            elif input_uri not in skipped:
                continue
            if history.get(input_uri):
                record["previous_task_ids"] = history[input_uri]
            counts[record["state"]] += 1
            if record["state"] == FAILED:
                failed_inputs.append(
                    {"input": input_uri, "code": record["error"]["code"], "task_id": record["task_id"]}
                )
            records.append(record)

        manifest_key = dest.key + self.manifest_name
        hook.write_object(
            dest.bucket, manifest_key, manifest_lines(records), content_type="application/x-ndjson"
        )
        manifest_uri = f"cos://{dest.bucket}/{manifest_key}"
        summary = {
            "total": len(carry["items"]),
            "submitted": carry["submitted"],
            "adopted": carry["adopted"],
            "skipped": counts[SKIPPED],
            "succeeded": counts[SUCCEEDED],
            "failed": counts[FAILED],
            "pending": counts[SUBMITTED] + counts[UNFINISHED],
            "manifest_uri": manifest_uri,
            "failed_inputs": failed_inputs[: self.max_failed_in_xcom],
            "destination": dest.uri,
        }
        self.log.info(
            "Batch done: %d images, %d succeeded, %d failed, %d skipped; manifest %s",
            summary["total"],
            summary["succeeded"],
            summary["failed"],
            summary["skipped"],
            manifest_uri,
        )
        # Also under key "summary", so a downstream report (trigger_rule all_done) sees it when the
        # policy below fails the task and no return value is pushed.
        push = getattr(context.get("ti"), "xcom_push", None)
        if callable(push):
            push(key="summary", value=summary)
        if error is not None:  # timeout: a retry adopts the unfinished tasks
            raise AirflowException(
                f"Timed out with {counts[UNFINISHED]} of {len(results)} tasks unfinished; manifest {manifest_uri}"
            )
        ledger.mark_completed()
        finished = counts[SUCCEEDED] + counts[FAILED]
        ratio = counts[FAILED] / finished if finished else 0.0
        if counts[FAILED] and ratio > float(self.max_failed_ratio):
            examples = ", ".join(f"{f['input']} [{f['code']}]" for f in failed_inputs[:5])
            raise AirflowFailException(
                f"{counts[FAILED]} of {finished} images failed (ratio {ratio:.3f} > max_failed_ratio "
                f"{self.max_failed_ratio}); e.g. {examples}; manifest {manifest_uri}"
            )
        return summary
