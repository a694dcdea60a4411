"""Where a report's runs come from: a find-ticket run directory, a DVC pipeline workspace, or DVC experiments.

Every source becomes a `RunData`: its finished round records (the same JSON the runner and the
pipeline write), its flat params (to label runs by what differs between them) and a way to load a
round's mask. A run still in progress simply has fewer records. DVC experiments are read through
DVC's own API (`dvc.api.exp_show` to find them, then one `dvc.repo.Repo` per revision whose file system
reads params.yaml, metrics and masks there), never by walking `.git` by hand.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

from lth.core import files
from lth.core.errors import LthError

MaskLoader = Callable[[int, int], Optional[Mapping[str, Any]]]  # (trial, round) -> mask tensors, None if absent


@dataclass
class RunData:
    """One run's finished rounds, its params and where its masks are."""

    name: str
    params: dict[str, Any]
    records: list[dict]
    load_mask: MaskLoader = field(repr=False, default=lambda trial, r: None)
    label: str = ""
    input_shape: Optional[tuple[int, ...]] = None  # of one example (None: unknown), for the mask pictures
    compaction: list[dict] = field(default_factory=list)  # `lth compact` results per round, when it was run
    at_init: list[dict] = field(default_factory=list)  # pruning-at-init results (method, target, networks)
    stability: list[dict] = field(default_factory=list)  # instability analyses (lth.experiments.stability), per round
    transfer_curves: list[dict] = field(default_factory=list)  # transfer curves (lth.experiments.transfer), per target
    sparse_train: list[dict] = field(default_factory=list)  # sparse training summaries (lth.experiments.sparse_train)
    test_size: Optional[int] = None  # test examples (data/prepared/spec.json): how finely accuracies can differ

    @property
    def model(self) -> str:
        return str(self.params.get("model", ""))


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'train': {'lr': 1e-3}} -> {'train.lr': 1e-3}; lists become tuples so they compare and hash."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = tuple(value) if isinstance(value, list) else value
    return flat


def from_results(path: Path) -> RunData:
    """A find-ticket run directory, a DVC workspace or a prune-at-init output (finished or still running):
    one layout, one reader.

    Its settings are read as recorded, not validated: a report also reads runs made by other versions (their
    records are upgraded to today's names and units)."""
    from lth.runs.layout import Layout
    from lth.runs.params import read_yaml
    from lth.runs.records import read_record

    layout = Layout(path)
    at_init = {p.stem: files.read_json(p) for p in sorted(layout.at_init_dir.glob("*.json"))}
    sparse = {p.stem: files.read_json(p) for p in sorted(layout.sparse_train_dir.glob("*.json"))}
    if layout.is_workspace:
        params = flatten(read_yaml(layout.params_file))
        declared = set(declared_rounds(params))  # stale files of removed rounds are ignored
        keys = [key for key in layout.finished_round_keys() if key in declared]
        methods = params.get("prune_at_init.methods") or ()
        at_init = {m: payload for m, payload in at_init.items() if m in methods}
        sparse = {m: payload for m, payload in sparse.items() if m in (params.get("sparse_train.methods") or ())}
    elif layout.settings_file.is_file():
        params = flatten(files.read_json(layout.settings_file).get("settings", {}))
        keys = layout.finished_round_keys()
    else:  # only `lth prune-at-init` / `lth sparse-train` results: their settings are recorded beside them
        params = flatten(next(iter(at_init.values()), {}).get("run", {}).get("settings", {})
                         or next(iter(sparse.values()), {}).get("made_with", {}).get("settings", {}))
        keys = []
    records = [read_record(layout.round_metrics(key)) for key in keys]
    compaction = (files.read_json(layout.compact_summary).get("rounds", [])  # written by `lth compact ROOT`
                  if layout.compact_summary.is_file() else [])

    def load_mask(trial: int, r: int):
        mask = layout.trial_file(layout.round_dir(f"r{r:02d}", "mask"), trial)
        return files.load_tensors(mask, "mask") if mask.is_file() else None

    folder = layout.experiment_metrics("stability").parent
    stability = [files.read_json(p) for p in sorted(folder.glob("stability*.json"))]
    curves = [files.read_json(p) for p in sorted(folder.glob("transfer-curve-*.json"))]
    if layout.is_workspace and "experiments.transfer_domains.targets" in params:
        domains = layout.experiment_metrics("transfer_domains")
        curves += [files.read_json(domains)] if domains.is_file() else []
    name = path.resolve().name or str(path)
    spec = files.read_json(layout.prepared_spec) if layout.prepared_spec.is_file() else None
    spec = spec if isinstance(spec, dict) else None
    return RunData(name, params, records, load_mask, input_shape=_input_shape(spec, params), compaction=compaction,
                   test_size=spec.get("test_size") if spec else None,
                   at_init=_at_init_results(payload for payload in at_init.values()),
                   stability=_stability_results(stability), transfer_curves=_transfer_curves(curves),
                   sparse_train=_sparse_rows(sparse.values()))


