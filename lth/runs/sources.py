"""Which files of a DVC workspace a researcher's model or dataset runs or reads, and whether params.yaml's
`sources` (the deps DVC watches for them, dvc.yaml) cover them.

A model `nets.py:make_net` runs nets.py and the workspace modules it imports; a dataset `data/mine.npz` is
read from that file. If `sources.model` (a dep of every stage that builds the model) or `sources.dataset`
(a dep of `prepare`) did not cover them, editing nets.py would leave DVC serving results of the old code:
so every stage, and `lth check-params` before `dvc repro`, refuses that with one line saying what to set.
lth's own code (lth/, stages/) is watched by the code fingerprints instead; installed packages are not
the workspace's (pin their versions).
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path
from typing import Optional

from lth.core.errors import LthError
from lth.core.plugins import is_data_file, is_file_target, is_reference, split_reference

PROJECT_PACKAGES = ("lth", "stages", ".venv")  # watched by the code fingerprints, or not the workspace's


def used_files(name: str, what: str, root: Path) -> list[Path]:
    """The workspace files model or dataset `name` runs or reads (none for a registered one), resolved."""
    root = root.resolve()
    if what == "dataset" and is_data_file(name):
        return _inside([(root / name).resolve()], root)
    if not is_reference(name):
        return []
    start = _reference_file(name, what, root)
    if start is None:
        return []
    used = _with_imports(start, root)
    target, _ = split_reference(name, what)
    if not is_file_target(target):  # importing a.b.c runs a/__init__.py and a/b/__init__.py first
        parts = target.split(".")
        for i in range(1, len(parts)):
            init = root.joinpath(*parts[:i], "__init__.py")
            used += [path for path in _with_imports(init, root) if path not in used]
    return _inside(used, root)


def check_sources(name: str, what: str, source: str, root: Path, where: str) -> None:
    """An LthError naming the file and the setting to change when `source` does not cover what `name` uses."""
    root = root.resolve()
    used = used_files(name, what, root)
    if not used:
        return  # a registered model or dataset (or installed code): lth's code fingerprints watch it
    covered = (root / source).resolve()
    if not covered.exists():
        raise LthError(f"{where}: sources.{what} '{source}' does not exist; it names the file or folder of the "
                       f"{what}'s code{' (or data file)' if what == 'dataset' else ''}, which DVC watches")
    if root != covered and root not in covered.parents:
        raise LthError(f"{where}: sources.{what} '{source}' is outside the workspace; DVC watches files of the "
                       "workspace only")
    for path in used:
        if path != covered and covered not in path.parents:
            used = path.relative_to(root)
            raise LthError(f"{where}: {what} '{name}' uses {used}, which sources.{what} ('{source}') does not cover, "
                           f"so DVC would not rerun its stages when it changes: set sources.{what}: {used} (or a "
                           "folder holding every file it uses)")


def _reference_file(ref: str, what: str, root: Path) -> Optional[Path]:
    target, _ = split_reference(ref, what)
    if is_file_target(target):
        return (root / target).resolve()
    sys.path.insert(0, str(root))
    try:
        spec = importlib.util.find_spec(target)
    except (ImportError, ValueError):
        return None
    finally:
        sys.path.remove(str(root))
    return Path(spec.origin).resolve() if spec is not None and spec.origin and spec.has_location else None


def _inside(paths: list[Path], root: Path) -> list[Path]:
    """The paths inside the workspace and not in lth's own packages (or the virtual environment)."""
    own = [root / package for package in PROJECT_PACKAGES]
    return [p for p in paths if root in p.parents and not any(p == o or o in p.parents for o in own)]


def _with_imports(start: Path, root: Path) -> list[Path]:
    """`start` and every workspace module it imports, directly or through others (imports inside functions too)."""
    seen: list[Path] = []
    todo = [start]
    while todo:
        path = todo.pop()
        if path in seen or not path.is_file():
            continue
        seen.append(path)
        try:
            tree = ast.parse(path.read_text(), str(path))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue  # importing it will say what is wrong with it
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [(alias.name, 0) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [(node.module or "", node.level)]
                names += [(f"{node.module}.{alias.name}" if node.module else alias.name, node.level)
                          for alias in node.names]
            else:
                continue
            for module, level in names:
                todo += _module_files(module, level, path, root)
    return seen


def _module_files(module: str, level: int, importer: Path, root: Path) -> list[Path]:
    """The files `import module` (relative at `level`) may mean, looked for beside the importer and at the root."""
    parts = [p for p in module.split(".") if p]
    bases = [importer.parents[level - 1]] if level else [importer.parent, root]
    found = []
    for base in bases:
        for i in range(1, len(parts) + 1):
            stem = base.joinpath(*parts[:i])
            found += [f for f in (stem.with_suffix(".py"), stem / "__init__.py") if f.is_file()]
        if level and not parts:
            found += [f for f in (base / "__init__.py",) if f.is_file()]
    return found
