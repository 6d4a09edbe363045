"""The tests' own layout: helpers live in one place, and tests do not lean on each other.

A test module imports its helpers from ``tests/utils`` (or a helper module beside it, such
as ``tests/fuzz/runner.py``), never another test module (``test_*.py``) or a
``conftest.py``: pytest gives the fixtures of a conftest to the tests below it without an
import. The helpers every test
file once wrote for itself (the sandbox server, loading a fixture file, reading rows back,
posting to a webhook, running the job queue) are defined once, in ``tests/conftest.py`` or
``tests/utils``, and no test module defines one of those names again. Nor does a test set
a module's private state (``module._name = ...``): the kernel offers a public way
(``heliograph.db.use_db``, ``ratelimit.reset``, ``settings.sections_declared_meanwhile``).
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
UTILS = TESTS / "utils"
ROOT_CONFTEST = TESTS / "conftest.py"

# Names of the helpers that are defined once (in tests/conftest.py or tests/utils) and
# never again in a test module or another conftest, with or without a leading underscore.
HELPERS = frozenset(
    {
        "sandbox",
        "sandbox_url",
        "sandbox_service",
        "load",
        "rows",
        "count",
        "post",
        "post_twice",
        "drain",
        "run_jobs",
    }
)

# Test modules that still set another module's private state; may only shrink.
PRIVATE_STATE_PENDING = frozenset(set())


def python_files() -> Iterator[Path]:
    for path in sorted(TESTS.rglob("*.py")):
        if "__pycache__" not in path.parts:
            yield path


def name_of(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def tree_of(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def imported_modules(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """Every module an import names (``from a import b`` names ``a`` and ``a.b``)."""
    for node in ast.walk(tree):  # top level and inside functions alike
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            yield node.lineno, module
            for alias in node.names:
                yield node.lineno, f"{module}.{alias.name}"


def is_test_module(module: str) -> bool:
    last = module.rsplit(".", 1)[-1]
    return module.startswith(".") or last.startswith("test_") or last == "conftest"


def top_level_names(tree: ast.Module) -> Iterator[tuple[int, str]]:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield node.lineno, node.name
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                for element in ast.walk(target):
                    if isinstance(element, ast.Name):
                        yield node.lineno, element.id
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            yield node.lineno, node.target.id


def private_assignments(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """``something._name = ...`` where ``something`` is not ``self`` or ``cls``."""
    for node in ast.walk(tree):
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AugAssign | ast.AnnAssign)
            else []
        )
        for target in targets:
            if (
                isinstance(target, ast.Attribute)
                and target.attr.startswith("_")
                and not target.attr.startswith("__")
                and not (isinstance(target.value, ast.Name) and target.value.id in ("self", "cls"))
            ):
                yield node.lineno, ast.unparse(target)


def private_setattrs(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """``setattr(x, "_name", ...)`` and ``monkeypatch.setattr(x, "_name", ...)``."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if called != "setattr" or len(node.args) < 2:
            continue
        attr = node.args[1]
        if (
            isinstance(attr, ast.Constant)
            and isinstance(attr.value, str)
            and attr.value.startswith("_")
            and not attr.value.startswith("__")
        ):
            yield node.lineno, f"setattr(..., {attr.value!r})"


def is_helper(name: str) -> bool:
    return name.lstrip("_") in HELPERS


def test_no_test_module_or_conftest_is_imported() -> None:
    wrong = [
        f"{name_of(path)}:{line}: imports {module}"
        for path in python_files()
        for line, module in imported_modules(tree_of(path))
        if is_test_module(module)
    ]
    assert wrong == [], "import helpers from tests/utils instead:\n" + "\n".join(wrong)


def test_the_shared_helpers_are_not_defined_again() -> None:
    wrong = [
        f"{name_of(path)}:{line}: defines {name}"
        for path in python_files()
        if path != ROOT_CONFTEST and UTILS not in path.parents
        for line, name in top_level_names(tree_of(path))
        if is_helper(name)
    ]
    assert wrong == [], "use the one in tests/conftest.py or tests/utils:\n" + "\n".join(wrong)


def test_each_shared_helper_is_defined_once() -> None:
    defined = Counter(
        name
        for path in [ROOT_CONFTEST, *UTILS.glob("*.py")]
        for _, name in top_level_names(tree_of(path))
        if is_helper(name)
    )
    assert {name: n for name, n in defined.items() if n > 1} == {}


def test_no_test_sets_another_modules_private_state() -> None:
    found = {
        name_of(path): [
            f"{line}: {target}"
            for line, target in [*private_assignments(tree), *private_setattrs(tree)]
        ]
        for path in python_files()
        for tree in [tree_of(path)]
    }
    wrong = {path: lines for path, lines in found.items() if lines}
    assert sorted(set(wrong) - PRIVATE_STATE_PENDING) == [], wrong
    assert sorted(PRIVATE_STATE_PENDING - set(wrong)) == [], "fixed: take it off the list"
