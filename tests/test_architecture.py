"""The stage order of documentation/architecture.md, enforced on the source (parsed with ``ast``, nothing
imported): no import of a later stage or of a command module, no package or module circle, no private name
across modules, imports of the package inside functions only in the entry points."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "orthodiff_auto"
SOURCE = ROOT / PACKAGE
ARCHITECTURE_MD = ROOT / "documentation" / "architecture.md"
#: units whose modules may import the package inside functions (with a comment): start-up time of the CLI
ENTRY_POINTS = ("commands", "cli", "demo", "__main__")
#: the package root's table of the names users import from ``orthodiff_auto`` (the Python API): loaded on first
#: use, by users only, so it may name any stage (see the rules in documentation/architecture.md)
FACADE_TABLE = "_PUBLIC_EXPORTS"


def stage_order(text: str | None = None) -> list[list[str]]:
    """The tiers of the ``stages`` block of documentation/architecture.md, lowest first."""
    text = ARCHITECTURE_MD.read_text() if text is None else text
    block = re.search(r"^```stages\n(.*?)^```", text, re.S | re.M)
    assert block, f"{ARCHITECTURE_MD}: no ```stages block"
    tiers = []
    for line in block.group(1).splitlines():
        if line.strip():
            number, *units = line.split()
            assert int(number) == len(tiers), f"{ARCHITECTURE_MD}: tier {number} out of sequence"
            tiers.append(units)
    return tiers


def unit_ranks() -> dict[str, tuple[int, int]]:
    """unit -> (tier, position in the tier): the total order of the stages."""
    return {unit: (tier, i) for tier, units in enumerate(stage_order()) for i, unit in enumerate(units)}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def unit_of(module: str) -> str:
    """The stage unit of a module: its top-level package or module under the package, ``__init__`` for the
    package root."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


MODULES = {module_name(p): p for p in sorted(SOURCE.rglob("*.py"))}


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module of the package
    where: str  # file:line
    in_function: bool
    names: tuple[str, ...] = ()  # names taken from the target (from-imports)
    comment: bool = False  # a comment on the line or the line above
    facade: bool = False  # an entry of the package root's public table (FACADE_TABLE)


def _resolve(module: str, name: str | None) -> str:
    """``from module import name``: the submodule when ``name`` is one, else the module itself."""
    return f"{module}.{name}" if name and f"{module}.{name}" in MODULES else module


