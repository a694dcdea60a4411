"""Regression: float targets (one or more per example), mean squared error, RMSE and R².

Targets are used as given (scale them to order one, as for any network); a network has one output per
target column. RMSE is the square root of the mean squared error over examples and outputs, in the
targets' units; R² is 1 - SSE / SST per output (SST around the split's own mean), averaged over outputs,
so predicting the mean scores 0 and a perfect fit 1.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from lth.core.errors import LthError
from lth.tasks.base import Metric, Task

REFERENCE_SAMPLES = 100  # examples the LRP criterion explains (classification: 10 per class)


class Regression(Task):
    name = "regression"
    description = "float targets; mean squared error; RMSE and R²"
    metrics = (Metric("rmse", "RMSE", higher_is_better=False), Metric("r2", "R²", higher_is_better=True))
    error = Metric("rmse", "RMSE", higher_is_better=False)
    barrier_threshold = None  # no published convention for a regression loss barrier

    def targets(self, y: Tensor, where: str) -> Tensor:
        if y.dtype == torch.bool or y.is_complex():
            raise LthError(f"{where}: targets of dtype {y.dtype} are not numbers")
        if y.dim() not in (1, 2):
            raise LthError(f"{where}: regression targets must be (N,) or (N, outputs), got {tuple(y.shape)}")
        y = y.to(torch.float32) if not y.is_floating_point() or y.dtype == torch.float16 else y
        return y.unsqueeze(1) if y.dim() == 1 else y

    def num_outputs(self, targets: list[Tensor]) -> int:
        return int(targets[0].shape[1])

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return F.mse_loss(outputs, targets.to(outputs.dtype), reduction="none").mean(-1)

    def mean_loss(self, outputs: Tensor, targets: Tensor, temperature: float = 1.0) -> Tensor:
        return F.mse_loss(outputs, targets.to(outputs.dtype))

    def zero_sums(self, count: int, outputs: int, device: torch.device) -> dict[str, Tensor]:
        return {"loss": torch.zeros(count, device=device, dtype=torch.float64),
                "sse": torch.zeros(count, outputs, device=device, dtype=torch.float64)}

    def add_sums(self, sums: dict[str, Tensor], outputs: Tensor, targets: Tensor) -> None:
        squared = (outputs - targets.to(outputs.dtype).unsqueeze(0)).square()  # (N, B, K)
        sums["loss"] += squared.mean(-1).sum(1)
        sums["sse"] += squared.sum(1)

    def finish(self, sums: Mapping[str, Tensor], targets: Tensor) -> dict[str, Tensor]:
        n = max(len(targets), 1)
        y = targets.double()
        sst = (y - y.mean(0)).square().sum(0)  # (K,)
        sse = sums["sse"]
        explained = torch.where(sst > 0, 1 - sse / sst.clamp_min(1e-300), torch.zeros_like(sse))
        return {"loss": sums["loss"] / n, "rmse": (sse.sum(1) / (n * sse.shape[1])).sqrt(), "r2": explained.mean(1)}

    def error_of(self, metrics: Mapping[str, float]) -> float:
        return metrics["rmse"]

    def relevance(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return outputs.sum()  # the prediction itself

    def reference_samples(self, targets: Tensor, per_class: int, seed: int) -> Tensor:
        order = torch.randperm(len(targets), generator=torch.Generator().manual_seed(seed))
        return order[:REFERENCE_SAMPLES]


TASK = Regression()