def _sparse_rows(payloads: Iterable[Any]) -> list[dict]:
    """The summary rows of sparse-training results (one per remaining, distribution and method)."""
    return [row for payload in payloads if isinstance(payload, dict) for row in payload.get("summary", [])
            if isinstance(row, dict) and "method" in row]


def _input_shape(spec: Optional[Mapping[str, Any]], params: Mapping[str, Any]) -> Optional[tuple[int, ...]]:
    """The example shape of a run's data: its spec file's (data/prepared/spec.json, read by the caller), else the
    registry's (older runs), else unknown."""
    from lth.datasets import DATASETS

    if spec is not None:
        return tuple(spec.get("input_shape", ())) or None
    spec = DATASETS.get(str(params.get("dataset")))
    return tuple(spec.input_shape) if spec is not None else None


def _at_init_results(payloads: Iterable[dict]) -> list[dict]:
    from lth.runs.records import upgrade_at_init

    return [upgrade_at_init(result) for payload in payloads for result in payload.get("results", [])]


def _stability_results(found: Iterable[Any]) -> list[dict]:
    from lth.runs.records import upgrade_stability

    return [upgrade_stability(s) for s in found if isinstance(s, dict) and "rewinds" in s]


def _transfer_curves(found: Iterable[Any]) -> list[dict]:
    """Transfer curves, one per target: a `transfer --rounds` result as it is, the pipeline's per target."""
    curves = []
    for payload in found:
        if isinstance(payload, dict) and isinstance(payload.get("targets"), dict):
            curves += [c for c in payload["targets"].values() if isinstance(c, dict) and "rounds" in c]
        elif isinstance(payload, dict) and "rounds" in payload and "dense" in payload:
            curves.append(payload)
    return curves


def is_at_init_output(path: Path) -> bool:
    """A folder written by `lth prune-at-init --out` or `lth sparse-train --out DIR/metrics/sparse_train/NAME.json`
    (it has no settings.json or params.yaml)."""
    from lth.runs.layout import Layout

    return any(Layout(path).at_init_dir.glob("*.json")) or any(Layout(path).sparse_train_dir.glob("*.json"))


def declared_rounds(params: Mapping[str, Any]) -> list[str]:
    """The pipeline's rounds in (flat) params: r00, the dense round, then every `rounds.rNN.prev` key."""
    return ["r00", *sorted(k.split(".")[1] for k in params if re.fullmatch(r"rounds\.r\d{2,}\.prev", k))]


def in_git(repo: str) -> bool:
    """Whether `repo` lies in a git repository (where DVC keeps its experiments)."""
    here = Path(repo).resolve()
    return any((folder / ".git").exists() for folder in (here, *here.parents))


def experiment_rows(repo: str) -> list[dict]:
    """`dvc.api.exp_show` of `repo`: one flat row (params and metrics) per experiment, baseline and workspace."""
    import dvc.api

    if not in_git(repo):
        raise LthError(f"'{repo}' is not in a git repository, where DVC keeps its experiments: run this in the "
                       "project's clone (or give --repo)")
    try:
        return dvc.api.exp_show(repo=repo)
    except Exception as exc:  # dvc raises its own types for "not a DVC repo", "not a git repo", ...
        raise LthError(f"cannot list DVC experiments in '{repo}': {exc}") from None