def imports_of(module: str, path: Path | None = None, text: str | None = None) -> list[Import]:
    """Every import of the package in ``module`` (its file, or ``text``): module level and inside functions
    (any depth), absolute and relative, ``importlib.import_module("...")`` literals and the lazy ``_EXPORTS``
    tables of package inits."""
    path = path or MODULES[module]
    lines = (path.read_text() if text is None else text).splitlines()
    tree = ast.parse("\n".join(lines), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    found: list[Import] = []

    def commented(node) -> bool:
        here = lines[node.lineno - 1]
        above = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
        return "#" in here or above.startswith("#")

    def visit(node, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                        found.append(Import(module, alias.name, f"{rel}:{child.lineno}", in_function, (), commented(child)))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[:len(base) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                if target == PACKAGE or target.startswith(PACKAGE + "."):
                    for alias in child.names:
                        found.append(Import(module, _resolve(target, alias.name), f"{rel}:{child.lineno}", in_function,
                                            (alias.name,), commented(child)))
            elif (isinstance(child, ast.Call) and getattr(child.func, "attr", getattr(child.func, "id", None))
                  == "import_module" and child.args and isinstance(child.args[0], ast.Constant)
                  and str(child.args[0].value).startswith(PACKAGE + ".")):
                found.append(Import(module, child.args[0].value, f"{rel}:{child.lineno}", in_function, (), True))
            elif (isinstance(child, ast.Assign) and any(getattr(t, "id", "").endswith("EXPORTS") for t in child.targets)
                  and isinstance(child.value, ast.Dict)):
                facade = module == PACKAGE and any(getattr(t, "id", "") == FACADE_TABLE for t in child.targets)
                for value in child.value.values:
                    if isinstance(value, ast.Constant) and str(value.value).startswith(PACKAGE + "."):
                        found.append(Import(module, value.value, f"{rel}:{value.lineno}", True, (), True, facade))
            visit(child, inner)

    visit(tree, False)
    return found


ALL_IMPORTS = [imp for module in MODULES for imp in imports_of(module)]
#: the imports that make the stage order: every one but the public facade's, which no module of the package uses
STAGE_IMPORTS = [imp for imp in ALL_IMPORTS if not imp.facade]


def upward_imports(imports=STAGE_IMPORTS) -> list[str]:
    ranks = unit_ranks()
    problems = []
    for imp in imports:
        src, dst = unit_of(imp.source), unit_of(imp.target)
        if ranks[dst] > ranks[src]:
            kind = "a command module" if dst == "commands" else f"stage {ranks[dst][0]} {dst!r}"
            problems.append(f"{imp.where} imports {imp.target}: {src!r} (stage {ranks[src][0]}) may not import {kind}, "
                            "which comes later in documentation/architecture.md")
    return problems


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def strong(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return out


def test_stage_order_covers_every_package_and_module():
    ranks = unit_ranks()
    units = {unit_of(m) for m in MODULES}
    assert not units - set(ranks), (f"not in the stages block of {ARCHITECTURE_MD}: {sorted(units - set(ranks))}; "
                                    "give every package its stage")
    assert not set(ranks) - units, f"stages block names units that do not exist: {sorted(set(ranks) - units)}"
    assert len(ranks) == sum(len(t) for t in stage_order()), "a unit is listed twice"


def test_no_package_imports_a_later_stage_or_a_command_module():
    problems = upward_imports()
    assert not problems, "imports against the stage order:\n" + "\n".join(problems)


def test_no_package_circle():
    edges: dict[str, set[str]] = {}
    for imp in STAGE_IMPORTS:
        src, dst = unit_of(imp.source), unit_of(imp.target)
        if src != dst:
            edges.setdefault(src, set()).add(dst)
    assert not cycles(edges), f"package circles: {cycles(edges)}"


def test_no_module_circle():
    edges: dict[str, set[str]] = {}
    for imp in STAGE_IMPORTS:
        if imp.source != imp.target:
            edges.setdefault(imp.source, set()).add(imp.target)
    assert not cycles(edges), f"module circles: {cycles(edges)}"


def test_the_public_facade_is_for_users_only():
    """The root's public names come from the stages that own them; no module of the package takes one from the
    root (it imports the owning module), so the facade adds no dependency between stages."""
    facade = [i for i in ALL_IMPORTS if i.facade]
    assert facade and all(i.source == PACKAGE for i in facade)
    public = set(ast.literal_eval(re.search(FACADE_TABLE + r" = (\{.*?\})", (SOURCE / "__init__.py").read_text(),
                                            re.S).group(1)))
    through_root = [f"{i.where} imports {name} from {PACKAGE}" for i in ALL_IMPORTS
                    if i.target == PACKAGE and i.source != PACKAGE for name in i.names if name in public]
    assert not through_root, "import these from the module that owns them:\n" + "\n".join(through_root)


def test_no_private_name_crosses_a_module_border():
    crossing = [f"{i.where} imports {name} from {i.target}"
                for i in ALL_IMPORTS for name in i.names
                if name.startswith("_") and not name.startswith("__") and i.target != i.source]
    assert not crossing, "private names used by another module (make them public):\n" + "\n".join(crossing)


def test_package_imports_inside_functions_only_in_entry_points_and_commented():
    lazy = [i for i in ALL_IMPORTS if i.in_function and not MODULES[i.source].name == "__init__.py"]
    misplaced = [f"{i.where} imports {i.target} inside a function"
                 for i in lazy if unit_of(i.source) not in ENTRY_POINTS]
    assert not misplaced, ("library code imports the package at the top of the module (an import inside a "
                           "function hides a dependency):\n" + "\n".join(misplaced))
    silent = [i.where for i in lazy if not i.comment]
    assert not silent, "a lazy import needs a one-line comment saying why:\n" + "\n".join(silent)


def test_the_check_sees_an_upward_import():
    """The checker itself: function-level imports of a later stage and of a command module, absolute and
    relative, in a made-up module of ``training``."""
    code = ("import orthodiff_auto.commands.pretrain\n"
            "def f():\n"
            "    from orthodiff_auto.classification.run import train_classification_fold\n"
            "    from ..pipeline import train_fold\n"
            "    from .loop import Trainer\n")
    found = imports_of("orthodiff_auto.training.made_up", SOURCE / "training" / "made_up.py", code)
    assert [i.target for i in found] == ["orthodiff_auto.commands.pretrain", "orthodiff_auto.classification.run",
                                         "orthodiff_auto.pipeline.train_fold", "orthodiff_auto.training.loop"]
    problems = upward_imports(found)
    assert len(problems) == 3 and "a command module" in problems[0]


@pytest.mark.parametrize("text, message", [("no block", "no ```stages block"),
                                           ("```stages\n0 utils\n2 data\n```\n", "out of sequence")])
def test_a_broken_stages_block_is_reported(text, message):
    with pytest.raises(AssertionError, match=message):
        stage_order(text)
