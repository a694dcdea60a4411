"""Stage `train@<round>`: train every trial's ticket (and, from r01, its control arms) in one batched step;
write the tickets' trained weights and the round's metrics."""

from __future__ import annotations

from stages._common import round_argument, run_stage
from stages._training import training_workspace


def main() -> None:
    from lth.runs.records import TICKET, headline, task_of
    from lth.steps import train

    key = round_argument(__doc__)
    ws = training_workspace("stages.train", ["--round", key])
    if ws is None:  # ran under torchrun, or this rank trained what rank 0 sent
        return
    record = train.execute(ws, key)
    ticket = next(n for n in record["networks"] if n["arm"] == TICKET)  # trial 0's
    early, end = headline(task_of(record)), headline(task_of(record), "end")
    print(f"{key}: {100 * record['weights_remaining']:.1f}% weights, {len(record['networks'])} networks, ticket "
          f"{end} {ticket[end]:.4g}, {early} {ticket[early]:.4g}")


if __name__ == "__main__":
    run_stage(main)
