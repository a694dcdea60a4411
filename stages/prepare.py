"""Stage `prepare`: the dataset as normalised tensors in data/prepared/splits.pt (read once, loaded fast)."""

from __future__ import annotations

from stages._common import run_stage, workspace


def main() -> None:
    from lth.steps import prepare

    ws = workspace()
    print(prepare.execute(ws, ws.params.dataset_dir))


if __name__ == "__main__":
    run_stage(main)
