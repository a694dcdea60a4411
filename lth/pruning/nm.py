"""N:M sparsity: in every group of M consecutive input weights of a layer, exactly N are kept.

Why: unstructured tickets save no time on today's hardware, but a 2:4 pattern (2 of every 4) is what
NVIDIA's sparse tensor cores (Ampere and later) run at up to twice the dense speed; PyTorch exposes it
as `torch.sparse.to_sparse_semi_structured` (`lth compact --nm` measures it). N:M pruning keeps the
lottery-ticket procedure (score, keep the best survivors, rewind) and only changes what competes: the
weights of one group, not all the weights of a layer.

Layout: a weight in PyTorch's (out, in, ...) layout is viewed as (out, in_size), in_size = prod(shape[1:])
(in_features, or in_channels x kh x kw of a conv), and every row is cut into in_size / M groups of M
consecutive positions. Torch is imported inside the functions, so `parse_nm` serves settings validation
(and `lth --help`) without loading it.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Mapping

from lth.core.errors import LthError

if TYPE_CHECKING:
    import torch
    from torch import Tensor

_PATTERN = re.compile(r"\s*(\d+)\s*:\s*(\d+)\s*")


def parse_nm(text: str) -> tuple[int, int]:
    """'2:4' -> (2, 4): N kept in every M consecutive input weights, 1 <= N < M."""
    match = _PATTERN.fullmatch(str(text))
    if match is None:
        hint = (" (YAML reads an unquoted 2:4 as the number 124: quote it, '2:4')"
                if isinstance(text, int) and not isinstance(text, bool) else "")
        raise LthError(f"bad N:M '{text}': write two whole numbers N:M with N kept of every M, e.g. 2:4{hint}")
    n, m = int(match.group(1)), int(match.group(2))
    if n < 1:
        raise LthError(f"bad N:M '{text}': N must be at least 1 (a group keeps at least one weight), e.g. 2:4")
    if n >= m:
        raise LthError(f"bad N:M '{text}': N must be smaller than M, e.g. 2:4")
    return n, m


def _input_size(shape: tuple[int, ...]) -> int:
    """Inputs per output unit of a weight of `shape`: in_features, or in_channels x kh x kw."""
    return math.prod(shape[1:])


def check_nm_shapes(shapes: Mapping[str, tuple[int, ...]], m: int) -> None:
    """Every layer's input size is a multiple of `m`; otherwise the first that is not is named."""
    for name, shape in shapes.items():
        size = _input_size(tuple(shape))
        if size % m:
            raise LthError(f"N:M pruning with M={m}: layer '{name}' has input size {size} (weight shape "
                           f"{tuple(shape)}), not a multiple of {m}; pick an M that divides every pruned layer's "
                           "input size, or set that layer kind's rate to 0")


def _groups(tensor: "Tensor", m: int) -> "Tensor":
    """`tensor` (out, in, ...) as (out, groups, m)."""
    size = _input_size(tuple(tensor.shape))
    if size % m:
        raise LthError(f"N:M pruning with M={m}: a weight of shape {tuple(tensor.shape)} has input size {size}, "
                       f"not a multiple of {m}")
    return tensor.reshape(tensor.shape[0], size // m, m)


def nm_keep(scores: "Tensor", mask: "Tensor", keep: int, m: int) -> "Tensor":
    """Bool mask shaped like `mask`: in each group of `m` consecutive inputs, the `keep` best-scored weights
    among those `mask` keeps (all of a group's survivors when it has fewer). Ties: the lowest index wins."""
    import torch

    alive = _groups(mask.detach().cpu().bool(), m)
    values = torch.nan_to_num(_groups(scores.detach().cpu().float(), m), nan=float("-inf"))
    by_score = torch.sort(values, dim=-1, descending=True, stable=True).indices
    # survivors before the pruned, each in score order (a pruned weight never takes a survivor's place)
    by_alive = torch.sort(alive.gather(-1, by_score).to(torch.int8), dim=-1, descending=True, stable=True).indices
    order = by_score.gather(-1, by_alive)
    chosen = torch.zeros_like(alive)
    chosen.scatter_(-1, order[..., : max(0, min(keep, m))], True)
    return (chosen & alive).reshape(mask.shape).to(mask.device)


def nm_random(shape: tuple[int, ...], n: int, m: int, generator: "torch.Generator") -> "Tensor":
    """A seeded random bool mask of `shape` with exactly `n` kept in every group of `m` consecutive inputs."""
    import torch

    size = _input_size(tuple(shape))
    if size % m:
        raise LthError(f"N:M with M={m}: shape {tuple(shape)} has input size {size}, not a multiple of {m}")
    ranks = torch.rand(shape[0], size // m, m, generator=generator).argsort(-1).argsort(-1)
    return (ranks < n).reshape(shape)


def group_counts(mask: "Tensor", m: int) -> "Tensor":
    """Kept weights per group of `m` consecutive inputs: (out, in_size / m) integers."""
    return _groups(mask.bool(), m).sum(-1)
