"""The layers stay layered: no import cycle, the framework and the engine know no workflow and no
channel, nothing of a workflow lives at the top of ``bot/``, and every workflow package declares
itself in one ``WORKFLOW`` whose tables live in its own ``models.py``.

The import checks read the source (``ast``), so they see every import, also the ones inside
functions that run only later."""

from __future__ import annotations

import ast
import importlib
import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "storage", "media")

#: the modules allowed directly in ``bot/``: settings, helpers and the composition root, no workflow
TOP_LEVEL_MODULES = {"__init__", "config", "i18n", "text", "roles", "workdays", "runtime", "demo", "settings",
                     "steps"}
#: the packages allowed directly in ``bot/`` (workflows go to ``bot/flows``)
TOP_LEVEL_PACKAGES = {"channels", "core", "engine", "flows", "handlers"}
CHANNEL_LIBRARIES = ("telegram", "aiohttp")


@dataclass(frozen=True, slots=True)
class Import:
    """One import statement of a project module, resolved."""

    importer: str
    target: str  # the project module it loads, or the absolute name of an outside one
    line: int

    def __str__(self) -> str:
        return f"{self.importer} (line {self.line}) imports {self.target}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def project_modules() -> dict[str, Path]:
    """Every module of bot/, storage/ and media/ (name → file)."""
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))
            if "__pycache__" not in p.parts}


def _resolve(name: str) -> str:
    """The longest project module that ``name`` starts with; ``name`` itself if it is none of ours."""
    modules = project_modules()
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in modules:
            return candidate
    return name


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement below ``node`` (functions and classes included), except the body of an
    ``if TYPE_CHECKING:`` block, which never runs."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield from _import_nodes(ast.Module(body=[other], type_ignores=[]))
        else:
            yield from _import_nodes(child)


@cache
def imports_of(module: str) -> tuple[Import, ...]:
    path = project_modules()[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: list[Import] = []
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            out += [Import(module, _resolve(a.name), node.lineno) for a in node.names]
            continue
        if node.level:  # relative: ``from . import x``, ``from ..core import y``
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        for alias in node.names:
            # ``from pkg import submodule`` loads the submodule; ``from mod import name`` loads mod
            submodule = f"{source}.{alias.name}"
            target = submodule if submodule in project_modules() else _resolve(source)
            out.append(Import(module, target, node.lineno))
    return tuple(out)


def _graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {m: {i.target for i in imports_of(m) if i.target in modules and i.target != m} for m in modules}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (``[a, b, ..., a]``), or ``None``."""
    state: dict[str, int] = {}  # 1 on the current path, 2 finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _violations(packages: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return [str(i) for m in sorted(project_modules()) if any(_in(m, p) for p in packages)
            for i in imports_of(m) if any(_in(i.target, f) for f in forbidden)]


# -- the tests ------------------------------------------------------------------------------------
def test_the_import_reader_sees_imports_in_functions_and_skips_type_checking_blocks():
    """A guard for the checks below: ``bot.engine.reminders`` imports ``bot.core`` at the top and
    something inside a function, and it has an ``if TYPE_CHECKING:`` block whose imports are not counted."""
    source = (ROOT / "bot" / "engine" / "reminders.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    nested = [n for f in ast.walk(tree) if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
              for n in ast.walk(f) if isinstance(n, ast.Import | ast.ImportFrom)]
    guarded = [n for b in ast.walk(tree) if isinstance(b, ast.If) and _is_type_checking(b.test)
               for s in b.body for n in ast.walk(s) if isinstance(n, ast.Import | ast.ImportFrom)]
    lines = {i.line for i in imports_of("bot.engine.reminders")}
    assert nested and {n.lineno for n in nested} <= lines
    assert guarded and not {n.lineno for n in guarded} & lines
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycle_in_bot_storage_or_media():
    """Every ``import`` and ``from … import`` anywhere in a module counts — also inside functions,
    which run later but would still close a cycle. Imports inside an ``if TYPE_CHECKING:`` block are
    never executed and are not counted. Relative imports are resolved, and ``from pkg import mod``
    counts as an import of the submodule ``pkg.mod``."""
    cycle = find_cycle(_graph())
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])


def test_the_framework_and_the_engine_know_no_workflow_no_channel_and_not_the_runtime():
    bad = _violations(("bot.core", "bot.engine"), ("bot.flows", "bot.channels", "bot.runtime"))
    assert not bad, "\n".join(bad)


def test_storage_and_media_know_no_workflow():
    bad = _violations(("storage", "media"), ("bot.flows",))
    assert not bad, "\n".join(bad)


def test_the_framework_the_engine_and_the_workflows_import_no_channel_library():
    """``telegram`` (python-telegram-bot) and ``aiohttp`` belong to the channel adapters only."""
    assert len([m for m in project_modules() if _in(m, "bot.flows")]) > 30
    bad = _violations(("bot.core", "bot.engine", "bot.flows"), CHANNEL_LIBRARIES)
    assert not bad, "\n".join(bad)


def test_the_top_of_bot_holds_no_workflow():
    """Only the settings, the helpers and the composition root sit directly in ``bot/``; a workflow is a
    package (or a small module) under ``bot/flows``."""
    modules = {p.stem for p in (ROOT / "bot").glob("*.py")}
    packages = {p.name for p in (ROOT / "bot").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert modules <= TOP_LEVEL_MODULES, f"not expected at the top of bot/: {sorted(modules - TOP_LEVEL_MODULES)}"
    assert packages <= TOP_LEVEL_PACKAGES, f"not expected at the top of bot/: {sorted(packages - TOP_LEVEL_PACKAGES)}"


def test_every_workflow_package_declares_itself_with_its_tables_in_its_models():
    from sqlmodel import SQLModel

    from bot.core import Workflow

    folders = sorted(p for p in (ROOT / "bot" / "flows").iterdir() if p.is_dir() and p.name != "__pycache__")
    assert len(folders) >= 5
    for folder in folders:
        name = f"bot.flows.{folder.name}"
        assert (folder / "__init__.py").exists(), f"{name} has no __init__.py"
        workflow = getattr(importlib.import_module(name), "WORKFLOW", None)
        assert isinstance(workflow, Workflow), f"{name}.WORKFLOW is not a bot.core.Workflow"
        elsewhere = [t.__name__ for t in workflow.tables if t.__module__ != f"{name}.models"]
        assert not elsewhere, f"tables of {name} outside its models.py: {elsewhere}"
        if not (folder / "models.py").exists():
            assert not workflow.tables
            continue
        models = importlib.import_module(f"{name}.models")
        defined = {obj for _, obj in inspect.getmembers(models, inspect.isclass)
                   if obj.__module__ == models.__name__ and issubclass(obj, SQLModel)
                   and getattr(obj, "__table__", None) is not None}
        undeclared = sorted(t.__name__ for t in defined - set(workflow.tables))
        assert not undeclared, f"tables in {name}.models missing from its WORKFLOW.tables: {undeclared}"
