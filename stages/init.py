"""Stage `init`: θ0 of every trial (seeded) and the dense masks: round r00's starting point."""

from __future__ import annotations

from stages._common import run_stage, workspace


def main() -> None:
    from lth.steps import init

    init.execute(workspace())


if __name__ == "__main__":
    run_stage(main)