def experiment_names(repo: str) -> dict[str, str]:
    """Every DVC experiment of `repo` (and its baseline): name -> revision."""
    return {row.get("Experiment") or row["rev"]: row["rev"] for row in experiment_rows(repo)
            if row.get("rev") != "workspace"}


class _Revision:
    """The files of one revision of a DVC repository, git-tracked or in DVC's cache, read through one opened
    `dvc.repo.Repo` (what `dvc.api.read` opens afresh for every file: each opening parses dvc.yaml and
    dvc.lock again, most of the time of a report over experiments)."""

    def __init__(self, repo: str, rev: str) -> None:
        self.repo, self.rev = repo, rev
        self._fs: Any = None

    def read(self, path: str, mode: str = "r") -> Any:
        """The file's text (or bytes with mode "rb"); FileNotFoundError when it is not there at the revision
        (or its DVC output is not in the local cache)."""
        if self._fs is None:
            from dvc.fs.dvc import DVCFileSystem
            from dvc.repo import Repo

            try:
                opened = Repo.open(self.repo, rev=self.rev, subrepos=True, uninitialized=True)
            except Exception as exc:  # dvc's own types: not a DVC repository, unknown revision, ...
                raise LthError(f"cannot read revision {self.rev} of '{self.repo}' through DVC: {exc}") from None
            self._fs = DVCFileSystem(repo=opened, subrepos=True)
        try:
            with self._fs.open(self._fs.from_os_path(path), mode=mode) as handle:
                return handle.read()
        except Exception as exc:  # not there, or DVC's own errors for an output missing from the cache, ...
            raise FileNotFoundError(path) from exc

    def json(self, path: Path) -> Optional[Any]:
        """A JSON file of the revision, None when it is not there (a stage not run at that revision)."""
        try:
            return json.loads(self.read(str(path)))
        except FileNotFoundError:
            return None

    def present(self, paths: Iterable[Path]) -> list[Any]:
        """The JSON files among `paths` that the revision has, in order."""
        return [payload for payload in map(self.json, paths) if payload is not None]


def from_experiment(repo: str, name: str, rev: str) -> RunData:
    """One DVC experiment (or git revision): its params and round metrics at its revision."""
    import yaml

    from lth.runs.layout import Layout
    from lth.runs.params import yaml_loader
    from lth.runs.records import upgrade

    workspace = Layout(Path("."))
    revision = _Revision(repo, rev)
    try:  # as DVC wrote it, YAML 1.2 (as `dvc.api.params_show` reads it)
        params = flatten(yaml.load(revision.read("params.yaml"), Loader=yaml_loader()) or {})  # noqa: S506 - safe
    except (FileNotFoundError, yaml.YAMLError) as exc:
        raise LthError(f"experiment '{name}' has no readable params.yaml at its revision {rev}: {exc}") from None
    records = [upgrade(payload) for payload in revision.present(map(workspace.round_metrics, declared_rounds(params)))]
    at_init = _at_init_results(
        revision.present(map(workspace.at_init_metrics, params.get("prune_at_init.methods") or ())))
    sparse = revision.present(map(workspace.sparse_train_metrics, params.get("sparse_train.methods") or ()))

    def experiment(name: str, key: str) -> list:
        """Experiment `name`'s metrics at that revision (one JSON payload), when its params group is there."""
        return revision.present([workspace.experiment_metrics(name)]) if key in params else []

    stability = _stability_results(experiment("stability", "experiments.stability.round"))
    curves = _transfer_curves(experiment("transfer_domains", "experiments.transfer_domains.targets"))
    spec = revision.json(workspace.prepared_spec)
    if spec is not None:
        input_shape, test_size = tuple(spec["input_shape"]), spec.get("test_size")
    else:  # no spec at that revision (or not in the cache): the registry's, where it knows the dataset
        input_shape, test_size = _input_shape(None, params), None

    def load_mask(trial: int, r: int):
        target = str(workspace.trial_file(workspace.round_dir(f"r{r:02d}", "mask"), trial))
        try:
            blob = revision.read(target, mode="rb")
        except FileNotFoundError:  # not in the local cache: the report simply has no mask picture for it
            return None
        return _masks_from_bytes(blob, f"{target} at {name}")

    return RunData(name, params, sorted(records, key=lambda rec: rec["round"]), load_mask, input_shape=input_shape,
                   at_init=at_init, stability=stability, transfer_curves=curves, test_size=test_size,
                   sparse_train=_sparse_rows(sparse))


