"""The package is layered: imports point down only, and no module imports itself back through others.

    cli, api -> experiments, report, compact, datasets_cli -> ui -> steps -> runs -> training, pruning
        -> models, datasets -> tasks -> core

A module may import modules of its own package or of a lower layer; packages of one layer never import
each other. Imports inside functions count (they run too), and so do imports under `if TYPE_CHECKING:`
(they never run, but a reader follows them: two modules that name each other's types are one module).
"""

from __future__ import annotations

import ast
import subprocess
import sys

from test_dvc_deps import REPO, project_modules

LAYERS = {
    "lth.core": 0,
    "lth.tasks": 1,
    "lth.models": 2, "lth.datasets": 2,
    "lth.pruning": 3, "lth.training": 3,
    "lth.runs": 4,
    "lth.steps": 5,
    "lth.ui": 6,
    "lth.experiments": 7, "lth.report": 7, "lth.compact": 7, "lth.datasets_cli": 7,
    "lth.cli": 8, "lth.api": 8,
    "lth.__main__": 9,
}


def unit(module: str) -> str:
    """The layered unit a module belongs to: its package (lth.pruning) or itself (lth.datasets, lth.cli)."""
    for name in sorted(LAYERS, key=len, reverse=True):
        if module == name or module.startswith(name + "."):
            return name
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS")


def imports(name: str, type_level: bool) -> set[str]:
    """The project modules `name` imports, by the walk the pipeline's code fingerprints use (stages/code.py):
    imports inside functions and registry strings too, and with `type_level` those under TYPE_CHECKING."""
    from stages import code

    return code.imports_of(name, code.project_modules(REPO), type_level=type_level)


def lth_modules() -> dict:
    return {name: path for name, path in project_modules().items() if name.startswith("lth.") and name != "lth"}


def test_imports_point_down_only():
    modules = lth_modules()
    wrong = []
    for name in modules:
        mine = unit(name)
        for target in imports(name, type_level=True):
            if target not in modules or target == "lth":
                continue
            theirs = unit(target)
            if theirs != mine and LAYERS[theirs] >= LAYERS[mine]:
                wrong.append(f"{name} imports {target} ({mine} is layer {LAYERS[mine]}, {theirs} {LAYERS[theirs]})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    """Module A imports B imports ... A: none, counting imports inside functions (they run too) and those for
    type annotations only (a reader follows them)."""
    modules = lth_modules()
    # a module's own packages are not edges: `from lth.report import figures` in lth.report.document runs
    # lth/report/__init__.py first by Python's rules, whatever that imports
    graph = {name: {t for t in imports(name, type_level=True)
                    if t in modules and t != name and not name.startswith(t + ".")}
             for name in modules}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack + [target])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "\n".join(cycles)


def test_the_cli_and_its_help_do_not_load_torch():
    """`lth --help`, `lth list settings` and every option's help text come from torch-free declarations."""
    code = "import sys, lth.cli; assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)[:5]"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
