"""The README's examples run as written: "Bring your own model and data" and "Python API", in a fresh folder.

A ```python block whose first line names a file (`# nets.py`) is that file; ```bash blocks are run line by
line in order (with this environment's python); the ```yaml block `# params.yaml (excerpt)` goes into a copy
of the project's params.yaml, which `lth check-params` must accept (its sources cover the example's files).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ("## Bring your own model and data", "## Python API")
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def section(text: str, title: str) -> str:
    start = text.index(title + "\n")
    end = text.find("\n## ", start + len(title))
    return text[start:end if end >= 0 else len(text)]


def blocks() -> list[tuple[str, str]]:
    readme = (REPO / "README.md").read_text()
    return [(kind, body) for title in SECTIONS for kind, body in BLOCK.findall(section(readme, title))]


def test_the_readme_sections_have_complete_examples():
    kinds = [kind for kind, _ in blocks()]
    assert kinds.count("python") >= 3 and kinds.count("bash") >= 2 and "yaml" in kinds
    files = [re.match(r"# ([\w./-]+\.py)", body).group(1) for kind, body in blocks() if kind == "python"]
    assert {"nets.py", "make_data.py", "api_example.py"} <= set(files)


def test_the_readme_examples_run(tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "COLUMNS": "100", "LTH_WARM": "0"}
    outputs = []
    for kind, body in blocks():
        first = body.splitlines()[0]
        if kind == "python":
            name = re.match(r"# ([\w./-]+\.py)", first).group(1)
            (tmp_path / name).write_text(body)
        elif kind == "bash":
            for line in body.splitlines():
                command = line.split("  #")[0].strip()
                if not command or command.startswith("#"):
                    continue
                result = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True,
                                        timeout=600)
                assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
                outputs.append(result.stdout)
        elif kind == "yaml":
            assert first == "# params.yaml (excerpt)"
            params = yaml.safe_load((REPO / "params.yaml").read_text())
            params.update(yaml.safe_load(body))
            (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
            result = subprocess.run([sys.executable, "-m", "lth", "check-params"], cwd=tmp_path, env=env,
                                    capture_output=True, text=True, timeout=300)
            assert result.returncode == 0 and "is valid: nets.py:mlp on data/mine.npz" in " ".join(
                result.stdout.split()), result.stderr

    joined = "\n".join(outputs)
    assert "regression" in joined and "test RMSE" in joined  # find-ticket on the example's data
    assert (tmp_path / "runs" / "mine" / "report" / "by_sparsity.png").is_file()
    assert "early_stop_test_acc_mean" in joined and "kept" in joined  # the API example's prints
    assert (tmp_path / "runs" / "api" / "metrics" / "rounds" / "r03.json").is_file()
    assert (tmp_path / "runs" / "api-file" / "settings.json").is_file()
