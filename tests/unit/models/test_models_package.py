"""The models package keeps the single module's import surface, stays pure and has no import cycle."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

import airflow_mps.models

PACKAGE_DIR = Path(airflow_mps.models.__file__).parent
MODULES = sorted(p.stem for p in PACKAGE_DIR.glob("*.py") if p.stem != "__init__")

#: Every public name ``airflow_mps/models.py`` defined before it became a package (issue 10 item 2).
SINGLE_MODULE_NAMES = (
    "FORMATS",
    "INPUT_TYPES",
    "MASK",
    "OUTPUT_EXTENSIONS",
    "OUTPUT_TYPES",
    "TASK_STATES",
    "ImageTaskInfo",
    "ImageTaskStatus",
    "MediaInput",
    "OutputStorage",
    "ProcessImageRequest",
    "SubTaskResult",
    "TaskOutput",
    "Validator",
    "cos_uri",
    "expected_output_key",
    "image_task_conflicts",
    "listed_input_matches",
    "parse_cos_uri",
    "parse_listed_input",
    "parse_output_storage",
    "parse_uri",
    "request_input",
    "validate_image_task",
)


def test_one_role_per_module() -> None:
    assert MODULES == ["constants", "keys", "listing", "request", "schema", "status", "storage", "validation"]


@pytest.mark.parametrize("name", SINGLE_MODULE_NAMES)
def test_single_module_names_still_import(name: str) -> None:
    assert name in airflow_mps.models.__all__
    value = getattr(airflow_mps.models, name)
    home = getattr(value, "__module__", None)
    if isinstance(home, str) and home.startswith("airflow_mps.models."):
        # Classes and functions: one definition, re-exported (the object its own module defines).
        assert getattr(importlib.import_module(home), name) is value


def test_all_names_are_defined() -> None:
    for name in airflow_mps.models.__all__:
        assert hasattr(airflow_mps.models, name), name
    for module in MODULES:
        mod = importlib.import_module(f"airflow_mps.models.{module}")
        for name in getattr(mod, "__all__", ()):
            assert hasattr(mod, name), f"{module}.{name}"


def _imports(module: str) -> set[str]:
    """Top-level modules imported by ``airflow_mps/models/<module>.py`` (at any depth of its code)."""
    tree = ast.parse((PACKAGE_DIR / f"{module}.py").read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{module}: relative import"
            found.add(node.module)
    return found


@pytest.mark.parametrize("module", [*MODULES, "__init__"])
def test_pure_python(module: str) -> None:
    """Imported at DAG-parse time and by the emulator: the standard library and our errors only."""
    for name in _imports(module):
        top = name.split(".", 1)[0]
        if top == "airflow_mps":
            assert name == "airflow_mps.errors" or name.startswith("airflow_mps.models."), (module, name)
        else:
            assert top in sys.stdlib_module_names, (module, name)


def test_no_import_cycle() -> None:
    graph = {
        module: {
            name.rsplit(".", 1)[-1] for name in _imports(module) if name.startswith("airflow_mps.models.")
        }
        for module in MODULES
    }
    done: set[str] = set()

    def visit(module: str, stack: tuple[str, ...]) -> None:
        assert module not in stack, " -> ".join((*stack, module))
        if module in done:
            return
        for dependency in graph[module]:
            visit(dependency, (*stack, module))
        done.add(module)

    for module in MODULES:
        visit(module, ())
    assert graph["constants"] == set()  # the bottom: everyone may import it
    assert graph["listing"] == set()  # moves to airflow_mps/ownership.py as one file (issue 10 item 3)


def test_secret_masking_survives_the_split() -> None:
    from airflow_mps.models import ProcessImageRequest

    request = ProcessImageRequest.from_api(
        {
            "InputInfo": {
                "Type": "AWS-S3",
                "S3InputInfo": {
                    "S3Bucket": "b",
                    "S3Region": "us-east-1",
                    "S3Object": "/k.png",
                    "S3SecretId": "AKID",
                    "S3SecretKey": "s3cr3t-value",
                },
            },
            "OutputStorage": {"Type": "COS", "CosOutputStorage": {"Bucket": "b", "Region": "ap-guangzhou"}},
        }
    )
    assert "s3cr3t-value" not in repr(request)
    assert "s3_secret_key='***'" in repr(request.input)
