"""Researchers' own code, named in settings: `package.module:callable` or `path/to/file.py:callable`.

A model or dataset that is not in lth's registries is named by where its callable lives, as DVC's `cmd`
names a script: the same string works on the command line, in params.yaml and in the Python API. Loading
it runs that code, by design (as `python nets.py` would); lth never runs code named by a file it merely
reads (checkpoints load with weights_only=True). A file is imported with its own folder on sys.path, so
it may import its neighbours; a module is imported as Python would from the current directory.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Optional

from lth.core.errors import LthError, one_line

FORMS = "package.module:callable or path/to/file.py:callable"
DATA_FILE_SUFFIXES = (".npz", ".pt", ".pth")
DATA_FORMS = f"a {'/'.join(DATA_FILE_SUFFIXES)} file of arrays, or {FORMS}"
_FILES: dict[Path, ModuleType] = {}


def is_reference(text: str) -> bool:
    """Whether a model or dataset name points to user code rather than a registry entry (registered names
    never hold a colon)."""
    return isinstance(text, str) and ":" in text


def is_data_file(name: str) -> bool:
    """Whether a dataset name is a path to a file of arrays (lth.datasets.arrays)."""
    return isinstance(name, str) and Path(name).suffix.lower() in DATA_FILE_SUFFIXES


def split_reference(ref: str, what: str) -> tuple[str, str]:
    """('nets.py', 'MLP') of 'nets.py:MLP'; an LthError naming the forms when it is not one."""
    target, _, attribute = ref.rpartition(":")
    if not target or not attribute or not all(part.isidentifier() for part in attribute.split(".")):
        raise LthError(f"bad {what} '{ref}': expected {FORMS}")
    return target, attribute


def is_file_target(target: str) -> bool:
    return target.endswith(".py") or "/" in target or os.sep in target


def load_callable(ref: str, what: str) -> Callable[..., Any]:
    """The callable `ref` names (importing its module or file); every failure is one LthError naming `ref`."""
    target, attribute = split_reference(ref, what)
    module = _load_file(Path(target), ref, what) if is_file_target(target) else _import(target, ref, what)
    obj: Any = module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            defined = sorted(name for name, value in vars(module).items()
                             if callable(value) and not name.startswith("_") and getattr(value, "__module__", None)
                             == module.__name__)
            raise LthError(f"{what} '{ref}': {target} has no attribute '{part}'"
                           + (f"; it defines: {', '.join(defined)}" if defined else ""))
        obj = getattr(obj, part)
    if not callable(obj):
        raise LthError(f"{what} '{ref}': '{attribute}' is a {type(obj).__name__}, not a callable")
    return obj


def source_file(ref: str, what: str) -> Optional[Path]:
    """The file holding the code `ref` names (resolved), without running it where possible; None for a module
    Python cannot locate or that has no file."""
    target, _ = split_reference(ref, what)
    if is_file_target(target):
        return Path(target).resolve()
    _cwd_on_path()
    try:
        spec = importlib.util.find_spec(target)
    except (ImportError, ValueError):
        return None
    return Path(spec.origin).resolve() if spec is not None and spec.origin and spec.has_location else None


def _cwd_on_path() -> None:
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())


def _import(target: str, ref: str, what: str) -> ModuleType:
    _cwd_on_path()
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if exc.name and (target == exc.name or target.startswith(exc.name + ".")):
            raise LthError(f"{what} '{ref}': no module named '{exc.name}' (not installed, not in the current "
                           f"folder; a file is named as path/to/file.py:callable)") from None
        raise LthError(f"{what} '{ref}': importing {target} failed: {one_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - the user's module raised while importing
        raise LthError(f"{what} '{ref}': importing {target} failed: {one_line(exc)}") from None


def _load_file(path: Path, ref: str, what: str) -> ModuleType:
    if not path.is_file():
        where = "" if path.is_absolute() else f" (in {Path.cwd()})"
        raise LthError(f"{what} '{ref}': no file {path}{where}")
    if path.suffix != ".py":
        raise LthError(f"{what} '{ref}': {path} is not a Python file (.py)")
    resolved = path.resolve()
    if resolved in _FILES:
        return _FILES[resolved]
    import hashlib

    name = f"lth_user_{resolved.stem}_{hashlib.sha256(str(resolved).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, resolved)
    module = importlib.util.module_from_spec(spec)
    folder = str(resolved.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)  # its neighbours import as they would under `python file.py`
    sys.modules[name] = module  # dataclasses and pickling look a class's module up here
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the user's file raised while importing
        del sys.modules[name]
        raise LthError(f"{what} '{ref}': importing {path} failed: {one_line(exc)}") from None
    _FILES[resolved] = module
    return module


def call(fn: Callable[..., Any], ref: str, what: str, *args: Any) -> Any:
    """fn(*args); an exception it raises becomes one LthError naming `ref` (its own LthError passes as it is)."""
    try:
        return fn(*args)
    except LthError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's code raised
        raise LthError(f"{what} '{ref}' raised {one_line(exc)}") from None
