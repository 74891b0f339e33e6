"""The fake hooks and the real ones keep one contract: tests/hook_contract.py (issue 10 item 7).

(a) ``MpsHook`` / ``CosHook`` satisfy each Protocol exactly (parameter names, kinds, defaults);
(b) every fake hook in the unit tests declares the Protocol it stands for and satisfies it: it defines
each method itself, with the real method's flavour (sync, coroutine, async generator), takes every
required parameter under the same name, kind and position, keeps the real default of each optional
parameter it declares, and absorbs the optional ones it ignores with ``**kwargs``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

import pytest

from tests import hook_contract
from tests.hook_contract import REAL_HOOKS

#: The test modules whose fakes stand for a hook.
FAKE_MODULES = (
    "tests.unit.operators.test_operator_mps",
    "tests.unit.operators.test_operator_metrics",
    "tests.unit.operators.test_operator_batch_rendered",
    "tests.unit.batch.test_batch_adopt",
    "tests.unit.batch.test_batch_overlap",
    "tests.unit.batch.test_batch_resume",
    "tests.unit.batch.test_batch_state",
    "tests.unit.batch.test_batch_submit",
    "tests.unit.triggers.test_trigger_mps",
    "tests.unit.sensors.test_cos_sensor",
    "tests.unit.waits.test_cos_wait",
)
#: Every fake the modules above must declare (a fake that loses its Protocol base fails here).
EXPECTED_FAKES = {
    "test_operator_mps.FakeHook",
    "test_operator_mps.ListingHook",
    "test_operator_metrics.FakeHook",
    "test_operator_batch_rendered.NoCallsHook",
    "test_batch_adopt.StrictHook",
    "test_batch_adopt.Statuses",
    "test_batch_overlap.FakeSyncHook",
    "test_batch_overlap.CountingSubmitHook",
    "test_batch_overlap.HangingAsyncHook",
    "test_batch_resume.EmptyListings",
    "test_batch_state.FinishedHook",
    "test_batch_state.MemoryCos",
    "test_batch_submit.RecordingHook",
    "test_batch_submit.PacedHook",
    "test_trigger_mps.ScriptedHook",
    "test_trigger_mps.HangingHook",
    "test_trigger_mps.FleetHook",
    "test_cos_sensor.FakeCosHook",
    "test_cos_wait.ScriptedCosHook",
}

PROTOCOLS = [
    obj
    for obj in vars(hook_contract).values()
    if inspect.isclass(obj)
    and getattr(obj, "_is_protocol", False)
    and obj.__module__ == hook_contract.__name__
]


def _load(path: str) -> type:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def _members(protocol: type) -> list[str]:
    """The methods a Protocol declares, its bases' included: public ones, and a private hook method a
    consumer calls (``_describe_response``); never the dunders ``typing.Protocol`` adds."""
    names: list[str] = []
    for klass in reversed(protocol.__mro__):
        if getattr(klass, "_is_protocol", False) and klass.__module__ == hook_contract.__name__:
            names += [
                n
                for n, v in vars(klass).items()
                if inspect.isfunction(v) and not (n.startswith("__") and n.endswith("__")) and n not in names
            ]
    return names


def _flavour(func: Callable[..., Any]) -> str:
    if inspect.isasyncgenfunction(func):
        return "async generator"
    return "coroutine" if inspect.iscoroutinefunction(func) else "sync"


def _params(func: Callable[..., Any]) -> list[inspect.Parameter]:
    return list(inspect.signature(func).parameters.values())[1:]  # without self


def _shape(func: Callable[..., Any]) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in _params(func)]


def _defined_by(cls: type, name: str) -> type | None:
    return next((klass for klass in cls.__mro__ if name in vars(klass)), None)


def _fake_problems(fake: Callable[..., Any], declared: Callable[..., Any]) -> list[str]:
    """Why ``fake`` cannot stand for ``declared`` (empty when it can)."""
    problems: list[str] = []
    want = _params(declared)
    have = {p.name: p for p in _params(fake)}
    var_kw = any(p.kind is p.VAR_KEYWORD for p in have.values())
    positional = [p for p in _params(fake) if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    for index, p in enumerate(want):
        got = have.get(p.name)
        if p.default is p.empty:  # required: same name, kind and position
            if got is None or got.kind is not p.kind:
                problems.append(f"required {p.name!r} ({p.kind.description}) is not taken the same way")
            elif p.kind is not p.KEYWORD_ONLY and (
                index >= len(positional) or positional[index].name != p.name
            ):
                problems.append(f"required {p.name!r} is not at position {index}")
        elif got is not None:  # optional and declared: same default
            if got.default != p.default:
                problems.append(f"{p.name!r} defaults to {got.default!r}, the real hook to {p.default!r}")
        elif not var_kw:
            problems.append(f"optional {p.name!r} is neither declared nor absorbed by **kwargs")
    names = {p.name for p in want}
    for extra in have.values():
        if (
            extra.name not in names
            and extra.default is extra.empty
            and extra.kind in (extra.POSITIONAL_ONLY, extra.POSITIONAL_OR_KEYWORD, extra.KEYWORD_ONLY)
        ):
            problems.append(f"requires {extra.name!r}, which the real hook does not take")
    return problems


def _fakes() -> dict[str, type]:
    found: dict[str, type] = {}
    for module_name in FAKE_MODULES:
        module = importlib.import_module(module_name)
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and obj.__module__ == module.__name__
                and any(p in obj.__mro__ for p in PROTOCOLS)
            ):
                found[f"{module_name.rsplit('.', 1)[1]}.{name}"] = obj
    return found


def test_every_protocol_names_its_real_hooks() -> None:
    assert set(PROTOCOLS) == set(REAL_HOOKS)
    assert all(_members(protocol) for protocol in PROTOCOLS)


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.__name__)
def test_the_real_hooks_satisfy_each_protocol_exactly(protocol: type) -> None:
    for path in REAL_HOOKS[protocol]:
        real = _load(path)
        for name in _members(protocol):
            method = getattr(real, name, None)
            assert callable(method), (
                f"{path} has no {name}, which {protocol.__name__} says its consumer calls"
            )
            assert _shape(method) == _shape(getattr(protocol, name)), (
                f"{path}.{name}{inspect.signature(method)} no longer matches {protocol.__name__}.{name}"
                f"{inspect.signature(getattr(protocol, name))}: update tests/hook_contract.py and the fakes"
            )


def test_every_fake_declares_its_protocol() -> None:
    assert set(_fakes()) == EXPECTED_FAKES


@pytest.mark.parametrize("fake_name", sorted(EXPECTED_FAKES))
def test_every_fake_satisfies_its_protocols_like_the_real_hook(fake_name: str) -> None:
    fake = _fakes()[fake_name]
    protocols = [p for p in PROTOCOLS if p in fake.__mro__]
    for protocol in protocols:
        real = _load(REAL_HOOKS[protocol][0])
        for name in _members(protocol):
            owner = _defined_by(fake, name)
            assert owner is not None and owner not in PROTOCOLS, (
                f"{fake_name} stands for {protocol.__name__} but does not define {name}"
            )
            method, real_method = getattr(fake, name), getattr(real, name)
            assert _flavour(method) == _flavour(real_method), (
                f"{fake_name}.{name} is {_flavour(method)}, the real hook's is {_flavour(real_method)}"
            )
            problems = _fake_problems(method, getattr(protocol, name))
            assert not problems, f"{fake_name}.{name}{inspect.signature(method)}: " + "; ".join(problems)


def test_the_checker_catches_a_drifted_fake() -> None:
    """The rules above fail the drifts they exist for (a renamed, a missing and a re-defaulted argument)."""

    def real(self: object, bucket: str, prefix: str = "", region: str | None = None) -> None: ...

    def renamed(self: object, bucket_name: str, prefix: str = "", region: str | None = None) -> None: ...

    def no_region(self: object, bucket: str, prefix: str = "") -> None: ...

    def other_default(self: object, bucket: str, prefix: str = "raw/", **_: object) -> None: ...

    def absorbing(self: object, bucket: str, **_: object) -> None: ...

    assert _fake_problems(real, real) == []
    assert _fake_problems(absorbing, real) == []
    assert _fake_problems(renamed, real)
    assert _fake_problems(no_region, real)
    assert _fake_problems(other_default, real)


def test_a_private_hook_method_a_consumer_calls_is_part_of_the_contract() -> None:
    """``_describe_response`` (read by the batch's adoption) is checked like a public method; the
    dunders ``typing.Protocol`` puts on every Protocol are not methods of the contract."""
    from tests.hook_contract import AdoptsImageTasks

    assert _members(AdoptsImageTasks) == ["list_image_tasks", "_describe_response"]
