"""The end of a batch: manifest lines, the XCom summary and the partial-failure verdict. Pure.

Inputs are what travelled through the wait: the *carry* (what the operator knew before waiting — every
item, the skipped and the rejected ones, earlier task ids, counts; :func:`make_carry`) and the result
rows (:meth:`airflow_mps.batch.progress.TaskResult.to_row`). docs/batch.md describes every field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_mps.batch.plan import CosLocation, Refusal
from airflow_mps.batch.progress import FAILED, SKIPPED, SUBMITTED, SUCCEEDED, UNFINISHED, TaskResult
from airflow_mps.errors import MpsError

#: How many failed inputs the policy's message names.
EXAMPLES_IN_MESSAGE = 5


def make_carry(
    entries: Sequence[tuple[str, str | None]],
    *,
    skipped: Iterable[str],
    rejected: Mapping[str, MpsError],
    history: Mapping[str, list[str]],
    submitted: int,
    adopted: int,
    refused: Sequence[Refusal] = (),
) -> dict[str, Any]:
    """What the manifest needs besides the results (JSON-safe: it travels through durable state).

    ``entries`` are ``(input_uri, output_key | None)`` of every input in input order; ``rejected``
    MPS's refusals at submission and ``refused`` the planner's (``Planning.*`` codes): both become
    failed lines (``error.request_id`` null for the planner's)."""
    refusals = {r.input_uri: [r.code, r.message, None] for r in refused}
    return {
        "items": [[uri, key] for uri, key in entries],
        "skipped": sorted(skipped),
        "rejected": {**refusals, **{u: [e.code, e.message, e.request_id] for u, e in rejected.items()}},
        "history": dict(history),
        "submitted": submitted,
        "adopted": adopted,
    }


def _record(
    input_uri: str,
    output_key: str | None,
    destination: CosLocation,
    result: TaskResult | None,
    rejected: list[Any] | None,
) -> dict[str, Any]:
    """One manifest line: the task's outcome, MPS's refusal at submission, or skipped."""
    record: dict[str, Any] = {
        "input": input_uri,
        "output": f"cos://{destination.bucket}/{output_key}" if output_key is not None else None,
        "task_id": None,
        "state": SKIPPED,
        "outputs": [],
        "error": None,
    }
    if result is not None:
        record.update(
            task_id=result.task_id, state=result.state, outputs=[f"cos://{o}" for o in result.outputs]
        )
        if result.state == FAILED:
            record["error"] = {
                "code": result.error_code,
                "message": result.error_message,
                "request_id": result.request_id,
            }
    elif rejected is not None:
        code, message, request_id = rejected
        record.update(state=FAILED, error={"code": code, "message": message, "request_id": request_id})
    return record


@dataclass
class BatchReport:
    """Manifest records (input order) and the counts per state."""

    records: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(
        default_factory=lambda: {SUCCEEDED: 0, FAILED: 0, SKIPPED: 0, SUBMITTED: 0, UNFINISHED: 0}
    )
    failed_inputs: list[dict[str, Any]] = field(default_factory=list)
    #: How many tasks the result rows describe.
    tasks: int = 0

    @classmethod
    def build(
        cls, carry: Mapping[str, Any], rows: Iterable[Sequence[Any]], destination: CosLocation
    ) -> BatchReport:
        """One record per item that has a result, a rejection, or was skipped; other items are left out."""
        results = {row[1]: TaskResult.from_row(list(row)) for row in rows}
        skipped = set(carry["skipped"])
        rejected = carry["rejected"]
        history = carry["history"]
        report = cls(tasks=len(results))
        for input_uri, output_key in carry["items"]:
            if input_uri not in results and input_uri not in rejected and input_uri not in skipped:
                continue
            record = _record(
                input_uri, output_key, destination, results.get(input_uri), rejected.get(input_uri)
            )
            if history.get(input_uri):
                record["previous_task_ids"] = history[input_uri]
            report.add(record)
        return report

    def add(self, record: dict[str, Any]) -> None:
        self.counts[record["state"]] += 1
        if record["state"] == FAILED:
            self.failed_inputs.append(
                {"input": record["input"], "code": record["error"]["code"], "task_id": record["task_id"]}
            )
        self.records.append(record)

    def manifest(self) -> bytes:
        """JSON lines, one per image, in input order (see docs/batch.md for the fields)."""
        return b"".join(
            json.dumps(dict(r), sort_keys=False, ensure_ascii=False).encode() + b"\n" for r in self.records
        )

    def summary(
        self, carry: Mapping[str, Any], *, manifest_uri: str, destination: CosLocation, max_failed: int
    ) -> dict[str, Any]:
        """The XCom ``return_value`` (and key ``summary``)."""
        return {
            "total": len(carry["items"]),
            "submitted": carry["submitted"],
            "adopted": carry["adopted"],
            "skipped": self.counts[SKIPPED],
            "succeeded": self.counts[SUCCEEDED],
            "failed": self.counts[FAILED],
            "pending": self.counts[SUBMITTED] + self.counts[UNFINISHED],
            "manifest_uri": manifest_uri,
            "failed_inputs": self.failed_inputs[:max_failed],
            "destination": destination.uri,
        }

    def policy_failure(self, max_failed_ratio: float, manifest_uri: str) -> str | None:
        """The message when ``failed / (succeeded + failed) > max_failed_ratio``, else ``None``."""
        failed = self.counts[FAILED]
        finished = self.counts[SUCCEEDED] + failed
        ratio = failed / finished if finished else 0.0
        if not failed or ratio <= float(max_failed_ratio):
            return None
        examples = ", ".join(f"{f['input']} [{f['code']}]" for f in self.failed_inputs[:EXAMPLES_IN_MESSAGE])
        return (
            f"{failed} of {finished} images failed (ratio {ratio:.3f} > max_failed_ratio "
            f"{max_failed_ratio}); e.g. {examples}; manifest {manifest_uri}"
        )
