"""Reads have owners: a package's tables are queried only by that package's own functions.

A table belongs to the package whose ``models.py`` (or ``*_models.py``) defines it. This
test parses every module of the service with ``ast`` and lists each place where a module
uses another package's model class (``select(Customer)``, ``Conversation.status == ...``,
``session.get(TeamMember, id)``, ``Message.__table__``, ``Customer(...)``) or names another
package's table in raw SQL (``text("... FROM conversation")``, ``table("conversation")``).

What does not count: importing a model class for a type annotation or an ``isinstance``
check, and reading the attributes of a row an owner's function returned.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (
    "heliograph",
    "crm_core",
    "routing",
    "inbox",
    "handoff",
    "transcription",
    "surfaces",
    "channels",
    "reporting",
    "sandbox",
    "service",
    "web",
)
SKIPPED = ("heliograph/migrations/",)  # a migration states the schema of every package

# What cannot move now, by module: the foreign tables it may use ("*": any), and why.
ALLOWED: dict[str, set[str]] = {
    # GDPR erasure hooks: they erase every copy of a customer's data in the one
    # transaction of the erasure (crm_core.gdpr), so they reach the tables the copies sit in.
    "crm_core/gdpr.py": {"Job", "IdempotencyRecord", "AuditEvent"},
    "inbox/gdpr.py": {"TranslationCache"},
    "handoff/gdpr.py": {"Conversation"},
    # The demo seeds a whole world (customers, team, conversations) in one transaction.
    "service/demo.py": {"*"},
}
# Known offences still to move (issue #15), by the package's owner: a new offence fails the
# test, and so does an entry here that no longer offends (delete it: the list only shrinks).
PENDING: dict[str, set[str]] = {}


@dataclass(frozen=True, order=True)
class Offence:
    module: str
    line: int
    name: str
    owner: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line}: {self.name} (owned by {self.owner})"


def _is_table_class(node: ast.ClassDef) -> bool:
    return any(
        k.arg == "table" and isinstance(k.value, ast.Constant) and k.value.value is True
        for k in node.keywords
    )


def _tablename(node: ast.ClassDef) -> str | None:
    for stmt in node.body:
        if (
            isinstance(stmt, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__tablename__" for t in stmt.targets)
            and isinstance(stmt.value, ast.Constant)
        ):
            return str(stmt.value.value)
    return None


def table_owners() -> tuple[dict[str, str], dict[str, str]]:
    """(model class name -> owner package, table name -> owner package)."""
    classes: dict[str, str] = {}
    tables: dict[str, str] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*models.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef) and _is_table_class(node):
                    assert node.name not in classes, f"two tables are called {node.name}"
                    classes[node.name] = package
                    tables[_tablename(node) or node.name.lower()] = package
    return classes, tables


def _annotation_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes that sit in a type: an annotation, a subscript's slice
    (``Annotated[TeamMember, ...]``, ``Callable[[TeamMember], ...]``) or an isinstance check."""
    roots: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript):
            roots.append(node.slice)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args
            every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
            roots += [a.annotation for a in every if a is not None and a.annotation]
            if node.returns:
                roots.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            roots.append(node.annotation)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in {"isinstance", "issubclass", "cast", "TypeVar"}
        ):
            roots += node.args[1:] if node.func.id != "cast" else node.args[:1]
    return {id(n) for root in roots for n in ast.walk(root)}


_SQL = re.compile(r"\b(?:from|join|into|update|table)\s+\"?([a-z_][a-z0-9_]*)", re.IGNORECASE)


def offences_in(
    source: str, module: str, classes: dict[str, str], tables: dict[str, str]
) -> list[Offence]:
    """The offences in ``source``, the text of ``module`` (its path from the root)."""
    here = module.split("/")[0]
    tree = ast.parse(source)
    names: dict[str, str] = {}  # local name -> the model class it is
    modules: set[str] = set()  # local names bound to another package's models module
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                if alias.name in classes:
                    names[alias.asname or alias.name] = alias.name
                elif alias.name.endswith("models") and node.module.split(".")[0] != here:
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.endswith("models") and alias.name.split(".")[0] != here:
                    modules.add(alias.asname or alias.name)
    skip = _annotation_nodes(tree)
    found: list[Offence] = []

    def report(node: ast.AST, name: str, owner: str) -> None:
        if owner != here and not ALLOWED.get(module, set()) & {"*", name}:
            found.append(Offence(module, getattr(node, "lineno", 0), name, owner))

    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in names:
            report(node, names[node.id], classes[names[node.id]])
        elif (
            isinstance(node, ast.Attribute)
            and node.attr in classes
            and isinstance(node.value, ast.Name | ast.Attribute)
            and ast.unparse(node.value) in modules
        ):
            report(node, node.attr, classes[node.attr])
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = ast.unparse(node.func).rsplit(".", 1)[-1]
            text = node.args[0].value
            if func in {"text", "exec_driver_sql"} and isinstance(text, str):
                for table in _SQL.findall(text):
                    if table.lower() in tables:
                        report(node, table.lower(), tables[table.lower()])
            elif func in {"table", "Table"} and text in tables:
                report(node, str(text), tables[str(text)])
    return found


def offences() -> list[Offence]:
    classes, tables = table_owners()
    found: set[Offence] = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            module = path.relative_to(ROOT).as_posix()
            if not module.startswith(SKIPPED):
                found.update(offences_in(path.read_text(), module, classes, tables))
    return sorted(found)


def test_the_checker_knows_every_table() -> None:
    classes, tables = table_owners()
    assert classes["Conversation"] == "inbox"
    assert classes["TeamMember"] == "routing"
    assert classes["TelegramLinkCode"] == "surfaces"
    assert tables["job"] == "heliograph"
    assert len(classes) == len(tables) >= 30


def test_the_checker_finds_a_foreign_query() -> None:
    classes, tables = table_owners()
    probe = (
        "from typing import Annotated\n"
        "from sqlalchemy import select, text\n"
        "from inbox.models import Conversation\n"
        "from routing import models as rm\n"
        "Dep = Annotated[rm.TeamMember, 'a type, not a query']\n"
        "def f(member: rm.TeamMember) -> Conversation:\n"
        "    isinstance(member, rm.TeamMember)\n"
        "    select(Conversation.id).where(rm.TeamMember.id == 1)\n"
        "    text('SELECT 1 FROM handoff')\n"
    )
    found = offences_in(probe, "reporting/probe.py", classes, tables)
    assert [(o.line, o.name) for o in sorted(found)] == [
        (8, "Conversation"),
        (8, "TeamMember"),
        (9, "handoff"),
    ]
    inbox_own = offences_in(probe, "inbox/probe.py", classes, tables)
    assert {o.name for o in inbox_own} == {"TeamMember", "handoff"}


def test_tables_are_queried_only_by_their_owners() -> None:
    found = offences()
    new = [o for o in found if o.name not in PENDING.get(o.module, set())]
    assert not new, "queries on another package's tables:\n" + "\n".join(map(str, new))
    fixed = {(m, n) for m, names in PENDING.items() for n in names} - {
        (o.module, o.name) for o in found
    }
    assert not fixed, f"moved to their owners: delete from PENDING {sorted(fixed)}"
