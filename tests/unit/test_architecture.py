"""The package map of docs/internals.md, enforced: rooms, what each may import, cycles, sizes, registration.

Everything here reads the source with :mod:`ast` — no module of the package under test is imported
(except ``airflow_mps`` itself, for ``get_provider_info()``, which is pure data), no subprocess, no socket.
That each module also *imports* alone in a fresh interpreter, and what the DAG-parse path loads, is
checked in ``tests/integration/test_import_isolation.py``.

The rule table is written once, here (:data:`RULES`), and ``test_the_doc_states_the_same_rules`` holds
it equal to the table in docs/internals.md, so the map contributors read is the map that is enforced.
A known violation that another branch is fixing is one ``xfail(strict=True)`` case naming ``file:line``:
when the fix lands, the case passes, ``strict`` fails it, and the marker goes.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE_DIR = REPO / "airflow_mps"
DOC = REPO / "docs" / "internals.md"

# ------------------------------------------------------------------------------------------------ rules
#: Room of each module, by the first matching prefix (longest first). A module in no room fails
#: ``test_every_module_is_in_a_room``: put it in the map (here and in docs/internals.md) first.
ROOM_PREFIXES: dict[str, str] = {
    "airflow_mps.steps": "steps",
    "airflow_mps.preload": "preload",
    "airflow_mps.errors": "errors",
    "airflow_mps.models": "models",
    "airflow_mps.ownership": "ownership",
    "airflow_mps.hooks": "hooks",
    "airflow_mps.utils": "utils",
    "airflow_mps.links": "links",
    "airflow_mps.waits": "waits",
    "airflow_mps.batch": "batch",
    "airflow_mps.triggers": "triggers",
    "airflow_mps.sensors": "sensors",
    "airflow_mps.operators": "operators",
    "airflow_mps.emulator": "emulator",
}
#: The root package (``airflow_mps/__init__.py``: version and ``get_provider_info``, pure data).
ROOT = "airflow_mps"


@dataclass(frozen=True)
class Rule:
    """What a room may import from the package besides itself and the root package.

    ``module_level``: at import time (module body, class bodies, ``try``/``if`` at the top).
    ``in_functions``: additionally, inside a function or under ``if TYPE_CHECKING:`` — the lazy
    imports that point "up" the map (a hook, a trigger) and are paid only when that code runs.
    """

    module_level: frozenset[str]
    in_functions: frozenset[str] = frozenset()


def _rule(module_level: str, in_functions: str = "") -> Rule:
    return Rule(frozenset(module_level.split()), frozenset(in_functions.split()))


#: The dependency direction (docs/internals.md, "Rooms"):
#: steps, preload, errors ← models ← ownership ← hooks ← utils, links, waits, batch ← triggers ← sensors, operators;
#: the emulator beside it all, on errors and models only. Nothing imports the emulator.
RULES: dict[str, Rule] = {
    "steps": _rule(""),
    "preload": _rule(""),
    "errors": _rule(""),
    "models": _rule("errors"),
    "ownership": _rule("errors models"),
    "hooks": _rule("steps preload errors models ownership"),
    "utils": _rule("preload errors models", "hooks"),
    "links": _rule("errors models utils"),
    "waits": _rule("steps errors models utils"),
    "batch": _rule("steps errors models ownership utils waits"),
    "triggers": _rule("steps preload errors models ownership utils waits batch", "hooks"),
    "sensors": _rule("steps errors models ownership utils links waits", "hooks triggers"),
    "operators": _rule("steps errors models ownership utils links waits batch", "hooks triggers"),
    "emulator": _rule("errors models"),
}

#: Single-module exceptions to the room table, each with its reason (also in docs/internals.md).
MODULE_EXCEPTIONS: dict[tuple[str, str], str] = {
    ("airflow_mps.waits.batch", "airflow_mps.batch.progress"): (
        "the batch wait core moves BatchWaitState, which lives with the batch engine's records"
    ),
}

#: Rooms that are plain Python: stdlib and the package only, at any level (imported by the emulator,
#: by DAG files and by unit tests without Airflow).
PURE_ROOMS = frozenset({"steps", "preload", "errors", "models", "ownership", "waits", "batch"})
#: Rooms that may import Airflow (everything else never does, not even lazily).
AIRFLOW_ROOMS = frozenset({"hooks", "utils", "links", "triggers", "sensors", "operators"})
#: Expensive to import (the MPS SDK's models alone are 3.6 MB; httpx; Pillow): at module level only in
#: the hooks and the emulator, which are loaded at run time, never while a DAG file is parsed.
HEAVY = frozenset({"tencentcloud", "qcloud_cos", "httpx", "PIL"})
HEAVY_ROOMS = frozenset({"hooks", "emulator"})

#: The Airflow base classes whose subclasses provider info must list, by kind.
TASK_BASES = {
    "BaseSensorOperator": "sensors",
    "BaseOperator": "operators",
    "BaseHook": "hooks",
    "BaseTrigger": "triggers",
}

MAX_LINES = 600

#: Known violations being fixed on other branches: (rule, module) → "file:line — reason". Each becomes
#: one ``xfail(strict=True)`` case; remove the entry when the fix lands (the case then fails as XPASS).
KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {}


# ------------------------------------------------------------------------------------------------ source model
@dataclass(frozen=True)
class Import:
    """One imported module: ``target`` is the dotted module bound (a submodule for ``from pkg import sub``)."""

    target: str
    line: int
    where: str  # "module" (runs at import), "function" (inside a def) or "typing" (TYPE_CHECKING only)

    @property
    def top(self) -> str:
        return self.target.split(".")[0]


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    lines: int
    imports: list[Import] = field(default_factory=list)

    @property
    def rel(self) -> str:
        return self.path.relative_to(REPO).as_posix()

    @property
    def is_package(self) -> bool:
        return self.path.name == "__init__.py"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk_imports(nodes: list[ast.stmt], where: str) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every import statement under ``nodes`` with where it runs."""
    for node in nodes:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, where
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inner = "typing" if where == "typing" else "function"
            yield from _walk_imports(node.body, inner)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _walk_imports(node.body, "typing")
            yield from _walk_imports(node.orelse, where)
        else:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    yield from _walk_imports([child], where)
                elif isinstance(child, (ast.ExceptHandler, ast.match_case)):
                    yield from _walk_imports(child.body, where)


