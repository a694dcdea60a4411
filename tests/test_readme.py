"""The manual holds: README.md is a short manual whose links and `python -m lth` commands work, and the
examples of docs/extending.md ("Bring your own model and data", "Python API") run as written, in a fresh folder.

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

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "docs" / "extending.md"
SECTIONS = ("## Bring your own model and data", "## Python API")
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def section(text: str, title: str) -> str:
    start = text.index(title + "\n")
    end = text.find("\n## ", start + len(title))
    return text[start:end if end >= 0 else len(text)]


def blocks() -> list[tuple[str, str]]:
    text = EXAMPLES.read_text()
    return [(kind, body) for title in SECTIONS for kind, body in BLOCK.findall(section(text, title))]


def test_the_extending_sections_have_complete_examples():
    kinds = [kind for kind, _ in blocks()]
    assert kinds.count("python") >= 3 and kinds.count("bash") >= 2 and "yaml" in kinds
    files = [re.match(r"# ([\w./-]+\.py)", body).group(1) for kind, body in blocks() if kind == "python"]
    assert {"nets.py", "make_data.py", "api_example.py"} <= set(files)


@pytest.mark.heavy
def test_the_extending_examples_run(tmp_path):
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


# The manual: a short README that links to docs/, whose links and commands work.

README = REPO / "README.md"
FENCE = re.compile(r"^```.*?^```$", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\]\(([^()\s]+)\)")
COMMAND = re.compile(r"python -m lth((?:\s+[a-z][\w-]*)+)")


def manual_pages() -> list[Path]:
    return [README, *sorted((REPO / "docs").rglob("*.md"))]


def anchors(page: Path) -> set[str]:
    """The fragments GitHub gives a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    titles = re.findall(r"^#+ (.+)$", FENCE.sub("", page.read_text()), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-") for title in titles}


def test_the_readme_is_a_short_manual_that_starts_with_the_two_commands():
    lines = README.read_text().splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines (at most 300)"
    assert lines[0] == "```" and lines[1].startswith("make run") and lines[2].startswith("make test"), lines[:3]
    assert lines[3] == "```" and lines[5].startswith("# "), lines[3:6]  # then the title


def test_every_relative_link_of_the_manual_exists():
    broken = []
    for page in manual_pages():
        prose = re.sub(r"`[^`\n]*`", "", FENCE.sub("", page.read_text()))  # links in code are not links
        for target in LINK.findall(prose):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                continue
            path, _, fragment = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            if not resolved.exists():
                broken.append(f"{page.relative_to(REPO)}: {target} (no such file or folder)")
            elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
                broken.append(f"{page.relative_to(REPO)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def commands_shown(page: Path) -> set[tuple[str, ...]]:
    """The first two words after every `python -m lth` of a page (a line break between them included)."""
    return {tuple(words.split()[:2]) for words in COMMAND.findall(" ".join(page.read_text().split()))}


def test_every_lth_command_the_manual_shows_exists():
    """`python -m lth X --help` exits 0 for every command X that README.md or docs/ shows (`experiment
    transfer`, `datasets build` too)."""
    assert {("find-ticket",), ("report",)} <= {words[:1] for words in commands_shown(README)}
    shown = set().union(*map(commands_shown, manual_pages()))
    env = {**os.environ, "COLUMNS": "100"}

    def help_of(*command: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "lth", *command, "--help"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)

    failed, checked = [], {}
    for words in sorted(shown):
        first = words[0]
        if first not in checked:
            checked[first] = help_of(first)
            if checked[first].returncode:
                failed.append(f"python -m lth {first}: {checked[first].stderr.strip()[-300:]}")
        group = "COMMAND [ARGS]" in " ".join(checked[first].stdout.split())  # a group: the next word is a command
        if group and len(words) > 1:
            result = help_of(*words)
            if result.returncode:
                failed.append(f"python -m lth {' '.join(words)}: {result.stderr.strip()[-300:]}")
    assert not failed, "\n".join(failed)
