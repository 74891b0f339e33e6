"""FaultPlan: parsing, matching, budgets and seeded determinism (pure logic; the HTTP side is in
tests/integration/emulator/test_emulator_mps_faults.py)."""

from __future__ import annotations

import pytest

from airflow_mps.emulator.config import parse_duration_range
from airflow_mps.emulator.faults import FaultPlan, fault_from_dict, parse_fault_spec
from airflow_mps.emulator.mps.models import RateLimiter, resolve_output


def test_parse_spec() -> None:
    f = parse_fault_spec("throttle@ProcessImage,p=0.25,next=3")
    assert (f.kind, f.action, f.probability, f.count) == ("throttle", "ProcessImage", 0.25, 3)
    f = parse_fault_spec("task_fail,next=2,code=70001,errmsg=FailedOperation")
    assert (f.kind, f.action, f.err_code, f.err_msg) == ("task_fail", "task", 70001, "FailedOperation")
    assert parse_fault_spec("latency,ms=150").action == "*"
    with pytest.raises(ValueError, match="unknown fault kind"):
        parse_fault_spec("explode@ProcessImage")
    with pytest.raises(ValueError, match="bad fault option"):
        parse_fault_spec("throttle,bogus=1")
    with pytest.raises(ValueError, match="probability"):
        fault_from_dict({"kind": "throttle", "probability": 2})


def test_next_n_budget_and_action_patterns() -> None:
    plan = FaultPlan()
    plan.throttle("Describe*", count=2)
    plan.reset_after("cos:*", count=1)
    assert plan.for_request("ProcessImage").terminal is None
    assert plan.for_request("DescribeImageTasks").terminal == "throttle"
    assert plan.for_request("DescribeImageTaskDetail").terminal == "throttle"
    assert plan.for_request("DescribeImageTaskDetail").terminal is None
    assert plan.for_request("cos:GetObject").reset_after
    assert not plan.for_request("cos:GetObject").reset_after
    assert plan.list() == []


def test_probability_is_seeded_and_deterministic() -> None:
    def run() -> list[bool]:
        plan = FaultPlan(seed=7)
        plan.internal_error("ProcessImage", probability=0.3)
        return [plan.for_request("ProcessImage").terminal == "internal_error" for _ in range(200)]

    first, second = run(), run()
    assert first == second
    assert 30 <= sum(first) <= 90


def test_latency_accumulates_and_task_faults_are_separate() -> None:
    plan = FaultPlan()
    plan.latency(100)
    plan.latency(50, "ProcessImage")
    plan.fail_tasks(count=1)
    assert plan.for_request("ProcessImage").latency == pytest.approx(0.15)
    assert plan.for_request("cos:PutObject").latency == pytest.approx(0.1)
    assert plan.for_task() is not None
    assert plan.for_task() is None


def test_rate_limiter_counts_accepted_in_a_sliding_second() -> None:
    limiter = RateLimiter(lambda action: 20)
    results = [limiter.check("AKID", "ProcessImage", now=100.0 + i * 0.001) for i in range(60)]
    assert sum(ok for ok, _, _ in results) == 20
    assert results[-1] == (False, 60, 20)
    # Another SecretId has its own window; a second later the quota is back.
    assert limiter.check("AKID2", "ProcessImage", now=100.5)[0]
    assert limiter.check("AKID", "ProcessImage", now=101.5)[0]


def test_duration_range() -> None:
    assert parse_duration_range("250") == (0.25, 0.25)
    assert parse_duration_range("100:400") == (0.1, 0.4)
    with pytest.raises(ValueError):
        parse_duration_range("5:1")


def test_output_location_rules() -> None:
    cos_in = {
        "InputInfo": {
            "Type": "COS",
            "CosInputInfo": {
                "Bucket": "in-1250000000",
                "Region": "ap-guangzhou",
                "Object": "/raw/dt=1/cat.png",
            },
        }
    }
    assert resolve_output(cos_in, "jpeg") == ("in-1250000000", "ap-guangzhou", "raw/dt=1/cat.jpg")
    assert resolve_output(cos_in | {"OutputDir": "/enhanced/"}, "png")[2] == "enhanced/cat.png"
    assert (
        resolve_output(cos_in | {"OutputDir": "/e/", "OutputPath": "x/{inputName}.webp"}, "webp")[2]
        == "e/x/cat.webp"
    )
    assert resolve_output(cos_in | {"OutputPath": "/abs/out.jpeg"}, "jpeg")[2] == "abs/out.jpeg"
    out = cos_in | {
        "OutputStorage": {"Type": "COS", "CosOutputStorage": {"Bucket": "out-1250000000", "Region": ""}}
    }
    assert resolve_output(out, "png")[:2] == ("out-1250000000", "ap-guangzhou")