def _load() -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        name = _module_name(path)
        modules[name] = Module(name, path, ast.parse(text, str(path)), len(text.splitlines()))
    for module in modules.values():
        for node, where in _walk_imports(module.tree.body, "module"):
            for target in _targets(node, module, modules):
                module.imports.append(Import(target, node.lineno, where))
    return modules


def _targets(node: ast.Import | ast.ImportFrom, module: Module, modules: dict[str, Module]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base_parts = module.name.split(".")
        if not module.is_package:
            base_parts.pop()
        base_parts = base_parts[: len(base_parts) - (node.level - 1)]
        base = ".".join([*base_parts, node.module] if node.module else base_parts)
    else:
        base = node.module or ""
    # ``from pkg import sub`` binds the submodule; ``from mod import name`` needs ``mod``.
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]


MODULES = _load()


def room_of(name: str) -> str | None:
    if name == ROOT:
        return "root"
    for prefix in sorted(ROOM_PREFIXES, key=len, reverse=True):
        if name == prefix or name.startswith(prefix + "."):
            return ROOM_PREFIXES[prefix]
    return None


def _case(rule: str, name: str) -> object:
    """``name`` as a parameter, ``xfail(strict=True)`` when it is a known violation of ``rule``."""
    reason = KNOWN_VIOLATIONS.get((rule, name))
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(name, id=name, marks=marks)


def _cases(rule: str, names: list[str] | None = None) -> list[object]:
    return [_case(rule, name) for name in (sorted(MODULES) if names is None else names)]


# ------------------------------------------------------------------------------------------------ the map
def test_every_module_is_in_a_room() -> None:
    assert not [name for name in MODULES if room_of(name) is None]
    assert set(RULES) == set(ROOM_PREFIXES.values())


def _doc_section(title: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"docs/internals.md has no '## {title}' section"
    return match.group(1)


def _doc_rules() -> dict[str, Rule]:
    """The rooms table of docs/internals.md: | `room` | modules | role | module level | in functions |."""
    rules: dict[str, Rule] = {}
    for row in _doc_section("Rooms and what they may import").splitlines():
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"`\w+`", cells[0]):
            names = [set(re.findall(r"`(\w+)`", cell)) for cell in cells[3:]]
            rules[cells[0].strip("`")] = Rule(frozenset(names[0]), frozenset(names[1]))
    return rules


