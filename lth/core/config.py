"""Typed settings, each declared once: default, help text and valid choices live on the dataclass field.

params.yaml validation, the CLI's option help and `lth list settings` all read the declarations through
`describe`, so a setting is never described twice. Building a settings dataclass from a plain mapping
(params.yaml, settings.json) rejects unknown keys and wrong types with an error that names the key.

Choices are a zero-argument function returning the registry (a mapping or tuple of names): registries
live with what they register (optimizers with the trainer, criteria with pruning ...), and the function
imports them only when a value is checked or help is shown.
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from dataclasses import dataclass, field
from difflib import get_close_matches
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional

from lth.core.errors import LthError, unknown_choice

Choices = Callable[[], Iterable[str]]


def registry(module: str, name: str) -> Choices:
    """The choices of a setting that lives in `module` as `name` ('lth.models', 'MODELS'), imported only when a
    value is checked or help is shown: a settings module stays torch-free and below what it names."""

    def choices() -> Iterable[str]:
        return getattr(importlib.import_module(module), name)

    choices.__qualname__ = f"registry({module}.{name})"
    return choices


def setting(default: Any = dataclasses.MISSING, help: str = "", *, choices: Optional[Choices] = None,
            label: str = "", inline: bool = False, default_factory: Any = dataclasses.MISSING,
            beyond: Optional[tuple[Callable[[Any], bool], str]] = None, parse: Optional[Callable[[Any], Any]] = None
            ) -> Any:
    """A dataclass field with its help text and, optionally, its valid values.

    `label` names the setting in errors ('unknown mask-1 action ...'; default: the field name);
    `inline` lists the choices in help texts (for short, torch-free registries; long ones point to
    `lth list`); `beyond` = (accepts, words): values outside the choices that are valid all the same
    (a reference to the user's own code, checked when it is loaded), and how the error names them;
    `parse` turns a value as written ('5%') into the setting's type before it is checked (0.05).
    """
    metadata = {"help": help, "choices": choices, "label": label, "inline": inline, "beyond": beyond,
                "parse": parse}
    return field(default=default, default_factory=default_factory, metadata=metadata)


@dataclass(frozen=True)
class SettingInfo:
    """One declared setting, as help texts and validation see it."""

    key: str  # dotted: 'train.lr'
    type: str  # 'str', 'int', 'float', 'bool', 'list', 'mapping'
    default: Any
    help: str
    label: str
    choices: Optional[Choices]
    inline: bool

    def names(self) -> list[str]:
        """The valid values (empty when any value of the type is allowed)."""
        return list(self.choices()) if self.choices else []

    def describe(self) -> str:
        """The help text, with the valid values listed when they are short."""
        if self.choices and self.inline:
            return f"{self.help} One of: {' | '.join(self.names())}."
        return self.help


def describe(cls: type, prefix: str = "") -> Iterator[SettingInfo]:
    """Every declared setting of a settings dataclass, nested ones as 'group.name'."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        if dataclasses.is_dataclass(hint):
            yield from describe(hint, f"{prefix}{f.name}.")
            continue
        meta = f.metadata
        yield SettingInfo(f"{prefix}{f.name}", _type_name(hint), plain(default), meta.get("help", ""),
                          meta.get("label") or f.name, meta.get("choices"), meta.get("inline", False))


def find(cls: type, key: str) -> SettingInfo:
    """The declared setting `key` ('train.lr') of a settings dataclass."""
    for info in describe(cls):
        if info.key == key:
            return info
    raise KeyError(key)


def check_choices(obj: Any) -> None:
    """Every field with declared choices holds one of them (each element, for a list); nested dataclasses too."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            check_choices(value)
            continue
        choices = f.metadata.get("choices")
        if choices is None:
            continue
        valid = list(choices())
        accepts, words = f.metadata.get("beyond") or (lambda item: False, "")
        for item in value if isinstance(value, (tuple, list)) else (value,):
            if item not in valid and not accepts(item):
                error = unknown_choice(f.metadata.get("label") or f.name, item, valid)
                raise LthError(f"{error}; or {words}") if words else error


def build(cls: type, data: Mapping[str, Any], where: str, base: Any = None) -> Any:
    """A settings dataclass from a mapping: unknown keys and wrong types are errors naming `where.key`;
    keys not given keep `base`'s values (default: the class defaults)."""
    if not isinstance(data, Mapping):
        raise LthError(f"{where}: expected a mapping of settings, got {data!r}")
    return _build(cls, data, cls() if base is None else base, where)


def plain(value: Any) -> Any:
    """Tuples to lists, recursively, so settings round-trip through JSON and YAML unchanged."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is tuple:
        return "list"
    if origin is dict:
        return "mapping"
    return getattr(hint, "__name__", str(hint))


def _build(cls: type, data: Mapping[str, Any], base: Any, where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    values: dict[str, Any] = {}
    parsers = {f.name: f.metadata.get("parse") for f in dataclasses.fields(cls)}
    for key, raw in data.items():
        if key not in names:
            close = get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise LthError(f"{where}: unknown key '{key}'{hint}; valid keys: {', '.join(names)}")
        if parsers[key] is not None and raw is not None:
            raw = parsers[key](raw)
        values[key] = _coerce(hints[key], raw, f"{where}.{key}", getattr(base, key))
    return dataclasses.replace(base, **values)


def _coerce(hint: Any, raw: Any, where: str, base: Any) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(raw, Mapping):
            raise LthError(f"{where}: expected a mapping, got {raw!r}")
        return _build(hint, raw, base, where)
    if origin is tuple:
        if not isinstance(raw, (list, tuple)):
            raise LthError(f"{where}: expected a list, got {raw!r}")
        return tuple(_coerce(typing.get_args(hint)[0], v, where, None) for v in raw)
    if origin is dict:
        if not isinstance(raw, Mapping):
            raise LthError(f"{where}: expected a mapping, got {raw!r}")
        merged = dict(base or {})
        merged.update({str(k): _coerce(typing.get_args(hint)[1], v, f"{where}.{k}", None) for k, v in raw.items()})
        return merged
    if hint is bool:
        if not isinstance(raw, bool):
            raise LthError(f"{where}: expected true or false, got {raw!r}")
        return raw
    if hint is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise LthError(f"{where}: expected an integer, got {raw!r}")
        return raw
    if hint is float:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise LthError(f"{where}: expected a number, got {raw!r}")
        return float(raw)
    if hint is str:
        if isinstance(raw, bool) or not isinstance(raw, (str, int)):
            raise LthError(f"{where}: expected a string, got {raw!r}")
        return str(raw)
    return raw


def differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """'key: old there, new now' for every leaf that differs between two nested mappings of settings."""
    diffs = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            diffs.append(f"{prefix}{key}: {a!r} there, {b!r} now")
    return diffs
