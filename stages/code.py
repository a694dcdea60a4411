"""Stage `code`: the code every stage runs, as one fingerprint file per stage module in data/code/.

A stage's result depends on every project file its command imports, so each stage depends on the
fingerprint of exactly those files: data/code/stages.<name>.txt holds a SHA-256 over the files of the
import closure of `stages.<name>` (module-level imports and imports inside functions alike, since DVC
cannot know which function runs; string constants naming a project module, as registries that import
on demand use them; not `if TYPE_CHECKING:` imports, which never run; a package's lazy exports, the
imports inside its module-level `__getattr__` (PEP 562: lth's Python API), only for a module that takes
a name from the package itself), the versions of the numeric libraries, and the list of those files. This stage depends on the whole of lth/ and stages/ and reruns
on any change there (in well under a second: no torch); a stage downstream reruns only when its own
fingerprint changed. One dep per stage also keeps dvc.lock small, which DVC rewrites after every stage.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from importlib import metadata
from pathlib import Path

from stages._common import run_stage

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lth", "stages")
LIBRARIES = ("torch", "numpy")  # results depend on their arithmetic too


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every Python file of the project's packages."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _with_packages(name: str, modules: dict[str, Path]) -> set[str]:
    """`a.b.c` and the packages Python runs on the way (`a`, `a.b`), as far as they are project modules."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in modules}


def _runtime_nodes(tree: ast.AST, lazy: bool = False, type_level: bool = False):
    """Every node but those inside `if TYPE_CHECKING:` blocks (annotations only: they never run; with
    `type_level` they count too) and, unless `lazy`, those of the module-level `__getattr__` (lazy exports;
    with `lazy`: only those)."""
    todo = [child for child in ast.iter_child_nodes(tree) if _is_lazy(child)] if lazy else [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test) and not type_level:
                todo += child.orelse
            elif not (node is tree and _is_lazy(child)):
                todo.append(child)


def _parsed(path: Path) -> ast.AST:
    """The file's syntax tree, parsed once per version of the file (closures parse the same files many times)."""
    stat = path.stat()
    return _parse(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=None)
def _parse(path: Path, mtime_ns: int, size: int) -> ast.AST:
    return ast.parse(path.read_text(), str(path))


def _has_lazy(path: Path) -> bool:
    """Whether a module has lazy exports (a module-level `__getattr__`)."""
    return any(_is_lazy(node) for node in ast.iter_child_nodes(_parsed(path)))


def _defined(path: Path) -> set[str]:
    """The names a module binds at its top level (`__version__ = ...`): taking one is not a lazy export."""
    names: set[str] = set()
    for node in ast.iter_child_nodes(_parsed(path)):
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    return names


def _is_lazy(node: ast.AST) -> bool:
    """A module-level `def __getattr__`: it runs only when a name the package lacks is taken from it."""
    return isinstance(node, ast.FunctionDef) and node.name == "__getattr__"


def imports_of(name: str, modules: dict[str, Path], lazy: bool = False, type_level: bool = False) -> set[str]:
    """The project modules that module `name` may import, anywhere in its file (`lazy`: only those its lazy
    exports import; `type_level`: also those imported for annotations only, tests/test_layers.py's view)."""
    path = modules[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(_parsed(path), lazy, type_level):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found |= _with_packages(alias.name, modules)
                if alias.name in modules and _has_lazy(modules[alias.name]):  # `import lth`: its lazy names
                    found |= imports_of(alias.name, modules, lazy=True)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found |= _with_packages(base, modules)
            for alias in node.names:  # `from lth.steps import train` imports a submodule
                found |= _with_packages(f"{base}.{alias.name}", modules)
                if f"{base}.{alias.name}" not in modules and base in modules and base != name \
                        and _has_lazy(modules[base]) and alias.name not in _defined(modules[base]):
                    found |= imports_of(base, modules, lazy=True)  # `from lth import find_ticket`: a lazy export
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in modules:
            found |= _with_packages(node.value, modules)  # 'lth.models.lenet' in a registry
    return found - {name}


def closure(name: str, modules: dict[str, Path]) -> list[Path]:
    """Every project file that running module `name` may execute, sorted."""
    seen: set[str] = set()
    todo = list(_with_packages(name, modules))
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo += imports_of(current, modules)
    return sorted(modules[m] for m in seen)


def fingerprint(name: str, modules: dict[str, Path], root: Path = ROOT) -> str:
    """The text of data/code/<name>.txt: a SHA-256 line, the library versions, then the files it covers."""
    files = closure(name, modules)
    versions = [f"{lib} {_version(lib)}" for lib in LIBRARIES]
    digest = hashlib.sha256()
    for line in versions:
        digest.update(line.encode() + b"\n")
    for path in files:
        digest.update(f"{path.relative_to(root)}\n".encode() + path.read_bytes() + b"\n")
    lines = [f"sha256 {digest.hexdigest()}", *versions, *(str(p.relative_to(root)) for p in files)]
    return "\n".join(lines) + "\n"


def _version(library: str) -> str:
    try:
        return metadata.version(library)
    except metadata.PackageNotFoundError:
        return "absent"


def main() -> None:
    from lth.core import files
    from lth.runs.layout import Layout

    layout = Layout(Path("."))
    modules = project_modules(Path.cwd())
    stage_modules = [m for m in modules if m.startswith("stages.") and not m.split(".")[-1].startswith("_")]
    for name in stage_modules:
        files.atomic_write_bytes(layout.code_fingerprint(name), fingerprint(name, modules, Path.cwd()).encode())
    print(f"code fingerprints of {len(stage_modules)} stage modules -> {layout.code_fingerprint('').parent}")


if __name__ == "__main__":
    run_stage(main)
