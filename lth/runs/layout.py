"""Where every artifact of a run lives: one layout, two roots.

The root is either a find-ticket run directory (`--out`) or the DVC workspace (the project root): the
same names and formats in both, so everything that reads results (report, experiments, compact,
summary) takes either without knowing which. Per-trial artifacts of one step are files `trial-T.pt`
inside one directory, so a DVC stage has one output per artifact whatever the number of trials.

    settings.json (run directory) | params.yaml (workspace)      the settings that made the run
    data/prepared/splits.pt                                      the dataset as tensors (workspace)
    data/prepared/spec.json                                      its task, example shape and number of outputs
    data/code/stages.NAME.txt                                    what code each stage runs (workspace)
    data/init/theta0/trial-T.pt                                  θ0
    data/init/rewind_point/trial-T.pt                            θk, the rewind point (θ0 when k = 0)
    data/rounds/rNN/{scores,mask,start,final}/trial-T.pt         a round's scores, mask, start, trained weights
    data/checkpoints/train-rNN.pt                                an unfinished round's training state
    metrics/rounds/rNN.json                                      every network of the round (written last)
    metrics/summary.json, per_round.json, networks.csv, by_sparsity.json, learning_curves.json, layer_sparsity.json
    metrics/experiments/NAME.json, data/experiments/NAME/        research experiments
    metrics/sparse_train/METHOD.json                             sparse training from scratch (static, SET, RigL)
    data/sparse_train/METHOD.json, METHOD.pt                     its update histories, curves and final masks
    metrics/prune_at_init/METHOD.json                            pruning at initialization, trained
    data/supermask/mask.pt, metrics/supermask.json               a learned supermask
    data/compact/rNN/trial-T.{pt2,json}, metrics/compact.json    compacted tickets (lth compact)
    report/                                                      lth report
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

SETTINGS_FILE = "settings.json"
PARAMS_FILE = "params.yaml"
_ROUND_METRICS = re.compile(r"^r(\d{2,})\.json$")


@dataclass(frozen=True)
class Layout:
    """Paths of one run's artifacts under `root`.

    `fingerprint` (run directories) is the settings fingerprint saved into every tensor file and checked
    when it is read back, so a file of another run is refused; the DVC workspace has none, because DVC
    already ties each output to the params that made it. `older` are fingerprints the same settings had
    under an earlier fingerprint formula (lth.runs.settings.RunSettings.fingerprints): files saved with
    them are this run's too.
    """

    root: Path
    fingerprint: Optional[str] = None
    older: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def readable(self) -> Optional[tuple[str, ...]]:
        """The fingerprints a tensor file of this run may carry (None: not checked)."""
        return None if self.fingerprint is None else (self.fingerprint, *self.older)

    @classmethod
    def of_run(cls, root: str | Path, settings) -> "Layout":  # noqa: ANN001 - lth.runs.settings.RunSettings
        """A run directory's layout, knowing every fingerprint its settings have had."""
        current, *older = settings.fingerprints()
        return cls(Path(root), current, tuple(older))

    # --- settings ----------------------------------------------------------------------------------------

    @property
    def settings_file(self) -> Path:
        return self.root / SETTINGS_FILE

    @property
    def params_file(self) -> Path:
        return self.root / PARAMS_FILE

    @property
    def is_workspace(self) -> bool:
        """A DVC workspace (params.yaml) rather than a find-ticket run directory (settings.json)."""
        return not self.settings_file.is_file() and self.params_file.is_file()

    # --- tensors ------------------------------------------------------------------------------------------

    @property
    def prepared(self) -> Path:
        return self.root / "data" / "prepared" / "splits.pt"

    @property
    def prepared_spec(self) -> Path:
        """What the data gives a model (task, example shape, outputs): read by every step that builds one."""
        return self.root / "data" / "prepared" / "spec.json"

    @property
    def theta0(self) -> Path:
        return self.root / "data" / "init" / "theta0"

    @property
    def rewind_point(self) -> Path:
        return self.root / "data" / "init" / "rewind_point"

    def round_dir(self, key: str, artifact: str) -> Path:
        """data/rounds/<key>/<artifact>/, artifact in scores | mask | start | final."""
        return self.root / "data" / "rounds" / key / artifact

    @staticmethod
    def trial_file(directory: Path, trial: int) -> Path:
        return directory / f"trial-{trial}.pt"

    def checkpoint(self, key: str) -> Path:
        """The unfinished train step's training state (lth.training.checkpoint): not a result, removed when done."""
        return self.root / "data" / "checkpoints" / f"train-{key}.pt"

    # --- metrics ------------------------------------------------------------------------------------------

    @property
    def metrics(self) -> Path:
        return self.root / "metrics"

    def round_metrics(self, key: str) -> Path:
        return self.metrics / "rounds" / f"{key}.json"

    def round_keys_on_disk(self) -> list[str]:
        """Every round with anything on disk (its metrics or its data/rounds folder), finished or not."""
        names = [p.name for p in (self.metrics / "rounds").glob("r*.json")]
        names += [f"{p.name}.json" for p in (self.root / "data" / "rounds").glob("r*") if p.is_dir()]
        found = {int(m.group(1)) for name in names if (m := _ROUND_METRICS.match(name))}
        return [f"r{n:02d}" for n in sorted(found)]

    def finished_round_keys(self) -> list[str]:
        """Every round whose metrics are written, in order ('r00', 'r01', ...)."""
        found = [m.group(1) for p in (self.metrics / "rounds").glob("r*.json") if (m := _ROUND_METRICS.match(p.name))]
        return [f"r{int(n):02d}" for n in sorted(found, key=int)]

    @property
    def summary(self) -> Path:
        return self.metrics / "summary.json"

    @property
    def round_summary(self) -> Path:
        """Every round's ticket and control metrics (the headline is `summary`)."""
        return self.metrics / "per_round.json"

    @property
    def networks_table(self) -> Path:
        """One row per network of every round (pandas-friendly)."""
        return self.metrics / "networks.csv"

    @property
    def sparsity_plot(self) -> Path:
        """Per round: the ticket's and each control's test metric against the weights remaining (`dvc plots`)."""
        return self.metrics / "by_sparsity.json"

    @property
    def curves_plot(self) -> Path:
        return self.metrics / "learning_curves.json"

    @property
    def layers_plot(self) -> Path:
        return self.metrics / "layer_sparsity.json"

    # --- beyond the rounds --------------------------------------------------------------------------------

    def experiment_metrics(self, name: str) -> Path:
        return self.metrics / "experiments" / f"{name}.json"

    @property
    def at_init_dir(self) -> Path:
        """metrics/prune_at_init/: pruning at initialization, one JSON per method."""
        return self.metrics / "prune_at_init"

    def at_init_metrics(self, method: str) -> Path:
        """metrics/prune_at_init/<method>.json: a pruning-at-init method trained beside its controls."""
        return self.at_init_dir / f"{method}.json"

    @property
    def sparse_train_dir(self) -> Path:
        """metrics/sparse_train/: sparse training from scratch, one JSON per method (the CLI's --out may be here)."""
        return self.metrics / "sparse_train"

    def sparse_train_metrics(self, method: str) -> Path:
        """metrics/sparse_train/<method>.json: networks trained sparse from scratch with one method."""
        return self.sparse_train_dir / f"{method}.json"

    def sparse_train_details(self, method: str) -> Path:
        """data/sparse_train/<method>.json: their mask update histories and learning curves."""
        return self.root / "data" / "sparse_train" / f"{method}.json"

    def sparse_train_masks(self, method: str) -> Path:
        """data/sparse_train/<method>.pt: their final masks ('i.layer': network i of the metrics file)."""
        return self.root / "data" / "sparse_train" / f"{method}.pt"

    def sparse_train_checkpoint(self, method: str) -> Path:
        """An unfinished sparse training's state (lth.training.checkpoint): not a result, removed when done."""
        return self.root / "data" / "checkpoints" / f"sparse-train-{method}.pt"

    def experiment_dir(self, name: str) -> Path:
        """Where an experiment keeps what it computes besides its metrics (e.g. a second ticket's run)."""
        return self.root / "data" / "experiments" / name

    @property
    def supermask(self) -> Path:
        return self.root / "data" / "supermask" / "mask.pt"

    @property
    def supermask_metrics(self) -> Path:
        return self.metrics / "supermask.json"

    def compact_file(self, key: str, trial: int, suffix: str) -> Path:
        """data/compact/<key>/trial-T.<suffix>: a compacted ticket (.pt2) and its measurements (.json)."""
        return self.root / "data" / "compact" / key / f"trial-{trial}.{suffix}"

    @property
    def compact_summary(self) -> Path:
        return self.metrics / "compact.json"

    @property
    def report(self) -> Path:
        return self.root / "report"

    def code_fingerprint(self, module: str) -> Path:
        """data/code/<module>.txt: the fingerprint of the code a stage module runs (stages/code.py; workspace)."""
        return self.root / "data" / "code" / f"{module}.txt"
