"""The environment `make` builds is the one requirements.txt pins, C YAML parser included."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parents[1] / "requirements.txt"


def pins() -> dict[str, str]:
    out = {}
    for line in REQUIREMENTS.read_text().splitlines():
        match = re.match(r"([A-Za-z0-9_.-]+)==([^\s#]+)", line)
        if match:
            out[match.group(1)] = match.group(2)
    return out


def installed(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def test_every_pinned_package_is_installed_at_its_pin():
    found = pins()
    assert {"torch", "torchvision", "dvc", "ruamel.yaml.clib"} <= found.keys()
    wrong = {name: (want, installed(name)) for name, want in found.items() if installed(name).split("+")[0] != want}
    assert not wrong, f"installed versions differ from requirements.txt: {wrong}"


def test_dvc_reads_yaml_with_the_c_parser():
    # DVC loads dvc.yaml and dvc.lock (157 kB for the default pipeline) with ruamel's "safe" loader at every
    # stage; without ruamel.yaml.clib that is pure Python, 0.5-0.9 s more per stage (docs/speed.md).
    from dvc.utils.serialize._yaml import parse_yaml
    from ruamel.yaml import YAML

    loader = YAML(typ="safe")
    assert loader.load("a: [1, 2]") == {"a": [1, 2]}
    assert loader.Parser.__module__.startswith("ruamel.yaml.clib"), loader.Parser
    assert parse_yaml("stages: {}\n", "dvc.lock") == {"stages": {}}
