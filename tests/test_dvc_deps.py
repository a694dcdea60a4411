"""dvc.yaml's code deps are complete: every project file a stage's command imports is covered by a dep.

A stage whose deps miss a file it runs would keep serving old results after that file changes: the
worst defect a "reproducible, cached and diffable" pipeline can have. The import closure is the one the
pipeline itself computes (stages/code.py, the `code` stage: this file checks that code, not a copy of it),
walking the AST of `stages/` and `lth/` from the stage's module: module-level imports and imports
inside functions alike (DVC cannot know which function runs), relative imports, and string constants
that name a project module (registries that import their entries on demand, `import_module(...)`).
Imports under `if TYPE_CHECKING:` never run, so they are not followed; a package's lazy exports (imports in
its module-level `__getattr__`, PEP 562: lth's Python API) are followed only from a module that takes a name
from the package itself (`import lth`, `from lth import find_ticket`).
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("lth", "stages")


def project_modules(root: Path = REPO) -> dict[str, Path]:
    from stages import code

    return code.project_modules(root)


@functools.lru_cache(maxsize=None)
def repo_closure(name: str) -> frozenset[Path]:
    """import_closure of the repository's own module `name`, walked once per test process (the checks below
    ask for the same closures again and again; each walk parses the ASTs of most of lth/)."""
    return frozenset(import_closure(name, project_modules()))


def import_closure(name: str, modules: dict[str, Path], root: Path = REPO) -> set[Path]:
    """Every project file that importing `name` may execute (relative to `root`): the `code` stage's walk."""
    from stages import code

    return {path.relative_to(root) for path in code.closure(name, modules)}


def stage_module(cmd: str) -> str:
    match = re.match(r"python -m ([\w.]+)", cmd)
    assert match, f"stage command '{cmd}' does not run a project module"
    return match.group(1)


def load_dvc() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())


def missing_deps(dvc: dict) -> dict[str, list[str]]:
    """Stage -> the project files its command imports that its code deps do not cover.

    A stage's code deps are data/code/<module>.txt (the `code` stage fingerprints that module's import
    closure, stages/code.py) or project paths (a file, or a folder above it); the `code` stage itself
    must depend on all of lth/ and stages/."""
    missing = {}
    for stage, spec in dvc["stages"].items():
        body = spec.get("do", spec)
        deps = [Path(d) for d in body.get("deps", [])]
        covered = [d for d in deps if str(d).startswith(PACKAGES)]
        for dep in deps:
            if dep.parent == Path("data/code") and dep.suffix == ".txt":
                covered += repo_closure(dep.stem)
        closure = repo_closure(stage_module(body["cmd"]))
        uncovered = sorted(str(f) for f in closure if not any(f == d or d in f.parents for d in covered))
        if uncovered:
            missing[stage] = uncovered
    return missing


def test_every_stage_depends_on_every_file_its_command_imports():
    missing = missing_deps(load_dvc())
    report = "; ".join(f"stage {stage} lacks {', '.join(files)}" for stage, files in missing.items())
    assert not missing, report


def test_the_code_stage_depends_on_all_code_and_every_other_stage_on_its_fingerprint():
    stages = load_dvc()["stages"]
    assert set(stages["code"]["deps"]) == set(PACKAGES) and stages["code"]["outs"] == ["data/code"]
    for stage, spec in stages.items():
        body = spec.get("do", spec)
        if stage != "code":
            assert f"data/code/{stage_module(body['cmd'])}.txt" in body["deps"], stage


@pytest.mark.parametrize("stage", ["train", "mask", "prepare", "exp_combine"])
def test_the_check_fails_naming_the_stage_and_file_when_a_dep_is_removed(stage):
    mutated = copy.deepcopy(load_dvc())
    body = mutated["stages"][stage].get("do", mutated["stages"][stage])
    body["deps"] = [d for d in body["deps"] if not d.startswith("data/code/")]
    missing = missing_deps(mutated)
    assert stage in missing and f"stages/{stage_module(body['cmd']).split('.')[1]}.py" in missing[stage], missing


def test_the_fingerprint_changes_with_a_file_of_the_closure_and_only_then(tmp_path):
    import shutil

    from stages import code

    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    before = code.fingerprint("stages.mask", code.project_modules(tmp_path), tmp_path)
    assert "lth/pruning/ranking.py" in before and "lth/training/loop.py" not in before
    (tmp_path / "lth/report/figures.py").write_text("# not imported by the mask stage\n")
    assert code.fingerprint("stages.mask", code.project_modules(tmp_path), tmp_path) == before
    ranking = tmp_path / "lth/pruning/ranking.py"
    ranking.write_text(ranking.read_text() + "\n# a change\n")
    assert code.fingerprint("stages.mask", code.project_modules(tmp_path), tmp_path) != before


def test_code_deps_exist():
    for stage, spec in load_dvc()["stages"].items():
        for dep in spec.get("do", spec).get("deps", []):
            if dep.startswith(PACKAGES):
                assert (REPO / dep).exists(), f"stage {stage}: dep {dep} does not exist"


def test_lazy_exports_are_followed_only_from_modules_that_take_them(tmp_path):
    """The Python API (lth.find_ticket) is imported by lth/__init__.py's __getattr__: a stage, which imports
    lth's submodules only, does not depend on it; a module that takes `find_ticket` from lth does."""
    import shutil

    from stages import code

    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "stages" / "uses_api.py").write_text("def main():\n    from lth import find_ticket\n")
    modules = code.project_modules(tmp_path)

    def walk(module: str) -> set[str]:
        return {str(p.relative_to(tmp_path)) for p in code.closure(module, modules)}

    assert "lth/api.py" not in walk("stages.mask") and "lth/__init__.py" in walk("stages.mask")
    assert "lth/api.py" in walk("stages.uses_api") and "lth/steps/rounds.py" in walk("stages.uses_api")


def test_the_walk_sees_function_level_and_registry_imports():
    modules = project_modules()
    closure = {str(p) for p in import_closure("stages.experiment", modules)}
    assert "lth/experiments/removal.py" in closure  # named in the EXPERIMENTS registry, imported on demand
    assert "lth/models/resnet.py" in closure  # named in the model registry, imported when built
    assert "lth/training/loop.py" in closure  # imported inside functions only
    assert "lth/cli.py" not in closure and "lth/report/document.py" not in closure
