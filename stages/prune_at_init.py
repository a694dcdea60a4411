"""Stage `prune_at_init@<method>`: θ0 pruned by one method (SNIP, GraSP, SynFlow, magnitude, random), trained
beside its sanity controls; writes metrics/prune_at_init/<method>.json."""

from __future__ import annotations

from stages._common import method_argument, run_stage, workspace


def main() -> None:
    from lth.core import files
    from lth.experiments.prune_at_init import stage_result

    method = method_argument(__doc__, "prune_at_init")
    ws = workspace()
    result = stage_result(ws, method)
    files.write_json(ws.layout.at_init_metrics(method), result)
    print(f"{method}: {result['headline']} -> {ws.layout.at_init_metrics(method)}")


if __name__ == "__main__":
    run_stage(main)
