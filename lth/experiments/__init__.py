"""Research experiments built on the core's train / score / mask / rewind functions, one module each.

Every experiment is a CLI command (`python -m lth experiment NAME --help`, lth/experiments/cli.py), a DVC
stage `exp_NAME` (`python -m stages.experiment --name NAME`) that reads a finished round's artifacts and
writes metrics/experiments/NAME.json, with its settings under `experiments.NAME` in params.yaml.

Their settings (the params.yaml groups) and the checks `lth check-params` and every stage run live in
settings.py, without torch; registry.py names the experiments' modules.
"""
