"""params.yaml: the run settings plus what only the pipeline needs (dataset dir, device, the round chain).

The round chain is declared, not computed, because DVC templates cannot compute "previous round":
`rounds: {r01: {prev: r00}, r02: {prev: r01}, ...}`. Round r00 (the dense network) is implicit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from lth.core.errors import LthError, unknown_choice
from lth.engine.settings import RunSettings, from_dict
from lth.core.steps import Step

if TYPE_CHECKING:
    from lth.training.supermask import SupermaskSettings

PIPELINE_KEYS = ("dataset_dir", "device", "rounds", "supermask", "experiments",  # experiments: lth.experiments
                 "checkpoint_every")
DEVICES = ("auto", "cpu", "cuda")
DENSE_ROUND = "r00"
_ROUND_KEY = re.compile(r"^r(\d{2,})$")


@dataclass(frozen=True)
class DistributedParams:
    """`train.distributed` in params.yaml: how many processes each training stage runs under torchrun
    on its machine, and how they share a round (lth.training.distributed.MODES)."""

    nproc: int = 1
    mode: str = "data"


def parse_distributed(raw: Any, where: str) -> DistributedParams:
    from lth.engine.settings import build_dataclass

    params = build_dataclass(DistributedParams, raw if raw is not None else {}, where)
    if params.nproc < 1:
        raise LthError(f"{where}.nproc: must be >= 1, got {params.nproc}")
    if params.mode not in ("data", "trials"):  # lth.training.distributed.MODES, without importing torch here
        raise unknown_choice(f"mode in {where}", params.mode, ("data", "trials"))
    return params


@dataclass(frozen=True)
class PipelineParams:
    settings: RunSettings
    dataset_dir: str
    device: str
    rounds: dict[str, str]  # round -> the round it continues from
    supermask: "SupermaskSettings" = None  # type: ignore[assignment]
    checkpoint_every: str = "2000it"  # mid-round training state of a train stage (not a result: no DVC param)
    distributed: "DistributedParams" = None  # type: ignore[assignment]  # train.distributed

    def previous(self, round_key: str) -> str:
        if round_key not in self.rounds:
            raise LthError(f"round '{round_key}' is not declared under 'rounds' in params.yaml; "
                           f"declared: {', '.join(self.rounds) or 'none'}")
        return self.rounds[round_key]


def round_index(round_key: str) -> int:
    """'r07' -> 7."""
    match = _ROUND_KEY.match(round_key)
    if not match:
        raise LthError(f"bad round name '{round_key}': expected r00, r01, r02, ...")
    return int(match.group(1))


def round_key(index: int) -> str:
    return f"r{index:02d}"


def parse_rounds(raw: Any, where: str = "params.yaml: rounds") -> dict[str, str]:
    """Validate the chain: every round continues from the round just before it, back to r00."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise LthError(f"{where}: expected a mapping like {{r01: {{prev: r00}}}}, got {raw!r}")
    chain: dict[str, str] = {}
    for key, value in raw.items():
        index = round_index(str(key))
        if not isinstance(value, Mapping) or set(value) != {"prev"}:
            raise LthError(f"{where}.{key}: expected {{prev: {round_key(index - 1)}}}, got {value!r}")
        prev = str(value["prev"])
        if index < 1 or round_index(prev) != index - 1:
            raise LthError(f"{where}.{key}: prev must be {round_key(index - 1)}, got '{prev}'")
        chain[str(key)] = prev
    for key, prev in chain.items():
        if prev != DENSE_ROUND and prev not in chain:
            raise LthError(f"{where}.{key}: its previous round '{prev}' is not declared")
    return dict(sorted(chain.items(), key=lambda kv: round_index(kv[0])))


def load_params(path: str | Path = "params.yaml") -> PipelineParams:
    """Read and validate params.yaml; every problem is an LthError naming the file and the key."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise LthError(f"missing {path}: run from the project root, where params.yaml lives") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise LthError(f"{path} is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, Mapping):
        raise LthError(f"{path}: expected a mapping of settings at the top level")
    run = {k: v for k, v in data.items() if k not in PIPELINE_KEYS}
    train = run.get("train")
    distributed = None
    if isinstance(train, Mapping) and "distributed" in train:  # processes, not results: not a RunSettings field
        distributed = train["distributed"]
        run["train"] = {k: v for k, v in train.items() if k != "distributed"}
    settings = from_dict(run, where=str(path))
    dataset_dir = data.get("dataset_dir", "data/datasets")
    device = data.get("device", "auto")
    if not isinstance(dataset_dir, str) or not isinstance(device, str):
        raise LthError(f"{path}: dataset_dir and device must be strings")
    if device not in DEVICES:
        raise unknown_choice(f"device in {path}", device, DEVICES)
    checkpoint_every = data.get("checkpoint_every", PipelineParams.checkpoint_every)
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, (str, int)):
        raise LthError(f"{path}: checkpoint_every must be a step string like '1000it', got {checkpoint_every!r}")
    Step.parse(checkpoint_every)
    from lth.engine.settings import build_dataclass
    from lth.training.supermask import SupermaskSettings

    supermask = build_dataclass(SupermaskSettings, data.get("supermask") or {}, f"{path}: supermask").validate()
    return PipelineParams(settings, dataset_dir, device, parse_rounds(data.get("rounds"), f"{path}: rounds"),
                          supermask, str(Step.parse(checkpoint_every)),
                          parse_distributed(distributed, f"{path}: train.distributed"))


def rounds_yaml(count: int) -> dict[str, dict[str, str]]:
    """The declared chain for rounds 1..count (what params.yaml holds for `count` pruning rounds)."""
    return {round_key(i): {"prev": round_key(i - 1)} for i in range(1, count + 1)}
