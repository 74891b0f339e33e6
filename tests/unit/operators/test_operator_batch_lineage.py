"""OpenLineage of the batch operator (issue 14 item 6): source prefix (or listed inputs) in, destination
prefix out.

The OpenLineage provider is not a dependency, so the two classes the operator asks for
(``airflow.providers.openlineage.extractors.OperatorLineage``, ``openlineage.client.event_v2.Dataset``)
are stand-ins put in ``sys.modules`` for each test: what is checked is the datasets the operator builds,
whatever provider version a deployment has. The single-image operator's datasets are checked in
tests/unit/operators/test_operator_mps.py.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from typing import Any

import pytest

from airflow_mps.operators.batch import MpsBatchProcessImageOperator

IN = "photos-1250000000"
OUT = "enhanced-1250000000"


@dataclass(frozen=True)
class Dataset:
    namespace: str
    name: str


@dataclass
class OperatorLineage:
    inputs: list[Dataset] = field(default_factory=list)
    outputs: list[Dataset] = field(default_factory=list)


@pytest.fixture
def openlineage(monkeypatch: pytest.MonkeyPatch) -> None:
    """The two OpenLineage names the operator imports, as stand-ins (nothing installed)."""
    extractors = types.ModuleType("airflow.providers.openlineage.extractors")
    extractors.OperatorLineage = OperatorLineage  # type: ignore[attr-defined]
    event_v2 = types.ModuleType("openlineage.client.event_v2")
    event_v2.Dataset = Dataset  # type: ignore[attr-defined]
    for name in ("airflow.providers.openlineage", "openlineage", "openlineage.client"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "airflow.providers.openlineage.extractors", extractors)
    monkeypatch.setitem(sys.modules, "openlineage.client.event_v2", event_v2)


def _lineage(source: Any, destination: str) -> Any:
    op = MpsBatchProcessImageOperator(
        task_id="enhance",
        source=source,
        destination=destination,
        image_task={"EncodeConfig": {"Format": "JPEG"}},
        region="ap-guangzhou",
    )
    return op.get_openlineage_facets_on_complete(None)


def _pairs(datasets: list[Dataset]) -> list[tuple[str, str]]:
    return [(d.namespace, d.name) for d in datasets]


def test_prefix_source_to_destination_prefix(openlineage: None) -> None:
    lineage = _lineage(f"cos://{IN}/raw/dt=2026-11-01/", f"cos://{OUT}/enhanced/dt=2026-11-01/")
    assert isinstance(lineage, OperatorLineage)
    assert _pairs(lineage.inputs) == [(f"cosn://{IN}", "raw/dt=2026-11-01/")]
    assert _pairs(lineage.outputs) == [(f"cosn://{OUT}", "enhanced/dt=2026-11-01/")]


def test_list_source_names_each_listed_input(openlineage: None) -> None:
    lineage = _lineage(
        [f"cos://{IN}/raw/dt=2026-11-01/a.jpg", f"cos://{IN}/raw/dt=2026-11-01/b.png"],
        f"cos://{OUT}/enhanced/dt=2026-11-01/",
    )
    assert _pairs(lineage.inputs) == [
        (f"cosn://{IN}", "raw/dt=2026-11-01/a.jpg"),
        (f"cosn://{IN}", "raw/dt=2026-11-01/b.png"),
    ]
    assert _pairs(lineage.outputs) == [(f"cosn://{OUT}", "enhanced/dt=2026-11-01/")]


def test_list_source_across_partitions_and_buckets(openlineage: None) -> None:
    """A list spanning two partitions and two buckets (as a template renders it, JSON text): every
    input once, in order, under its own bucket's namespace; one destination prefix."""
    other = "archive-1250000000"
    rendered = (
        f'["cos://{IN}/raw/dt=2026-11-01/a.jpg", "cos://{IN}/raw/dt=2026-11-02/a.jpg", '
        f'"cos://{other}/raw/dt=2026-11-02/c.webp", "cos://{IN}/raw/dt=2026-11-01/a.jpg"]'
    )
    lineage = _lineage(rendered, f"cos://{OUT}/enhanced/week=45/")
    assert _pairs(lineage.inputs) == [
        (f"cosn://{IN}", "raw/dt=2026-11-01/a.jpg"),
        (f"cosn://{IN}", "raw/dt=2026-11-02/a.jpg"),
        (f"cosn://{other}", "raw/dt=2026-11-02/c.webp"),
    ]
    assert _pairs(lineage.outputs) == [(f"cosn://{OUT}", "enhanced/week=45/")]


def test_prefix_over_several_partitions_is_one_dataset_each_side(openlineage: None) -> None:
    """A parent prefix (every ``dt=`` partition under ``raw/``) stays one dataset: lineage does not
    list the bucket."""
    lineage = _lineage(f"cos://{IN}/raw/", f"cos://{OUT}/enhanced/")
    assert _pairs(lineage.inputs) == [(f"cosn://{IN}", "raw/")]
    assert _pairs(lineage.outputs) == [(f"cosn://{OUT}", "enhanced/")]


def test_bucket_root_is_named_slash(openlineage: None) -> None:
    """A bucket root has an empty key; OpenLineage names it ``/`` (as the Amazon and Google providers do)."""
    lineage = _lineage(f"cos://{IN}/", f"cos://{OUT}/")
    assert _pairs(lineage.inputs) == [(f"cosn://{IN}", "/")]
    assert _pairs(lineage.outputs) == [(f"cosn://{OUT}", "/")]


def test_invalid_arguments_give_no_lineage(openlineage: None) -> None:
    assert _lineage("not-a-uri", f"cos://{OUT}/enhanced/") is None  # lineage never fails a task
    assert _lineage(f"cos://{IN}/raw/", f"cos://{IN}/raw/out/") is None  # destination inside the source


def test_none_without_the_openlineage_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "airflow.providers.openlineage.extractors", None)
    assert _lineage(f"cos://{IN}/raw/", f"cos://{OUT}/enhanced/") is None