def _masks_from_bytes(blob: bytes, where: str):
    """A mask file read through DVC, verified like any other; errors name the file in the repository."""
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".pt") as handle:
        handle.write(blob)
        handle.flush()
        try:
            return files.load_tensors(handle.name, "mask")
        except LthError as exc:
            raise LthError(str(exc).replace(handle.name, where)) from None


def resolve(sources: Iterable[str], repo: str = ".", all_experiments: bool = False) -> list[RunData]:
    """Turn command-line sources into runs: a path is a run directory, a DVC workspace or a prune-at-init output,
    else a DVC experiment."""
    runs: list[RunData] = []
    experiments: Optional[dict[str, str]] = None
    for source in sources:
        path = Path(source)
        if (path / "settings.json").is_file() or (path / "params.yaml").is_file() or is_at_init_output(path):
            runs.append(from_results(path))
        elif not path.exists() and ("/" in source or source.startswith(".")):  # a path, not an experiment name
            raise LthError(f"{source} does not exist: give a find-ticket run directory, a DVC workspace, a "
                           "prune-at-init output or a DVC experiment name")
        else:
            what = (f"'{source}' is neither a find-ticket run directory (no settings.json), a DVC workspace "
                    f"(no params.yaml), a prune-at-init output (no metrics/prune_at_init/) nor a DVC experiment "
                    f"of '{repo}'")
            if experiments is None:
                try:
                    experiments = experiment_names(repo)
                except LthError as exc:
                    raise LthError(f"{what}: {exc}") from None
            if source not in experiments:
                raise LthError(f"{what}; experiments there: {', '.join(experiments) or 'none'}")
            runs.append(from_experiment(repo, source, experiments[source]))
    if all_experiments:
        experiments = experiments if experiments is not None else experiment_names(repo)
        chosen = {run.name for run in runs}
        runs += [from_experiment(repo, name, rev) for name, rev in experiments.items() if name not in chosen]
    if not runs:
        raise LthError("nothing to report: give a run directory, a DVC workspace or experiment names "
                       "(or --all-experiments)")
    for run in runs:
        if not run.records and not run.at_init:
            raise LthError(f"'{run.name}' has no finished round (nor pruning-at-init result) yet: nothing to report")
    label_runs(runs)
    return runs


def label_runs(runs: list[RunData]) -> None:
    """Label each run by the params that differ between the runs ('criterion=movement, seed=1'); beside a
    prune-at-init output, whose params say nothing of IMP, every source is labelled by its folder's name."""
    names = [run.name for run in runs]
    if len(runs) > 1 and any(not run.records for run in runs) and len(set(names)) == len(runs):
        for run in runs:
            run.label = run.name
        return
    keys = sorted({k for run in runs for k in run.params})
    shared = [k for k in keys if all(k in run.params for run in runs)]  # a key only some sources have is no label
    differing = [k for k in shared if len({_hashable(run.params.get(k)) for run in runs}) > 1] or [
        k for k in keys if len({_hashable(run.params.get(k)) for run in runs}) > 1]
    differing = [k for k in differing if not k.startswith("rounds.")] or differing
    labels = [", ".join(f"{k}={_show(run.params.get(k))}" for k in differing) for run in runs]
    distinct = len(runs) > 1 and all(labels) and len(set(labels)) == len(runs)
    for run, label in zip(runs, labels):
        run.label = label if distinct else (f"{run.name}: {label}" if label else run.name)


def _hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True, default=str)


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)