def test_the_doc_states_the_same_rules() -> None:
    """docs/internals.md's table and :data:`RULES` say the same: change both or neither."""
    assert _doc_rules() == RULES
    exceptions = _doc_section("Rooms and what they may import")
    for importer, imported in MODULE_EXCEPTIONS:
        assert f"`{importer}` → `{imported}`" in exceptions, (importer, imported)


def import_problems(module: Module) -> list[str]:
    """What in ``module``'s imports breaks the map: package imports pointing where its room may not look
    (at module level, or even lazily), and third-party imports the room may not make."""
    room = room_of(module.name)
    problems = []
    for imp in module.imports:
        if imp.top == "airflow_mps":
            target_room = room_of(imp.target)
            if room == "root":
                problems.append(f"{imp.line}: the root package imports {imp.target} (it is pure data)")
                continue
            if target_room in (room, "root") or (module.name, imp.target) in MODULE_EXCEPTIONS:
                continue
            rule = RULES[str(room)]
            allowed = rule.module_level if imp.where == "module" else rule.module_level | rule.in_functions
            if target_room not in allowed:
                where = "at module level" if imp.where == "module" else "even lazily"
                problems.append(f"{imp.line}: {room} may not import {target_room} {where} ({imp.target})")
        elif imp.top in sys.stdlib_module_names:
            continue
        elif room in PURE_ROOMS or room == "root":
            problems.append(f"{imp.line}: {room} is stdlib-only, imports {imp.target}")
        elif imp.top == "airflow" and room not in AIRFLOW_ROOMS:
            problems.append(f"{imp.line}: {room} never imports Airflow ({imp.target})")
        elif imp.top in HEAVY and imp.where == "module" and room not in HEAVY_ROOMS:
            problems.append(f"{imp.line}: {imp.target} at module level (import it where it is used)")
    return problems


def _synthetic(name: str, source: str) -> Module:
    """A module that is not on disk, parsed like the real ones (to test the checkers themselves)."""
    tree = ast.parse(source)
    module = Module(name, PACKAGE_DIR / "synthetic.py", tree, len(source.splitlines()))
    for node, where in _walk_imports(tree.body, "module"):
        module.imports.extend(Import(t, node.lineno, where) for t in _targets(node, module, MODULES))
    return module


