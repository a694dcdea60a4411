"""params.yaml: the run settings plus what only the pipeline needs (dataset dir, device, the round chain).

The round chain is declared, not computed, because DVC templates cannot compute "previous round":
`rounds: {r01: {prev: r00}, r02: {prev: r01}, ...}`. Round r00 (the dense network) is implicit.
The research experiments' groups (`experiments.<name>`) are read by each experiment itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from lth.core.config import build, check_choices, registry, setting
from lth.core.errors import LthError
from lth.core.durations import Step
from lth.runs.settings import RunSettings, from_dict
from lth.pruning.at_init import load_settings as load_at_init_settings
from lth.training.settings import DistributedSettings, SupermaskSettings

DENSE_ROUND = "r00"
_ROUND_KEY = re.compile(r"^r(\d{2,})$")


@dataclass(frozen=True)
class WorkspaceSettings:
    """What the pipeline needs beyond the run settings; none of it changes results."""

    dataset_dir: str = setting("data/datasets", "Directory holding (or receiving) the dataset files.")
    device: str = setting("auto", "Where training runs.", choices=registry("lth.training.device", "DEVICES"), inline=True)
    checkpoint_every: str = setting("2000it", "A train stage saves its state this often, so an interrupted one "
                                              "resumes mid-round ('0it': only when interrupted).")


@dataclass(frozen=True)
class SourceSettings:
    """What DVC watches for the model's and the dataset's own code or file (deps in dvc.yaml), so a stage reruns
    when the researcher's code or data it uses changes (lth.runs.sources checks they cover it)."""

    model: str = setting("lth/models", "The model's code, a file or folder of this workspace (your own: e.g. "
                                       "nets.py): a dep of every stage that builds the model.")
    dataset: str = setting("lth/datasets", "The dataset's code or file, a file or folder of this workspace (your "
                                           "own: e.g. data/mine.npz): a dep of prepare.")


PIPELINE_KEYS = ("dataset_dir", "device", "checkpoint_every", "rounds", "supermask", "experiments", "prune_at_init",
                 "sparse_train", "sources")


@dataclass(frozen=True)
class PipelineParams:
    settings: RunSettings
    dataset_dir: str
    device: str
    rounds: dict[str, str]  # round -> the round it continues from
    supermask: SupermaskSettings = field(default_factory=SupermaskSettings)
    checkpoint_every: str = WorkspaceSettings.checkpoint_every  # the declared default
    distributed: DistributedSettings = field(default_factory=DistributedSettings)  # train.distributed
    sources: SourceSettings = field(default_factory=SourceSettings)

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
    """7 -> 'r07'."""
    return f"r{index:02d}"


def parse_rounds(raw: Any, where: str = "params.yaml: rounds") -> dict[str, str]:
    """Validate the chain: every round continues from the round just before it, back to r00."""
    if raw is None:
        return {}
    if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0:
        raise LthError(f"{where}: {raw} is not a chain of rounds; DVC's foreach needs each round declared: "
                       f"rounds: {{r01: {{prev: r00}}, ..., {round_key(raw)}: {{prev: {round_key(raw - 1)}}}}}")
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


