"""Provider registration: the dict validates against Airflow's schemas (the CLI view is in
tests/integration/test_provider_info_cli.py)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from airflow_mps import __version__, get_provider_info


def _schema(name: str) -> dict:
    return json.loads(resources.files("airflow").joinpath(name).read_text())


def test_validates_against_runtime_provider_info_schema() -> None:
    jsonschema.validate(get_provider_info(), _schema("provider_info.schema.json"))


def test_connection_types_validate_against_provider_yaml_schema() -> None:
    sub_schema = _schema("provider.yaml.schema.json")["properties"]["connection-types"]
    info = get_provider_info()
    jsonschema.validate(info["connection-types"], sub_schema)
    (conn,) = info["connection-types"]
    assert conn["connection-type"] == "tencentcloud"
    assert conn["hook-class-name"] == "airflow_mps.hooks.mps.MpsHook"
    assert set(conn["conn-fields"]) == {
        "region",
        "endpoint",
        "protocol",
        "token",
        "request_timeout",
        "process_image_rate",
        "describe_rate",
        "ca_bundle",
        "proxy",
    }
    assert conn["conn-fields"]["token"]["schema"]["format"] == "password"


def _connection_types_schema() -> dict:
    return _schema("provider.yaml.schema.json")["properties"]["connection-types"]


def _schema_describes_conn_fields() -> bool:
    """Airflow's provider.yaml schema describes ``conn-fields`` only in newer releases (not in 3.0)."""
    return "conn-fields" in json.dumps(_connection_types_schema())


def test_schema_rejects_a_connection_type_without_hook_class() -> None:
    """The sub-schema is strict enough to matter on every supported Airflow (3.0's has no conn-fields)."""
    with pytest.raises(jsonschema.ValidationError, match="hook-class-name"):
        jsonschema.validate([{"connection-type": "tencentcloud"}], _connection_types_schema())


@pytest.mark.skipif(
    not _schema_describes_conn_fields(),
    reason="this Airflow's provider.yaml schema does not describe conn-fields (added after Airflow 3.0)",
)
def test_schema_rejects_a_broken_connection_type() -> None:
    """The sub-schema is strict enough to matter (guards against validating against nothing)."""
    sub_schema = _connection_types_schema()
    broken = [
        {"connection-type": "tencentcloud", "hook-class-name": "x", "conn-fields": {"region": {"label": 1}}}
    ]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, sub_schema)


def test_package_name_matches_the_installed_distribution() -> None:
    from importlib.metadata import distribution

    dist = distribution(get_provider_info()["package-name"])
    assert dist.metadata["Name"] == "airflow-provider-tencentcloud-mps"
    assert get_provider_info()["versions"] == [__version__]


def test_hook_class_ui_matches_provider_info() -> None:
    from airflow_mps.hooks.mps import MpsHook

    behaviour = MpsHook.get_ui_field_behaviour()
    assert behaviour["relabeling"] == {"login": "SecretId", "password": "SecretKey"}
    assert "host" in behaviour["hidden_fields"]
    assert MpsHook.conn_type == "tencentcloud"
    assert MpsHook.default_conn_name == "tencentcloud_default"


def _listed(kind: str) -> list[str]:
    return [module for entry in get_provider_info()[kind] for module in entry["python-modules"]]


@pytest.mark.parametrize("kind", ["hooks", "operators", "sensors", "triggers"])
def test_every_listed_module_imports(kind: str) -> None:
    import importlib

    modules = _listed(kind)
    assert modules and len(modules) == len(set(modules))
    for name in modules:
        importlib.import_module(name)


def test_extra_links_import() -> None:
    import importlib

    for path in get_provider_info()["extra-links"]:
        module, _, cls = path.rpartition(".")
        assert isinstance(getattr(importlib.import_module(module), cls), type)


def _base_classes() -> dict[str, type]:
    from airflow.providers.common.compat.sdk import BaseHook, BaseSensorOperator
    from airflow.triggers.base import BaseTrigger

    return {"hooks": BaseHook, "sensors": BaseSensorOperator, "triggers": BaseTrigger}


def _defines(module: object, base: type) -> bool:
    """True when ``module`` itself defines a public subclass of ``base`` (not merely imports one)."""
    return any(
        isinstance(obj, type)
        and issubclass(obj, base)
        and obj.__module__ == getattr(module, "__name__", None)
        and not name.startswith("_")
        for name, obj in vars(module).items()
    )


@pytest.mark.parametrize("kind", ["hooks", "sensors", "triggers"])
def test_every_hook_sensor_and_trigger_module_is_listed(kind: str) -> None:
    """A module under airflow_mps/<kind>/ that defines a public hook, sensor or trigger class is in
    provider info, and every module listed there defines one (no stale entries)."""
    import importlib
    import pkgutil

    base = _base_classes()[kind]
    package = importlib.import_module(f"airflow_mps.{kind}")
    found = set()
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"airflow_mps.{kind}.{info.name}")
        if _defines(module, base):
            found.add(module.__name__)
    listed = set(_listed(kind))
    assert found == listed, {"unlisted": found - listed, "listed without one": listed - found}


def test_the_providers_page_links_a_live_page_not_a_placeholder() -> None:
    """Airflow's Providers page links the package name to the ``Documentation`` Project-URL (without
    one, to a dead airflow.apache.org URL). Until the repository is published the one live page is the
    service's documentation, the integration's ``external-doc-url``; no unpublished home is named."""
    tomllib = pytest.importorskip("tomllib")
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    urls = tomllib.loads(pyproject.read_text())["project"]["urls"]
    (integration,) = get_provider_info()["integrations"]
    assert urls == {"Documentation": integration["external-doc-url"]}