def test_import_checker_flags_what_the_map_forbids() -> None:
    """Guard against a checker that passes everything."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "import httpx\n"  # 2: heavy at module level
        "from airflow_mps.operators.mps import MpsProcessImageOperator\n"  # 3: sensors → operators
        "from airflow_mps.hooks.mps import MpsHook\n"  # 4: a hook at module level
        "if TYPE_CHECKING:\n"
        "    from airflow_mps.hooks.cos import CosHook\n"  # fine: typing only
        "def poke():\n"
        "    from airflow_mps.triggers.mps import MpsImageTaskTrigger\n"  # fine: lazily
        "    from airflow_mps.emulator import imaging\n"  # 9: the emulator, even lazily
    )
    problems = import_problems(_synthetic("airflow_mps.sensors.synthetic", source))
    assert [p.split(":")[0] for p in problems] == ["2", "3", "4", "9"], problems
    pure = import_problems(_synthetic("airflow_mps.models.synthetic", "import airflow\nimport json\n"))
    assert [p.split(":")[0] for p in pure] == ["1"], pure
    emulator = "def f():\n    from airflow.sdk import DAG\n    from airflow_mps.hooks import mps\n"
    assert len(import_problems(_synthetic("airflow_mps.emulator.synthetic", emulator))) == 2


@pytest.mark.parametrize("name", _cases("imports"))
def test_imports_follow_the_map(name: str) -> None:
    """Each import of the package points where the room may look (at module level, or lazily), and
    third-party imports respect the room: pure rooms use the stdlib only, Airflow only where a task
    class needs it, heavy libraries at module level only in run-time rooms."""
    problems = import_problems(MODULES[name])
    assert not problems, f"{MODULES[name].rel}: " + "; ".join(problems)


def test_sensors_never_import_operators() -> None:
    """Not even lazily: what both need lives in utils/, waits/ or links/ (issue 10 item 4)."""
    found = [
        f"{MODULES[name].rel}:{imp.line} imports {imp.target}"
        for name in MODULES
        if room_of(name) == "sensors"
        for imp in MODULES[name].imports
        if room_of(imp.target) == "operators"
    ]
    assert not found


def test_operators_never_import_triggers_at_module_level() -> None:
    """The trigger class is imported inside the method that defers (parse time; design §8)."""
    found = [
        f"{MODULES[name].rel}:{imp.line} imports {imp.target}"
        for name in MODULES
        if room_of(name) == "operators"
        for imp in MODULES[name].imports
        if imp.where == "module" and room_of(imp.target) == "triggers"
    ]
    assert not found


def test_nothing_imports_the_emulator() -> None:
    """The emulator is a tool beside the provider: the provider never depends on it."""
    found = [
        f"{MODULES[name].rel}:{imp.line} imports {imp.target}"
        for name in MODULES
        if room_of(name) != "emulator"
        for imp in MODULES[name].imports
        if room_of(imp.target) == "emulator"
    ]
    assert not found


# ------------------------------------------------------------------------------------------------ cycles
def _module_graph() -> dict[str, set[str]]:
    """Import-time edges between modules of the package (imports inside functions and TYPE_CHECKING
    blocks excluded; ``from pkg import sub`` is an edge to ``pkg.sub``)."""
    return {
        name: {imp.target for imp in module.imports if imp.where == "module" and imp.target in MODULES}
        for name, module in MODULES.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module, or a module importing itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"a"}}) == [["a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    """No cycle among import-time imports (a bottom-of-module import is not a way out)."""
    graph = _module_graph()
    assert "airflow_mps.operators.batch" in graph["airflow_mps.operators.mps"]  # the graph is real
    assert "airflow_mps.emulator.web.pages" in graph["airflow_mps.emulator.web.ui"]  # from pkg import sub
    assert not _cycles(graph)


def test_no_import_cycles_through_deferred_imports() -> None:
    """Nor through imports inside functions: deferring an import that closes a cycle only moves the
    cycle to run time (``_pacing`` once created ``_adaptive`` buckets this way; ``_buckets`` now holds
    the registry that needs both)."""
    graph = {
        name: {imp.target for imp in module.imports if imp.where != "typing" and imp.target in MODULES}
        for name, module in MODULES.items()
    }
    assert not _cycles(graph)


# ------------------------------------------------------------------------------------------------ module shape
def test_no_module_level_getattr() -> None:
    """Every name has a plain import path (issue 10 item 4): no lazy module attributes."""
    found = []
    for module in MODULES.values():
        for node in module.tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "__getattr__":
                found.append(f"{module.rel}:{node.lineno}")
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, ast.Name) and t.id == "__getattr__" for t in targets):
                    found.append(f"{module.rel}:{node.lineno}")
    assert not found


def _allowed_long_modules() -> dict[str, str]:
    """docs/internals.md's "Modules over 600 lines" table: | `airflow_mps/…py` | lines | why |."""
    allowed = {}
    for row in _doc_section("Modules over 600 lines").splitlines():
        match = re.match(r"\|\s*`(airflow_mps/[\w/]+\.py)`\s*\|[^|]*\|\s*(.+?)\s*\|\s*$", row)
        if match:
            allowed[match.group(1)] = match.group(2)
    return allowed


@pytest.mark.parametrize("name", _cases("size"))
def test_module_size(name: str) -> None:
    module = MODULES[name]
    assert module.lines <= MAX_LINES or _allowed_long_modules().get(module.rel), (
        f"{module.rel} has {module.lines} lines: split it by role, or list it with the reason in "
        "docs/internals.md 'Modules over 600 lines'"
    )


def test_long_module_list_is_current() -> None:
    """Every module the doc allows over the limit exists, is over it, and has a reason."""
    by_path = {module.rel: module for module in MODULES.values()}
    for rel, why in _allowed_long_modules().items():
        assert rel in by_path, f"docs/internals.md lists {rel}, which does not exist"
        assert by_path[rel].lines > MAX_LINES, f"{rel} is back under {MAX_LINES} lines: drop it from the list"
        assert why.strip(" -—"), rel


