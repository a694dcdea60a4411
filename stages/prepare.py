"""Stage `prepare`: the dataset as normalised tensors in data/prepared/splits.pt (read once, loaded fast)."""

from __future__ import annotations

from stages._common import run, workspace


def main() -> None:
    from lth.steps import prepare

    ws = workspace()
    print(prepare.run(ws, ws.params.dataset_dir))


if __name__ == "__main__":
    run(main)