def yaml_loader():  # noqa: ANN201 - a yaml.SafeLoader subclass
    """PyYAML's safe loader with YAML 1.2's integers: no base-60 '2:4' = 124. DVC (ruamel, YAML 1.2) rewrites
    params.yaml on `dvc exp run -S` and leaves an N:M pattern such as '2:4' unquoted; read as YAML 1.1 it would
    become a number, so lth reads params.yaml the way DVC writes it."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    int_tag = "tag:yaml.org,2002:int"
    Loader.yaml_implicit_resolvers = {first: [(tag, regexp) for tag, regexp in resolvers if tag != int_tag]
                                      for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    Loader.add_implicit_resolver(int_tag, re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)"
                                                     r"|[-+]?0x[0-9a-fA-F_]+)$"), list("-+0123456789"))
    return Loader


def read_yaml(path: str | Path) -> dict:
    """params.yaml as a mapping; a missing file or bad YAML is an LthError naming the file (and line)."""
    import yaml

    path = Path(path)
    try:
        data = yaml.load(path.read_text(), Loader=yaml_loader())  # noqa: S506 - a SafeLoader subclass
    except FileNotFoundError:
        raise LthError(f"missing {path}: run from the project root, where params.yaml lives") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise LthError(f"{path} is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, Mapping):
        raise LthError(f"{path}: expected a mapping of settings at the top level")
    return dict(data)


def load_params(path: str | Path = "params.yaml") -> PipelineParams:
    """Read and validate params.yaml; every problem is an LthError naming the file and the key."""
    path = Path(path)
    data = read_yaml(path)
    run = {k: v for k, v in data.items() if k not in PIPELINE_KEYS}
    train = run.get("train")
    distributed: Any = {}
    if isinstance(train, Mapping) and "distributed" in train:  # processes, not results: not a RunSettings field
        distributed = train["distributed"] if train["distributed"] is not None else {}
        run["train"] = {k: v for k, v in train.items() if k != "distributed"}
    settings = from_dict(run, where=str(path))
    workspace = build(WorkspaceSettings, {k: data[k] for k in ("dataset_dir", "device", "checkpoint_every")
                                          if k in data}, str(path))
    check_choices(workspace)
    checkpoint_every = str(Step.parse(workspace.checkpoint_every))
    supermask = build(SupermaskSettings, data.get("supermask") or {}, f"{path}: supermask").validate()
    processes = build(DistributedSettings, distributed, f"{path}: train.distributed").validate(
        f"{path}: train.distributed")
    sources = build(SourceSettings, data.get("sources") or {}, f"{path}: sources")
    rounds = parse_rounds(data.get("rounds"), f"{path}: rounds")
    if settings.prune.schedule == "oneshot" and list(rounds) != ["r01"]:
        raise LthError(f"{path}: prune.schedule oneshot prunes once, so declare one round: "
                       f"rounds: {{r01: {{prev: r00}}}} (declared: {', '.join(rounds) or 'none'})")
    check_experiment_rounds(data.get("experiments"), [DENSE_ROUND, *rounds], path)
    if "prune_at_init" in data:
        load_at_init_settings(data["prune_at_init"], f"{path}: prune_at_init")
    if "sparse_train" in data:
        from lth.runs.sparse_train import load_settings as load_sparse_settings

        load_sparse_settings(data["sparse_train"], f"{path}: sparse_train")
    check_workspace_sources(settings, sources, data.get("experiments"), path)
    return PipelineParams(settings, workspace.dataset_dir, workspace.device, rounds, supermask, checkpoint_every,
                          processes, sources)


def check_workspace_sources(settings: RunSettings, sources: SourceSettings, experiments: Any, path: Path) -> None:
    """`sources` cover the workspace files the model and the datasets (the run's, the transfer experiment's) use."""
    from lth.runs.sources import check_sources

    root = path.resolve().parent
    check_sources(settings.model, "model", sources.model, root, str(path))
    check_sources(settings.dataset, "dataset", sources.dataset, root, str(path))
    transfer = (experiments or {}).get("transfer") if isinstance(experiments, Mapping) else None
    if isinstance(transfer, Mapping) and isinstance(transfer.get("dataset"), str) and transfer["dataset"]:
        check_sources(transfer["dataset"], "dataset", sources.dataset, root, f"{path}: experiments.transfer")


def check_experiment_rounds(experiments: Any, declared: list[str], path: Path) -> None:
    """Every `experiments.<name>.round` names a declared round (a shortened chain must not leave one behind)."""
    if not isinstance(experiments, Mapping):
        return
    for name, group in experiments.items():
        if isinstance(group, Mapping) and "round" in group and str(group["round"]) not in declared:
            raise LthError(f"{path}: experiments.{name}.round is {group['round']!r}, which is not a declared round; "
                           f"declared: {', '.join(declared)}")


def rounds_yaml(count: int) -> dict[str, dict[str, str]]:
    """The declared chain for rounds 1..count (what params.yaml holds for `count` pruning rounds)."""
    return {round_key(i): {"prev": round_key(i - 1)} for i in range(1, count + 1)}
