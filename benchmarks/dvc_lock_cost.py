"""What DVC does with dvc.lock at every stage, timed on this project's lock file: the YAML work whose cost
grows with the pipeline (each of the ~100 stages reads the lock and rewrites it whole).

    .venv/bin/python benchmarks/dvc_lock_cost.py [--repeats 5]

Per stage `dvc repro` loads the lock with ruamel's "safe" loader (C with ruamel.yaml.clib, pinned in
requirements.txt; pure Python without it) and rewrites it through a round-trip parse and dump (pure
Python: DVC keeps the file's layout). The script times the three on the committed dvc.lock, the safe load
both ways in the same run, and prints the ratio. Run it alone: a figure measured beside another job is void.
"""

from __future__ import annotations

import argparse
import io
import timeit
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def best_of(repeats: int, fn) -> float:
    return min(timeit.repeat(fn, number=1, repeat=repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from dvc.utils.serialize._yaml import _dump, parse_yaml_for_update
    from ruamel.yaml import YAML

    text = (REPO / "dvc.lock").read_text()
    c_loader = YAML(typ="safe")
    if not c_loader.Parser.__module__.startswith("ruamel.yaml.clib"):
        raise SystemExit("ruamel.yaml.clib is not installed: run `make` (requirements.txt pins it)")
    stages = len(c_loader.load(text)["stages"])
    safe_c = best_of(args.repeats, lambda: YAML(typ="safe").load(text))
    safe_py = best_of(args.repeats, lambda: YAML(typ="safe", pure=True).load(text))
    rt = best_of(args.repeats, lambda: parse_yaml_for_update(text, "dvc.lock"))
    tree = parse_yaml_for_update(text, "dvc.lock")
    dump = best_of(args.repeats, lambda: _dump(tree, io.StringIO()))
    print(f"dvc.lock: {len(text) / 1000:.0f} kB, {stages} stages; best of {args.repeats}")
    print(f"  safe load, C parser (ruamel.yaml.clib)  {safe_c:6.3f} s")
    print(f"  safe load, pure Python                  {safe_py:6.3f} s   ({safe_py / safe_c:.1f}x the C parser)")
    print(f"  round-trip parse for the rewrite         {rt:6.3f} s")
    print(f"  dump of the rewritten lock               {dump:6.3f} s")
    print(f"per stage the rewrite alone costs {rt + dump:.2f} s, about {(rt + dump) * stages / 60:.1f} min over "
          f"{stages} stages of a full `dvc repro`")


if __name__ == "__main__":
    main()
