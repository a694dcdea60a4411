"""Stage `supermask`: learn a supermask over frozen weights (Zhou et al.); metrics/supermask.json."""

from __future__ import annotations

from stages._common import load_splits, run


def main() -> None:
    from lth.core import files as artifacts
    from lth.engine import layout as pipeline
    from lth.engine.params import load_params
    from lth.training.supermask import learn_supermask

    params = load_params()
    settings = params.settings
    result = learn_supermask(settings.model, load_splits(params.device), params.supermask, settings.seed)
    artifacts.save_tensors(pipeline.SUPERMASK, "mask", settings.model, result["mask"])
    artifacts.write_json(pipeline.SUPERMASK_METRICS, result["metrics"])
    m = result["metrics"]
    print(f"supermask: test acc {100 * m['test_acc_sampled']:.2f}% with {m['weights_remaining']:.1f}% of weights")


if __name__ == "__main__":
    run(main)
