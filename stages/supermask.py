"""Stage `supermask`: learn a supermask over frozen weights (Zhou et al.); metrics/supermask.json."""

from __future__ import annotations

from stages._common import run_stage, workspace


def main() -> None:
    from lth.core import files
    from lth.training.supermask import learn_supermask

    ws = workspace()
    result = learn_supermask(ws.settings.model, ws.data(), ws.params.supermask, ws.settings.seed)
    files.save_tensors(ws.layout.supermask, "mask", ws.settings.model, result["mask"])
    files.write_json(ws.layout.supermask_metrics, result["metrics"])
    m = result["metrics"]
    sampled = next(k for k in m if k.startswith("end_test_") and k.endswith("_sampled"))
    print(f"supermask: {sampled} {m[sampled]:.4g} with {100 * m['weights_remaining']:.1f}% of weights")


if __name__ == "__main__":
    run_stage(main)