# ------------------------------------------------------------------------------------------------ registration
def _class_kinds() -> dict[str, dict[str, str]]:
    """``{module: {public class: kind}}`` for every class whose ancestry (resolved through the package's
    own classes and imports) reaches one of :data:`TASK_BASES`."""
    classes: dict[str, tuple[str, list[str]]] = {}  # qualified name → (module, qualified bases)
    for module in MODULES.values():
        imported: dict[str, str] = {}
        for node in ast.walk(module.tree):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    imported[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        local = {n.name for n in module.tree.body if isinstance(n, ast.ClassDef)}
        for node in module.tree.body:
            if not isinstance(node, ast.ClassDef):
                continue
            bases = []
            for base in node.bases:
                text = ast.unparse(base)
                head = text.split(".")[0]
                if head in local:
                    bases.append(f"{module.name}.{text}")
                else:
                    bases.append(imported.get(head, head) + text[len(head) :])
            classes[f"{module.name}.{node.name}"] = (module.name, bases)

    def kind(qualified: str, seen: frozenset[str] = frozenset()) -> str | None:
        if qualified in seen:
            return None
        short = qualified.rsplit(".", 1)[-1]
        if qualified.startswith("airflow.") and short in TASK_BASES:
            return TASK_BASES[short]
        if qualified not in classes:
            return None
        kinds = [kind(base, seen | {qualified}) for base in classes[qualified][1]]
        found = [k for k in kinds if k]
        # A sensor is also an operator: the most specific base wins.
        return min(found, key=list(TASK_BASES.values()).index) if found else None

    result: dict[str, dict[str, str]] = {}
    for qualified, (module_name, _bases) in classes.items():
        short = qualified.rsplit(".", 1)[-1]
        k = kind(qualified)
        if k and not short.startswith("_"):
            result.setdefault(module_name, {})[short] = k
    return result


CLASS_KINDS = _class_kinds()


def test_class_finder_sees_every_task_class() -> None:
    """Guard against a finder that finds nothing (and so passes everything)."""
    found = {(m, c): k for m, classes in CLASS_KINDS.items() for c, k in classes.items()}
    assert found[("airflow_mps.operators.mps", "MpsProcessImageOperator")] == "operators"
    assert found[("airflow_mps.sensors.cos", "CosKeySensor")] == "sensors"
    assert found[("airflow_mps.hooks.cos", "CosHook")] == "hooks"
    assert found[("airflow_mps.triggers.batch", "MpsImageBatchTrigger")] == "triggers"


def _covered_by_test_provider_info(module: str, kind: str) -> bool:
    """tests/unit/test_provider_info.py already checks hook, sensor and trigger modules inside their own
    package (``airflow_mps/<kind>/``); this file adds operators and such classes defined anywhere else."""
    return kind in ("hooks", "sensors", "triggers") and module.startswith(f"airflow_mps.{kind}.")


@pytest.mark.parametrize(
    "name",
    _cases(
        "registered",
        sorted(
            m
            for m, classes in CLASS_KINDS.items()
            if not all(_covered_by_test_provider_info(m, k) for k in classes.values())
        ),
    ),
)
def test_task_class_modules_are_in_provider_info(name: str) -> None:
    """Every module defining a public operator (or a hook/sensor/trigger outside its package) is listed
    under its kind in ``get_provider_info()`` (design §8: one import path per class, listed)."""
    from airflow_mps import get_provider_info

    info = get_provider_info()
    for cls, kind in CLASS_KINDS[name].items():
        listed = [m for entry in info.get(kind, []) for m in entry["python-modules"]]
        assert name in listed, f"{name} defines {cls} ({kind}) but provider info does not list it"


def _positional_parameters(module: Module, cls: str) -> list[str]:
    """Parameters of ``cls.__init__`` (as written in ``module``) that can be passed by position."""
    for node in module.tree.body:
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    names = [a.arg for a in [*item.args.posonlyargs, *item.args.args][1:]]
                    return names + ([f"*{item.args.vararg.arg}"] if item.args.vararg else [])
    return []


@pytest.mark.parametrize(
    "name",
    _cases(
        "keyword-only",
        sorted(
            m
            for m, classes in CLASS_KINDS.items()
            if set(classes.values()) & {"operators", "sensors", "triggers"}
        ),
    ),
)
def test_task_classes_take_keyword_only_arguments(name: str) -> None:
    """Operators, sensors and triggers take keyword-only arguments (design §8): a reordered signature
    never silently changes what a DAG or a serialised trigger means. Hooks keep Airflow's positional
    ``(conn_id, region)`` convention."""
    positional = {
        cls: params
        for cls, kind in CLASS_KINDS[name].items()
        if kind != "hooks" and (params := _positional_parameters(MODULES[name], cls))
    }
    assert not positional, f"{MODULES[name].rel}: {positional}"


# ------------------------------------------------------------------------------------------------ constants
_STATES = {"WAITING", "PROCESSING", "FINISH"}
_API_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_RETENTION_SECONDS = 7 * 24 * 3600
CONSTANTS_HOME = "airflow_mps.models.constants"


def _int_value(node: ast.expr) -> int | None:
    """The value of an integer literal or a product of them (``7 * 24 * 3600``)."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        left, right = _int_value(node.left), _int_value(node.right)
        return None if left is None or right is None else left * right
    return None


def _constant_copies(module: Module) -> list[str]:
    exports = {
        id(node.value)
        for node in module.tree.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
    }
    found = []
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Constant) and node.value == _API_TIME_FORMAT:
            found.append(f"{node.lineno}: the API time format")
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set)) and id(node) not in exports:
            strings = {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
            if strings >= _STATES:
                found.append(f"{node.lineno}: the task states")
        elif (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and any(
                isinstance(t, ast.Name) and t.id in _STATES and t.id == node.value.value for t in node.targets
            )
        ):
            found.append(f"{node.lineno}: the task states")
        elif isinstance(node, (ast.BinOp, ast.Constant)) and _int_value(node) == _RETENTION_SECONDS:
            found.append(f"{node.lineno}: the 7-day retention")
    return found


@pytest.mark.parametrize("name", _cases("constants", sorted(set(MODULES) - {CONSTANTS_HOME})))
def test_domain_constants_are_defined_once(name: str) -> None:
    """Task states, the 7-day retention and the API time format live in ``models.constants`` (issue 10
    item 2, design §8); everyone else imports them."""
    copies = _constant_copies(MODULES[name])
    assert not copies, f"{MODULES[name].rel}: " + "; ".join(copies)


def test_constants_finder_sees_the_originals() -> None:
    """Guard against a finder that finds nothing: it sees each original where it is defined."""
    found = {copy.split(": ", 1)[1] for copy in _constant_copies(MODULES[CONSTANTS_HOME])}
    assert found == {"the task states", "the 7-day retention", "the API time format"}


# ------------------------------------------------------------------------------------------------ types
_IGNORE = re.compile(r"#\s*type:\s*ignore(?P<codes>\[[^\]]*\])?(?P<rest>.*)$")


def _bare_ignores(text: str) -> list[str]:
    """``type: ignore`` comments without an error code or without a reason after them."""
    bare = []
    for number, line in enumerate(text.splitlines(), 1):
        match = _IGNORE.search(line)
        if match and (not match["codes"] or not re.match(r"\s+#\s*\S", match["rest"])):
            bare.append(f"{number}: {line.strip()}")
    return bare


def test_the_ignore_finder_tells_a_reason_from_none() -> None:
    assert _bare_ignores("x = f()  # type: ignore[attr-defined]  # the operator defines it") == []
    assert _bare_ignores("x = f()  # type: ignore[attr-defined]") == [
        "1: x = f()  # type: ignore[attr-defined]"
    ]
    assert _bare_ignores("x = f()  # type: ignore  # why") == ["1: x = f()  # type: ignore  # why"]


@pytest.mark.parametrize("name", _cases("types"))
def test_every_type_ignore_names_its_code_and_reason(name: str) -> None:
    """mypy runs at 0 errors (issue 10 item 6); an escape from it says which error and why, on the line."""
    bare = _bare_ignores(MODULES[name].path.read_text())
    assert not bare, f"{MODULES[name].rel}: " + "; ".join(bare)


# ------------------------------------------------------------------------------------------------ the doc
def _unmapped(doc: str) -> list[str]:
    """Modules of the package that docs/internals.md never names as a file (``keys.py``,
    ``mps/models.py``, …); a package's ``__init__`` is named by its room."""
    missing = []
    for module in MODULES.values():
        rel = module.path.relative_to(PACKAGE_DIR).as_posix()
        if rel.endswith("__init__.py"):
            continue
        parts = rel.split("/")
        tails = {"/".join(parts[i:]) for i in range(len(parts))}
        if not any(re.search(r"[`(/ ]" + re.escape(tail) + r"\b", doc) for tail in tails):
            missing.append(rel)
    return sorted(missing)


def test_the_map_names_every_module() -> None:
    """docs/internals.md is the map of the code (issue 10 item 8): a new module gets a line there."""
    assert _unmapped(DOC.read_text()) == []
    assert _unmapped("") != []  # the finder sees modules at all
