"""Results shared through a DVC remote: what one machine computed, another pulls instead of recomputing.

Machine A runs the (tiny) pipeline and `dvc push --run-cache`s to a remote (a local directory here;
S3/GCS/SSH for users). Machine B is a fresh git clone: after `dvc pull --run-cache`, `dvc repro`
runs no stage, and stages missing from the lock file are restored from the pulled run-cache.
"""

from __future__ import annotations

import re

from conftest import repro_copy
from test_pipeline import ran, sh


def restored(output: str) -> set[str]:
    return set(re.findall(r"Stage '([^']+)' is cached - skipping run", output))


def test_second_clone_reruns_nothing_after_pulling_the_run_cache(tiny_repro, tmp_path):
    a = repro_copy(tiny_repro, tmp_path / "a")  # machine A ran the whole pipeline (first-repro.txt)
    stages = ran((tiny_repro / "first-repro.txt").read_text())
    assert {"prepare", "train_dense", "train@r01", "summary", "report", "exp_transfer"} <= stages
    sh(a, "dvc", "remote", "add", "-d", "shared", str(tmp_path / "remote"))
    sh(a, "git", "add", ".dvc/config")
    sh(a, "git", "commit", "-qm", "shared remote")
    sh(a, "dvc", "push", "--run-cache")

    b = tmp_path / "b"
    sh(tmp_path, "git", "clone", "-q", str(a), str(b))
    sh(b, "git", "config", "user.name", "lth tests")
    sh(b, "git", "config", "user.email", "tests@lth.invalid")
    mask = "data/rounds/r01/mask/trial-0.pt"
    assert not (b / mask).exists()  # git holds the lock and metrics, not the checkpoints and masks
    sh(b, "dvc", "pull", "--run-cache")
    again = sh(b, "dvc", "repro")
    assert ran(again) == set(), again
    assert (b / mask).read_bytes() == (a / mask).read_bytes()
    assert (b / "report" / "by_sparsity.png").read_bytes() == (a / "report" / "by_sparsity.png").read_bytes()
    assert sh(b, "dvc", "status").strip().endswith("Data and pipelines are up to date.")

    # the pulled run-cache on its own: without the lock file, stages come back from it instead of running
    # (DVC keeps no run-cache entry for stages with `cache: false` outputs, like train's round JSON)
    sh(b, "git", "rm", "-q", "dvc.lock")
    sh(b, "rm", "-rf", "data")
    replay = sh(b, "dvc", "repro", "prepare", "init")
    assert ran(replay) == set() and restored(replay) == {"code", "prepare", "init"}, replay
    theta0 = "data/init/theta0/trial-0.pt"
    assert (b / theta0).read_bytes() == (a / theta0).read_bytes()
