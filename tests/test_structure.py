"""The top floor stays lean (issue 27): module and function sizes, and no state kept in module-level variables, read
from the package's own source. A limit that a change must cross says so here, in one place."""

from __future__ import annotations

import ast
from pathlib import Path

import attrobust

PACKAGE = Path(attrobust.__file__).parent
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60
MAX_LINE = 120
MUTATORS = {"append", "extend", "clear", "add", "update", "pop", "popitem", "remove", "insert", "discard",
            "setdefault", "sort", "reverse"}
CONTAINER_CALLS = {"list", "dict", "set", "defaultdict", "deque", "OrderedDict", "Counter"}
# tables filled when a module is imported or a plug-in registers (as the component registries are), not by a command
REGISTRIES = {"attrobust/attributions/surrogate.py: SMOOTH_COUNTERPARTS"}


def modules() -> dict[str, ast.Module]:
    return {str(path.relative_to(PACKAGE.parent)): ast.parse(path.read_text(encoding="utf-8"))
            for path in sorted(PACKAGE.rglob("*.py"))}


def test_no_module_is_longer_than_the_limit():
    long = {name: len((PACKAGE.parent / name).read_text(encoding="utf-8").splitlines()) for name in modules()}
    assert {name: lines for name, lines in long.items() if lines > MAX_MODULE_LINES} == {}


def test_no_line_is_longer_than_the_project_s_limit():
    """pyproject's `line-length` (ruff is not run by the suite, so the limit is held here)."""
    long = [f"{path.relative_to(PACKAGE.parent)}:{number}" for folder in (PACKAGE, PACKAGE.parent / "tests",
                                                                          PACKAGE.parent / "scripts")
            for path in sorted(folder.rglob("*.py"))
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if len(line) > MAX_LINE]
    assert long == []


def test_no_function_is_longer_than_the_limit():
    long = {f"{name}:{node.lineno} {node.name}": node.end_lineno - node.lineno + 1
            for name, tree in modules().items() for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    assert {where: lines for where, lines in long.items() if lines > MAX_FUNCTION_LINES} == {}


def mutable_globals(tree: ast.Module) -> set[str]:
    """Module-level names bound to a container (a list, dict or set display, comprehension or constructor)."""
    names = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) \
            else []
        value = getattr(node, "value", None)
        container = isinstance(value, (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)) or (
            isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id in CONTAINER_CALLS)
        if container:
            names |= {target.id for target in targets if isinstance(target, ast.Name)}
    return names


def mutated(tree: ast.Module, names: set[str]) -> set[str]:
    """Those of `names` that the module changes: a mutating method call, an item or slice assignment or deletion,
    an augmented assignment, or a `global` rebinding."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            found |= names & set(node.names)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in MUTATORS:
            if isinstance(node.func.value, ast.Name) and node.func.value.id in names:
                found.add(node.func.value.id)
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for target in targets:
                inner = target.value if isinstance(target, ast.Subscript) else target \
                    if isinstance(node, ast.AugAssign) else None
                if isinstance(inner, ast.Name) and inner.id in names:
                    found.add(inner.id)
    return found


def test_no_module_keeps_state_in_a_module_level_variable():
    """A command's state lives in objects handed to it (attrobust/command_state.py, rundir.Job), not in module-level
    containers that a second command in the same process would find filled."""
    kept = {f"{name}: {variable}" for name, tree in modules().items()
            for variable in mutated(tree, mutable_globals(tree))}
    assert kept - REGISTRIES == set()


def test_the_state_check_finds_what_it_looks_for():
    tree = ast.parse("FAILURES = []\nSEEN: dict = {}\nLIMITS = [1, 2]\nTOTAL = 0\n"
                     "def run():\n    FAILURES.append(1)\n    SEEN['a'] = 1\n    global TOTAL\n    TOTAL += 1\n")
    assert mutated(tree, mutable_globals(tree)) == {"FAILURES", "SEEN"}
