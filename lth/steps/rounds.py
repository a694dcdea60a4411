"""The lottery-ticket procedure in one place: which steps make a round, and find-ticket's resumable runner.

A round rNN (N >= 1) is score -> mask -> rewind -> train: the previous round's trained weights are
scored by the criterion, the lowest-scored survivors are pruned, the survivors are rewound by the
mask-1 action (the pruned ones set by the mask-0 action), and the new network is trained beside its
control arms. Round r00 trains the dense network from θ0 (step init); the rewind point θk is its own
step. Each step is a module of lth.steps: `run_rounds` chains them in one process, skipping
every step whose outputs exist, and each DVC stage runs exactly one of them on the workspace.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from lth.core import files, interrupt
from lth.core.config import differences
from lth.core.errors import LthError
from lth.core.lock import RunLock
from lth.core.durations import Step
from lth.runs.layout import Layout
from lth.runs.params import DENSE_ROUND, round_key
from lth.runs.run import Reporter, Run, Shape, SilentReporter
from lth.runs.settings import RunSettings, check_data
from lth.steps import init, mask, rewind, rewind_point, score, summary, train
from lth.steps.mask import check_oneshot_round

ROUND_STEPS = (score, mask, rewind, train)  # a pruning round; the dense round r00 only trains


def steps_of(key: str) -> tuple:
    """The step modules of round `key`, in order."""
    return (train,) if key == DENSE_ROUND else ROUND_STEPS


def _done(outputs: list[Path]) -> bool:
    return all(path.is_file() for path in outputs)


def run_round(run: Run, key: str) -> dict:
    """Round `key`, skipping the steps already done (their outputs exist); returns its record."""
    for step in steps_of(key):
        if not _done(step.outputs(run, key)):
            interrupt.check(f"before step {step.__name__.rsplit('.', 1)[-1]} of round {key}")
            step.execute(run, key)
    return run.record(key)


def run_rounds(
    settings: RunSettings,
    rounds: int,
    out: str | Path,
    splits,
    reporter: Optional[Reporter] = None,
    trainer: Optional[Callable[..., list]] = None,
    checkpoint_every: str = "0it",
) -> list[dict]:
    """The dense round r00 and `rounds` pruning rounds r01..rNN of every trial into the run directory `out`.

    `splits` is the dataset already on the training device. Every step whose outputs exist is skipped and
    every input of a step is read back from disk, so a resumed run computes exactly what an uninterrupted
    one does. Returns the round records. `trainer` trains a round's networks (lth.training.distributed
    passes one that shares the work with other processes). Within a round the training state is saved
    every `checkpoint_every` steps ('0it': only when interrupted, lth.core.interrupt), so a resumed round
    continues where it stopped. The directory is locked (lth.core.lock) for the run.
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise LthError(f"bad rounds {rounds!r}: the number of pruning rounds after the dense round r00 must be "
                       ">= 1")
    if Path(out).exists() and not Path(out).is_dir():
        raise LthError(f"the run directory {out} is a file; give --out a directory (new or of this run)")
    settings.validate()
    if settings.prune.schedule == "oneshot":
        check_oneshot_round(rounds)
    check_data(settings, splits)
    Step.parse(checkpoint_every)
    layout = Layout.of_run(out, settings)
    keys = [round_key(i) for i in range(1, rounds + 1)]
    run = Run(settings, layout, keys, checkpoint_every=checkpoint_every, splits=splits, trainer=trainer,
              reporter=reporter or SilentReporter())
    with RunLock(layout.root):
        check_settings_file(layout, settings, data_checksum(settings.dataset, splits))
        Shape.of(splits, settings.dataset).write(layout.prepared_spec)  # for the run's readers: no data needed
        for step in (init, rewind_point):
            if not _done(step.outputs(run)):
                step.execute(run)
        records = []
        for key in [DENSE_ROUND, *keys]:
            finished = layout.round_metrics(key).is_file()
            if not finished:
                interrupt.check(f"before round {key}: " + (f"rounds r00-{records[-1]['round']:02d} are finished "
                                                           "and saved" if records else "nothing trained yet"))
            record = run.record(key) if finished else run_round(run, key)
            run.reporter.round_finished(record, skipped=finished)
            records.append(record)
        summary.execute(run, [DENSE_ROUND, *keys])
    return records


def data_checksum(dataset: str, splits) -> Optional[str]:  # noqa: ANN001 - lth.datasets.Splits
    """A checksum of a researcher's own data (a file, a callable, arrays), whose name does not pin its contents;
    None for a registered dataset, which is the same everywhere."""
    from lth.datasets import DATASETS

    if dataset in DATASETS and DATASETS[dataset].source is None:
        return None
    return files.tensor_checksum({key: value for key, value in splits.state().items() if key.endswith(("_x", "_y"))})


def check_settings_file(layout: Layout, settings: RunSettings, data: Optional[str] = None) -> None:
    """Refuse to continue a run directory made with other settings (or, for your own data, other data); record
    ours in a new one. A directory recorded with an older fingerprint of the same settings (an earlier lth) is
    this run: its settings file is brought up to date, its tensor files stay readable (Layout.older)."""
    wanted = {"fingerprint": settings.fingerprint(), "settings": settings.to_dict(), **({"data": data} if data else {})}
    if layout.settings_file.exists():
        existing = files.read_json(layout.settings_file)
        if data and existing.get("data") not in (None, data):
            raise LthError(f"{layout.root} holds a run on other data: '{settings.dataset}' has changed since it began "
                           "(its checksum differs); use another --out, or restore the data it was made with")
        if existing.get("fingerprint") in settings.fingerprints()[1:]:
            files.write_json(layout.settings_file, wanted)
        elif existing.get("fingerprint") != wanted["fingerprint"]:
            diffs = differences(existing.get("settings", {}), wanted["settings"])
            raise LthError(
                f"{layout.root} holds a run made with other settings ({'; '.join(diffs) or 'unreadable settings'}); "
                "use another --out or delete that directory"
            )
        return
    files.write_json(layout.settings_file, wanted)
