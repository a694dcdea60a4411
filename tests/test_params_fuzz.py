"""Property test: malformed params.yaml content never reaches the user as a traceback, only as LthError."""

from __future__ import annotations

import math

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lth.core.errors import LthError
from lth.runs.params import load_params

VALID = yaml.safe_load("""
model: lenet-300-100
dataset: mnist-5k
dataset_dir: data/datasets
seed: 0
criterion: large_final
mask1_action: reset
mask0_action: zero
rewind: 0it
trials: 1
controls: [reinit, random-prune]
device: auto
checkpoint_every: 2000it
train: {optimizer: adam, lr: 0.0012, batch_size: 60, duration: 50ep, momentum: 0.0, nesterov: false,
        weight_decay: 0.0, warmup: 0it, milestones: [], gamma: 0.1, eval_every: 100it}
prune: {method: layerwise, rates: {conv: 0.0, fc: 0.2, output: 0.1}}
supermask: {weights: signed_constant, lr: 0.1, batch_size: 60, duration: 50ep, init_prob: 0.5, rescale: true,
            eval_every: 1ep}
rounds: {r01: {prev: r00}, r02: {prev: r01}}
""")

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["50ep", "0it", "2ep100it", "-1it", "1e3", "adam", "global", "rewind", "r00", "nan", "inf",
                     "lenet-300-100", "vgg-19", "cifar-10", "cuda", "structured"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), inner, max_size=3)),
    max_leaves=6)


def paths(tree: dict, prefix: tuple = ()) -> list[tuple]:
    out = []
    for key, value in tree.items():
        out.append(prefix + (key,))
        if isinstance(value, dict):
            out += paths(value, prefix + (key,))
    return out


ALL_PATHS = paths(VALID)


@st.composite
def malformed(draw) -> dict:
    """The valid params with a few keys replaced by junk, deleted, or junk keys added next to them."""
    data = yaml.safe_load(yaml.safe_dump(VALID))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(ALL_PATHS))
        parent = data
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(values)
        elif action == "delete":
            parent.pop(path[-1], None)
        else:
            parent[draw(st.text(min_size=1, max_size=10))] = draw(values)
    return data


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=malformed())
def test_malformed_params_give_lth_errors_only(tmp_path, data):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    try:
        params = load_params(path)
    except LthError as exc:
        assert str(exc).strip() and "\n" not in str(exc).strip()  # one line
        return
    s = params.settings  # accepted: then it really is in range
    assert s.train.lr > 0 and math.isfinite(s.train.lr) and s.train.batch_size >= 1
    assert all(0 <= r < 1 for r in s.prune.rates.values()) and 0 <= s.seed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=40))
def test_any_text_as_params_yaml_is_an_lth_error_or_valid(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    try:
        load_params(path)
    except LthError:
        pass
