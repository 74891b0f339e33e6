"""``MpsBatchProcessImageOperator``: every image of a COS prefix (or a list) → MPS, in one Airflow task.

``execute`` runs named phases (docs/batch.md has the user-facing version):

1. **validate** every argument before any API call (:meth:`~MpsBatchProcessImageOperator._validate`):
   templated fields that rendered to nothing first (:mod:`airflow_mps.utils.rendered`), then each
   argument's shape, then the region (the argument or the connection's) before the first listing;
2. **list** the source prefix (paged, suffix filter) and, alongside it, the destination prefix once;
   plan every input and build (= validate) its ``ProcessImage`` request. An input that cannot be
   planned or built is refused for that image only, a failed manifest line with a ``Planning.*`` code
   (:mod:`airflow_mps.batch.plan`, :mod:`airflow_mps.models.keys`);
3. **adopt** what a previous try submitted: the ledger in ``task_state_store`` (Airflow >= 3.3), then the
   gap (a worker that died between ``ProcessImage`` and the ledger write) by listing the tasks created
   since the first try's window start and matching inputs (:mod:`airflow_mps.batch.resume`,
   :mod:`airflow_mps.batch.adopt`);
4. **skip existing** outputs; adopted tasks without an output yet are described once, and those that
   FINISHed with a failure (or vanished) are resubmitted (the earlier task id is kept as history);
5. **submit** the rest with a bounded thread pool (:mod:`airflow_mps.batch.submit`), describing the tasks
   that finish meanwhile (:mod:`airflow_mps.batch.overlap`);
6. **wait**: defer to one ``MpsImageBatchTrigger`` — its state in two objects next to the manifest,
   so kwargs and event stay small at any N (:mod:`airflow_mps.batch.state`) — or poll in place; the
   same wait core (:mod:`airflow_mps.waits.batch`) either way;
7. **finish**: write the manifest (JSON lines) next to the outputs, return a small summary, then apply
   the partial-failure policy — only after everything finished and the manifest is written.

Importing this module costs only what declaring the operator needs (the base class and the default
suffixes): the batch engine (:mod:`airflow_mps.batch`, :mod:`airflow_mps.waits.batch`), the hook (and
the SDK), the models and the trigger are imported inside the methods that run at execute time, never
while a DAG file is parsed (benchmark P5; ``airflow_mps.operators.mps`` re-exports this class).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_mps.batch import DEFAULT_SUFFIXES
from airflow_mps.links.mps import MpsBatchOutputsLink, push_batch_outputs
from airflow_mps.operators.base import MpsBaseOperator

if TYPE_CHECKING:
    from concurrent.futures import Future

    from airflow.providers.common.compat.sdk import Context

    from airflow_mps.batch.ledger import SubmissionLedger
    from airflow_mps.batch.overlap import SubmitTimeWatcher
    from airflow_mps.batch.plan import BatchConfig, BatchItem, Plan
    from airflow_mps.batch.progress import BatchWaitState
    from airflow_mps.batch.resume import Try
    from airflow_mps.errors import MpsError


#: Templated fields that must hold a value after rendering; the others may be ``None`` (unset: their
#: default), never rendered empty (:meth:`MpsBatchProcessImageOperator._validate`).
REQUIRED_FIELDS = ("source", "destination", "suffixes", "tencentcloud_conn_id")


def _terminal_message(error: dict[str, Any]) -> str:
    return (
        f"Waiting for the batch stopped on a terminal MPS error [{error.get('code')}] "
        f"{error.get('message')} (RequestId: {error.get('request_id')})"
    )


class MpsBatchProcessImageOperator(MpsBaseOperator):
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
    :param tencentcloud_conn_id: connection of type ``tencentcloud``. Templated.
    :param region: MPS and COS region; ``None`` uses the connection's. Templated.
    :param wait_for_completion: ``False`` returns after submission (manifest states ``submitted``).
    :param deferrable: wait in the triggerer (no worker slot) instead of polling in place. Default:
        ``[operators] default_deferrable``.
    :param poll_interval: seconds between polls.
    :param timeout: seconds (or a ``timedelta``) to wait for the tasks, per try; ``None`` = 7 days (MPS
        keeps tasks 7 days). ``execution_timeout`` is respected too (the earlier wins), also while
        deferred: the deadline is absolute and carried into the trigger.
    :param manifest_name: object name of the manifest under ``destination``.
    :param max_failed_in_xcom: cap on ``failed_inputs`` in the returned summary.
    """

    template_fields: Sequence[str] = (
        "source",
        "destination",
        "image_task",
        "suffixes",
        "tencentcloud_conn_id",
        "region",
    )
    template_fields_renderers = {"image_task": "json", "source": "json"}
    #: One MPS task id means nothing for a batch: the link opens the folder of outputs and manifest.
    operator_extra_links = (MpsBatchOutputsLink(),)
    ui_color = "#e8f4ff"

    def __init__(
        self,
        *,
        source: str | list[str],
        destination: str,
        image_task: dict[str, Any] | str | None = None,
        suffixes: Sequence[str] | str = DEFAULT_SUFFIXES,
        max_images: int | None = None,
        overwrite: bool = False,
        max_failed_ratio: float = 0.0,
        fail_on_empty: bool = False,
        submit_concurrency: int = 8,
        tencentcloud_conn_id: str = "tencentcloud_default",
        region: str | None = None,
        wait_for_completion: bool = True,
        deferrable: bool | None = None,
        poll_interval: float = 15,
        timeout: float | timedelta | None = None,
        manifest_name: str = "_mps_manifest.jsonl",
        max_failed_in_xcom: int = 100,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            tencentcloud_conn_id=tencentcloud_conn_id,
            region=region,
            wait_for_completion=wait_for_completion,
            deferrable=deferrable,
            **kwargs,
        )
        # No logic on templated fields here (apache/airflow #33786): they are checked in execute().
        # poll_interval and timeout too, unlike the base class: every batch argument is refused in
        # execute() with an AirflowFailException naming it, before any API call (docs/batch.md).
        self.poll_interval = poll_interval
        self.timeout = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        self.source = source
        self.destination = destination
        self.image_task = image_task
        self.suffixes = suffixes
        self.max_images = max_images
        self.overwrite = overwrite
        self.max_failed_ratio = max_failed_ratio
        self.fail_on_empty = fail_on_empty
        self.submit_concurrency = submit_concurrency
        self.manifest_name = manifest_name
        self.max_failed_in_xcom = max_failed_in_xcom

    # ------------------------------------------------------------------ execute: the phases

    def execute(self, context: Context) -> Any:
        from airflow_mps.batch.report import make_carry

        cfg = self._validate()
        region = self._resolve_region()
        push_batch_outputs(
            context, bucket=cfg.destination.bucket, prefix=cfg.destination.key, region=region, operator=self
        )
        existing = self._list_existing(cfg)
        plan = self._list_inputs(cfg, region)
        existing_keys = existing.result() if existing is not None else set()
        run = self._adopt(context, plan.items, cfg, existing_keys)
        self._skip_existing(run, existing_keys)
        submitted, rejected, state = self._submit_watching(run, cfg, region)
        self.metrics.submitted(len(submitted))
        carry = make_carry(
            plan.entries,
            skipped=run.skipped,
            rejected=rejected,
            refused=plan.refused,
            history=run.history,
            submitted=len(submitted),
            adopted=len(run.adopted),
        )
        return self._wait(context, cfg, run, carry, {**run.adopted, **submitted}, state)

    # ------------------------------------------------------------------ 1. validate

    def _validate(self) -> BatchConfig:
        """Every argument check that needs no API call; raises AirflowFailException naming the argument.

        First the templated fields that rendered to nothing (``None``, ``"None"``, ``""``, ``"null"``,
        ``"[]"``: :func:`airflow_mps.utils.rendered.reject_rendered_empty`, shared with the single-image
        operator and the sensor): the :data:`REQUIRED_FIELDS` must hold a value; ``image_task`` and
        ``region`` may be left unset (``None``: no ImageTask, the connection's region) but not rendered
        empty — a ``region`` rendered ``""`` would otherwise fall back to the connection's region
        without a word."""
        from airflow_mps.batch import plan as batch_plan
        from airflow_mps.errors import MpsError, MpsValidationError

        try:
            self.reject_rendered_empty_fields(self.template_fields, required=REQUIRED_FIELDS)
        except MpsValidationError as err:
            raise AirflowFailException(err.message) from err
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
        return batch_plan.BatchConfig(source, destination, suffixes, image_task, extension)

    def _resolve_region(self) -> str:
        """The region argument, else the connection's, checked before any API call (issue 12: a bad
        region used to surface only after the COS listings, when the first request was built)."""
        from airflow_mps.errors import MpsError
        from airflow_mps.models.validation import check_region

        region = self.resolved_region()
        if not region:
            raise AirflowFailException(
                "region: no region given and the connection has no 'region' extra; COS inputs need one"
            )
        try:
            check_region(region, "region")
        except MpsError as err:
            source = "the argument" if self.region else f"the connection {self.tencentcloud_conn_id!r}"
            raise AirflowFailException(f"{err.message} (from {source})") from err
        return region

    # ------------------------------------------------------------------ 2. list

    def _list_existing(self, cfg: BatchConfig) -> Future[set[str]] | None:
        """Start the destination listing (skip-existing) alongside the source listing: one round trip
        less of worker-slot time before the first submission. ``None`` with ``overwrite``."""
        if self.overwrite:
            return None
        from concurrent.futures import ThreadPoolExecutor

        hook, dest = self.hook, cfg.destination
        lister = ThreadPoolExecutor(1, thread_name_prefix="mps-list")
        try:
            return lister.submit(lambda: {obj.key for obj in hook.list_objects(dest.bucket, dest.key)})
        finally:
            lister.shutdown(wait=False)

    def _list_inputs(self, cfg: BatchConfig, region: str) -> Plan:
        """The batch's inputs, planned, each request built (= validated) before any submission.

        An input whose request cannot be built, or whose output is unsafe, too long or shared with
        another input, is refused for that image only (a failed manifest line with a ``Planning.*``
        code; :mod:`airflow_mps.batch.plan`); the rest of the partition runs."""
        from airflow_mps.batch import plan as batch_plan
        from airflow_mps.errors import MpsError

        source = cfg.source
        if isinstance(source, batch_plan.CosLocation):
            keys = batch_plan.filter_keys(
                (obj.key for obj in self.hook.list_objects(source.bucket, source.key)),
                source.key,
                cfg.suffixes,
                self.manifest_name,
            )
            locations = [batch_plan.CosLocation(source.bucket, k) for k in keys]
            prefix: str | None = source.key
        else:
            locations, prefix = list(source), None
        if self.max_images is not None:
            locations = locations[: self.max_images]
        plan = batch_plan.plan_items(locations, prefix, cfg.destination, cfg.extension)
        unbuildable = []
        for item in plan.items:
            try:
                batch_plan.build_request(item, cfg, region)
            except MpsError as err:
                unbuildable.append((item, batch_plan.INVALID_REQUEST, f"[{err.code}] {err.message}"))
        plan.refuse(unbuildable)
        if plan.refused:
            self.log.warning(
                "%d of %d inputs refused before submission (failed manifest lines), e.g. %s",
                len(plan.refused),
                len(plan.entries),
                "; ".join(f"{r.input_uri} [{r.code}] {r.message}" for r in plan.refused[:3]),
            )
        if not plan.entries:
            message = f"No image under {self.source} (suffixes {', '.join(cfg.suffixes)})"
            if self.fail_on_empty:
                raise AirflowFailException(message)
            self.log.warning("%s: nothing to do", message)
        return plan

    # ------------------------------------------------------------------ 3. adopt

    @staticmethod
    def _store(context: Context) -> Any:
        """``task_state_store`` on Airflow >= 3.3, else ``None`` (detected at runtime)."""
        try:
            return context.get("task_state_store")
        except Exception:
            return None

    def _adopt(self, context: Context, items: list[BatchItem], cfg: BatchConfig, existing: set[str]) -> Try:
        """Phase 3 (:func:`airflow_mps.batch.resume.open_try`): the ledger, and what earlier tries submitted."""
        from airflow_mps.batch.resume import TryContext, open_try

        ctx = TryContext(
            hook=self.hook,
            store=self._store(context),
            log=self.log,
            try_number=int(getattr(context.get("ti"), "try_number", 1) or 1),
            run_start=getattr(context.get("dag_run"), "start_date", None),
            workers=self.submit_concurrency,
            poll_interval=float(self.poll_interval),
            deadline=self.wait_deadline(context),
            patience=float(getattr(self.hook, "reconcile_deadline_seconds", 60.0)),
        )
        return open_try(ctx, items, cfg, existing)

    # ------------------------------------------------------------------ 4. skip existing

    def _skip_existing(self, run: Try, existing: set[str]) -> None:
        """Phase 4 (:func:`airflow_mps.batch.resume.skip_existing`): adopted, skipped, to submit."""
        from airflow_mps.batch.resume import skip_existing

        skip_existing(self.hook, run, existing, workers=self.submit_concurrency, log=self.log)

    # ------------------------------------------------------------------ 5. submit

    def _submit_watching(
        self, run: Try, cfg: BatchConfig, region: str
    ) -> tuple[dict[str, str], dict[str, MpsError], BatchWaitState]:
        """Submit, describing the tasks that finish meanwhile (the Describe budget is idle during the
        submission), so only the tail is left to wait for afterwards. Returns the wait's state."""
        from airflow_mps.batch.overlap import SubmitTimeWatcher
        from airflow_mps.batch.progress import BatchWaitState

        watcher: SubmitTimeWatcher | None = None
        if self.wait_for_completion and (run.to_submit or run.adopted):
            watcher = SubmitTimeWatcher(self.hook, run.window_start, float(self.poll_interval), log=self.log)
            for uri, tid in run.adopted.items():
                watcher.add(tid, uri)
            watcher.start()
        try:
            submitted, rejected = self._submit(self.hook, run.to_submit, cfg, region, run.ledger, watcher)
        finally:
            state = watcher.stop() if watcher is not None else BatchWaitState([])
        return submitted, rejected, state

    def _submit(
        self,
        hook: Any,
        items: list[BatchItem],
        cfg: BatchConfig,
        region: str,
        ledger: SubmissionLedger,
        watcher: SubmitTimeWatcher | None = None,
    ) -> tuple[dict[str, str], dict[str, MpsError]]:
        """Submit ``items`` (:class:`~airflow_mps.batch.submit.BatchSubmitter`); returns (input → task id,
        input → per-image rejection). A batch-level error fails the task: without retry when terminal,
        else retryable (what was submitted is recorded; a retry submits only the rest)."""
        from airflow_mps.batch import plan as batch_plan
        from airflow_mps.batch.submit import BatchSubmitter, SubmissionStopped

        submitter = BatchSubmitter(
            hook,
            lambda item: batch_plan.build_request(item, cfg, region),
            ledger,
            concurrency=self.submit_concurrency,
            listener=watcher,
            log=self.log,
            on_latency=self.metrics.submit_latency,  # mps.submit.latency: once per task it creates
        )
        try:
            return submitter.run(items)
        except SubmissionStopped as stop:
            if stop.terminal:
                raise AirflowFailException(str(stop)) from stop.cause
            raise AirflowException(
                f"Submission stopped after {stop.submitted} of {stop.total} images (recorded; a retry "
                f"submits only the rest): {stop.cause}"
            ) from stop.cause

    # ------------------------------------------------------------------ 6. wait or defer

    def _wait(
        self,
        context: Context,
        cfg: BatchConfig,
        run: Try,
        carry: dict[str, Any],
        tasks: dict[str, str],
        state: BatchWaitState,
    ) -> dict[str, Any]:
        """Wait for the tail (defer, or poll in place), or finish at once when nothing is left."""
        from airflow_mps.batch.poll import poll_in_place
        from airflow_mps.batch.progress import SUBMITTED, TaskResult

        if not self.wait_for_completion or not tasks:
            rows = [TaskResult(tid, uri, SUBMITTED).to_row() for uri, tid in tasks.items()]
            return self._finish(context, cfg, carry, rows, run.ledger)
        self.log.info(
            "%s while submitting (%d listings, %d details); waiting for the other %d",
            state.progress_line(),
            state.listing_calls,
            state.detail_calls,
            len(state.pending),
        )
        if state.done:  # everything finished during the submission: nothing to wait for
            return self._finish(context, cfg, carry, state.result_rows(), run.ledger)
        end_time = self.wait_deadline(context)
        if self.deferrable:
            self._defer(cfg, state, carry, run.window_start, end_time)
        outcome = poll_in_place(
            self.hook,
            state,
            window_start=run.window_start,
            end_time=end_time,
            poll_interval=float(self.poll_interval),
            log=self.log,
        )
        return self._finish(context, cfg, carry, state.result_rows(), run.ledger, outcome.error)

    def _defer(
        self,
        cfg: BatchConfig,
        state: BatchWaitState,
        carry: dict[str, Any],
        window_start: str,
        end_time: float,
    ) -> None:
        """Store the wait's state next to the manifest and hand the pending tail to one trigger until
        ``end_time``: its kwargs and its event stay a few hundred bytes at any N (issue 12;
        :mod:`airflow_mps.batch.state`). The Airflow-level deferral timeout is the same deadline plus a
        grace period (the trigger's own ``timeout`` event normally wins)."""
        from airflow_mps.batch.state import store_deferral
        from airflow_mps.triggers.batch import MpsImageBatchTrigger  # lazy: not needed to parse a DAG

        dest = cfg.destination
        wait_at, token = store_deferral(
            self.hook,
            dest.bucket,
            dest.key,
            self.manifest_name,
            carry=carry,
            pending=state.pending_rows(),
            known=state.known_rows(),
        )
        self.log.info("Deferring %d pending tasks; batch state in %s", len(state.pending), wait_at.uri)
        self.defer_until(
            MpsImageBatchTrigger(
                state=wait_at.uri,
                state_token=token,
                tencentcloud_conn_id=self.tencentcloud_conn_id,
                region=self.region,
                poll_interval=self.poll_interval,
                end_time=end_time,
                window_start=window_start,
                prior_calls=[state.listing_calls, state.detail_calls],
                task_count=len(state.pending),
            ),
            end_time=end_time,
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        if not event:
            raise AirflowException("The batch trigger returned no event")
        from airflow_mps.batch.ledger import SubmissionLedger
        from airflow_mps.batch.progress import unpack

        cfg = self._validate()
        error = event.get("error") if event.get("status") != "success" else None
        if event.get("state"):
            # The results are next to the manifest; a lost or overwritten state is retryable: the retry
            # adopts the tasks again (ledger, listing) and waits anew.
            from airflow_mps.batch.state import StateError, load_results

            dest = cfg.destination
            try:
                carry, rows = load_results(self.hook, dest.bucket, dest.key, self.manifest_name, event)
            except StateError as err:
                raise AirflowException(
                    f"The batch's deferred state is unusable (a retry starts over): {err}"
                ) from err
        else:  # a trigger of an earlier provider version: everything inline
            carry, rows = unpack(event["carry"]), unpack(event["results"])
        ledger = SubmissionLedger(self._store(context))
        ledger.load()
        return self._finish(context, cfg, carry, rows, ledger, error)

    # ------------------------------------------------------------------ 7. finish

    def _finish(
        self,
        context: Context,
        cfg: BatchConfig,
        carry: dict[str, Any],
        rows: list[list[Any]],
        ledger: SubmissionLedger,
        error: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Manifest, summary, then the policy (after everything finished and the manifest is written)."""
        from airflow_mps.batch.progress import UNFINISHED
        from airflow_mps.batch.report import BatchReport

        if error is not None and error.get("code") != "Timeout":
            raise AirflowFailException(_terminal_message(error))
        dest = cfg.destination
        report = BatchReport.build(carry, rows, dest)
        manifest_key = dest.key + self.manifest_name
        self.hook.write_object(
            dest.bucket, manifest_key, report.manifest(), content_type="application/x-ndjson"
        )
        manifest_uri = f"cos://{dest.bucket}/{manifest_key}"
        summary = report.summary(
            carry, manifest_uri=manifest_uri, destination=dest, max_failed=self.max_failed_in_xcom
        )
        self.log.info(
            "Batch done: %d images, %d succeeded, %d failed, %d skipped; manifest %s",
            summary["total"],
            summary["succeeded"],
            summary["failed"],
            summary["skipped"],
            manifest_uri,
        )
        self.metrics.succeeded(summary["succeeded"])
        # Failed images by their MPS error code, like the single-image operator's (a tag per code).
        by_code = Counter(str(failed["code"] or "") for failed in report.failed_inputs)  # every failure
        for code, count in sorted(by_code.items()):
            self.metrics.failed(count, code=code or None)
        self.metrics.skipped(summary["skipped"], reason="output_exists")
        # Also under key "summary", so a downstream report (trigger_rule all_done) sees it when the
        # policy below fails the task and no return value is pushed.
        push = getattr(context.get("ti"), "xcom_push", None)
        if callable(push):
            push(key="summary", value=summary)
        if error is not None:  # timeout: a retry adopts the unfinished tasks
            raise AirflowException(
                f"Timed out with {report.counts[UNFINISHED]} of {report.tasks} tasks unfinished; "
                f"manifest {manifest_uri}"
            )
        ledger.mark_completed()
        failure = report.policy_failure(self.max_failed_ratio, manifest_uri)
        if failure is not None:
            raise AirflowFailException(failure)
        return summary

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage datasets: the source prefix (or listed inputs) in, the destination prefix out; a
        bucket root is named ``/`` (as the Amazon and Google providers name theirs). ``None`` without
        the OpenLineage provider (imports stay inside the method)."""
        from airflow_mps.utils.lineage import openlineage_from_pairs

        try:
            cfg = self._validate()
        except Exception:  # lineage never fails a task
            return None
        sources = cfg.source if isinstance(cfg.source, list) else [cfg.source]
        inputs = [(f"cosn://{src.bucket}", src.key or "/") for src in sources]
        outputs = [(f"cosn://{cfg.destination.bucket}", cfg.destination.key or "/")]
        return openlineage_from_pairs(inputs, outputs)
