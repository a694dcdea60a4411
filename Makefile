# Two entry points: `make run` (the default experiment, offline) and `make test`.
# Each creates .venv first when it is missing or when the requirements changed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test find-ticket bench clean-venv

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

# The default experiment as a DVC pipeline (LeNet-300-100 on mnist-5k, 20 rounds), offline.
run: $(STAMP)
	$(PY) -m lth check-params  # a clear error for a bad params.yaml before DVC's own
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" dvc repro

# The default experiment's rounds in one process, without DVC (no experiments, supermask or report).
find-ticket: $(STAMP)
	$(PY) -m lth find-ticket lenet-300-100 mnist-5k data/datasets --rounds 20 --trials 3 --control reinit --control random-prune

test: $(STAMP)
	$(PY) -m pytest -q -n 2  # two workers: the DVC-pipeline tests are mostly process start-up, so they overlap well

bench: $(STAMP)
	$(PY) benchmarks/train_speed.py
	$(PY) benchmarks/batched_speed.py

clean-venv:
	rm -rf $(VENV)
