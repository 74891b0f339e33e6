"""Emulator configuration: strict defaults, the one `lenient` switch, the region check, the CLI flags."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from airflow_mps.emulator.config import (
    DEFAULT_DESCRIBE_RATE,
    DEFAULT_PROCESS_IMAGE_RATE,
    LENIENT_OVERRIDES,
    EmulatorConfig,
    add_fidelity_arguments,
    fidelity_options,
)
from airflow_mps.emulator.testing import EmulatorProcess
from airflow_mps.models.constants import MPS_REGIONS, TASK_RETENTION_SECONDS


def test_defaults_are_the_documented_service_at_its_strictest() -> None:
    config = EmulatorConfig()
    assert (config.process_image_rate, config.describe_rate) == (20, 20)
    assert DEFAULT_PROCESS_IMAGE_RATE == DEFAULT_DESCRIBE_RATE == 20
    assert config.echo_listing_input is False
    assert config.listing_waiting == "hidden"
    assert config.lenient is False
    assert config.regions() == MPS_REGIONS
    assert config.auto_create_buckets is False  # a PUT into a missing bucket: NoSuchBucket, as COS
    assert config.task_retention_seconds == TASK_RETENTION_SECONDS == 7 * 24 * 3600


def test_lenient_restores_the_old_behaviour_where_nothing_else_was_asked() -> None:
    config = EmulatorConfig(lenient=True)
    assert {name: getattr(config, name) for name in LENIENT_OVERRIDES} == {
        "describe_rate": 100,
        "echo_listing_input": True,
        "listing_waiting": "waiting",
        "auto_create_buckets": True,
        "task_retention_seconds": None,
    }
    # An explicit, non-default choice wins over the switch.
    chosen = EmulatorConfig(lenient=True, describe_rate=7, listing_waiting="processing")
    assert (chosen.describe_rate, chosen.listing_waiting, chosen.echo_listing_input) == (
        7,
        "processing",
        True,
    )


def test_task_retention_is_positive_or_forever() -> None:
    assert EmulatorConfig(task_retention_seconds=2.5).task_retention_seconds == 2.5
    assert EmulatorConfig(task_retention_seconds=None).task_retention_seconds is None
    for bad in (0, -1):
        with pytest.raises(ValueError, match="task_retention_seconds must be a positive number"):
            EmulatorConfig(task_retention_seconds=bad)
    # lenient keeps tasks forever only where the retention was left at 7 days
    assert EmulatorConfig(lenient=True, task_retention_seconds=60).task_retention_seconds == 60


def test_listing_waiting_must_be_a_known_mode() -> None:
    for mode in ("hidden", "processing", "waiting"):
        assert EmulatorConfig(listing_waiting=mode).listing_waiting == mode
    with pytest.raises(ValueError, match="listing_waiting must be one of hidden, processing, waiting"):
        EmulatorConfig(listing_waiting="visible")


def test_the_configured_region_must_be_an_mps_region() -> None:
    assert EmulatorConfig(region="eu-frankfurt").region == "eu-frankfurt"
    with pytest.raises(ValueError, match="'ap-guangzho' is not an MPS region"):
        EmulatorConfig(region="ap-guangzho")
    config = EmulatorConfig(region="ap-shanghai-fsi", extra_regions=["ap-shanghai-fsi"])
    assert config.regions() == (*MPS_REGIONS, "ap-shanghai-fsi")


def test_mps_regions_are_the_documented_service_addresses() -> None:
    # doc 1041/33627 "Service Address": 16 regions, no financial zones, no COS-only regions.
    assert len(MPS_REGIONS) == len(set(MPS_REGIONS)) == 16
    assert {"ap-guangzhou", "ap-nanjing", "ap-jakarta", "sa-saopaulo", "eu-frankfurt"} <= set(MPS_REGIONS)
    assert not {"ap-shanghai-fsi", "eu-moscow", "na-toronto", "ap-mumbai"} & set(MPS_REGIONS)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_fidelity_arguments(parser)
    return parser.parse_args(argv)


def test_cli_flags_and_env_feed_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    assert fidelity_options(_parse([])) == {
        "echo_listing_input": False,
        "listing_waiting": "hidden",
        "extra_regions": [],
        "auto_create_buckets": False,
        "task_retention_seconds": float(TASK_RETENTION_SECONDS),
        "lenient": False,
    }
    options = fidelity_options(
        _parse(
            [
                "--echo-listing-input",
                "--listing-waiting",
                "processing",
                "--extra-region",
                "xx-test",
                "--auto-create-buckets",
                "--task-retention-seconds",
                "90",
                "--lenient",
            ]
        )
    )
    config = EmulatorConfig(**options)
    assert (config.echo_listing_input, config.listing_waiting, config.extra_regions) == (
        True,
        "processing",
        ["xx-test"],
    )
    assert config.describe_rate == 100  # lenient, describe_rate left at its default
    assert (config.auto_create_buckets, config.task_retention_seconds) == (True, 90.0)
    assert fidelity_options(_parse(["--task-retention-seconds", "forever"]))["task_retention_seconds"] is None
    monkeypatch.setenv("MPS_EMULATOR_ECHO_LISTING_INPUT", "1")
    monkeypatch.setenv("MPS_EMULATOR_LISTING_WAITING", "waiting")
    monkeypatch.setenv("MPS_EMULATOR_EXTRA_REGIONS", "xx-a,xx-b")
    from_env = fidelity_options(_parse([]))
    assert (from_env["echo_listing_input"], from_env["listing_waiting"]) == (True, "waiting")
    assert from_env["extra_regions"] == ["xx-a", "xx-b"]
    monkeypatch.setenv("MPS_EMULATOR_AUTO_CREATE_BUCKETS", "yes")
    monkeypatch.setenv("MPS_EMULATOR_TASK_RETENTION_SECONDS", "3600")
    from_env = fidelity_options(_parse([]))
    assert (from_env["auto_create_buckets"], from_env["task_retention_seconds"]) == (True, 3600.0)
    with pytest.raises(SystemExit):
        _parse(["--listing-waiting", "visible"])
    for bad in ("0", "-5", "a week"):
        with pytest.raises(SystemExit):
            _parse(["--task-retention-seconds", bad])


def _describe_rate_arg(proc: EmulatorProcess, ready: Path) -> str:
    argv = proc._argv(ready)
    return argv[argv.index("--describe-rate") + 1]


def test_emulator_process_hands_the_fields_to_the_subprocess(tmp_path: Path) -> None:
    proc = EmulatorProcess(
        tmp_path,
        echo_listing_input=True,
        listing_waiting="processing",
        extra_regions=["xx-test"],
        describe_rate=9,
        auto_create_buckets=True,
        task_retention_seconds=30,
    )
    env = proc._env()
    assert env["MPS_EMULATOR_ECHO_LISTING_INPUT"] == "1"
    assert env["MPS_EMULATOR_LISTING_WAITING"] == "processing"
    assert env["MPS_EMULATOR_EXTRA_REGIONS"] == "xx-test"
    assert (env["MPS_EMULATOR_AUTO_CREATE_BUCKETS"], env["MPS_EMULATOR_TASK_RETENTION_SECONDS"]) == (
        "1",
        "30",
    )
    assert _describe_rate_arg(proc, tmp_path / "ready.json") == "9"
    lenient = EmulatorProcess(tmp_path, lenient=True)
    assert _describe_rate_arg(lenient, tmp_path / "ready.json") == "100"
    assert lenient._env()["MPS_EMULATOR_LISTING_WAITING"] == "waiting"
    assert lenient._env()["MPS_EMULATOR_TASK_RETENTION_SECONDS"] == "forever"
    strict = EmulatorProcess(tmp_path)._env()
    assert (strict["MPS_EMULATOR_AUTO_CREATE_BUCKETS"], strict["MPS_EMULATOR_TASK_RETENTION_SECONDS"]) == (
        "0",
        "604800",
    )
