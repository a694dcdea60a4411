"""Stage `sparse_train@<method>`: networks trained sparse from scratch with one method (static, SET, RigL) at
every `sparse_train.remaining` and distribution; writes metrics/sparse_train/<method>.json and, in
data/sparse_train/, their update histories, learning curves and final masks."""

from __future__ import annotations

from stages._common import method_argument, run_stage, workspace


def main() -> None:
    from lth.experiments.sparse_train import stage_result

    method = method_argument(__doc__, "sparse_train")
    ws = workspace()
    result = stage_result(ws, method)
    for row in result["summary"]:
        print(f"{method} {row['distribution']} {100 * row['weights_remaining']:.2f}% weights: " + ", ".join(
            f"{k} {v:.4g}" for k, v in row.items() if k.startswith("early_stop_test_") and isinstance(v, float)
            and not k.endswith("_std")))


if __name__ == "__main__":
    run_stage(main)
