"""Classification: integer class labels, cross-entropy, accuracy (Frankle & Carbin's only task)."""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from lth.core.errors import LthError
from lth.tasks.base import Metric, Task


class Classification(Task):
    name = "classification"
    description = "integer class labels; cross-entropy loss; accuracy"
    metrics = (Metric("acc", "accuracy", higher_is_better=True, percent=True),)
    error = Metric("error", "error", higher_is_better=False, percent=True)  # 1 - accuracy
    barrier_threshold = 0.02  # two percentage points of test error (Frankle et al. 2020)

    def targets(self, y: Tensor, where: str) -> Tensor:
        if y.is_floating_point():
            whole = bool(torch.isfinite(y).all()) and bool((y == y.round()).all())
            hint = " (they are whole numbers: save them as an integer array)" if whole else " (or use task regression)"
            raise LthError(f"{where}: float labels ({y.dtype}) with task classification, which needs integer class "
                           f"labels{hint}")
        if y.dtype == torch.bool or y.is_complex():
            raise LthError(f"{where}: labels of dtype {y.dtype} are not class indices")
        if y.dim() != 1:
            raise LthError(f"{where}: class labels must be one per example, shape (N,), got {tuple(y.shape)}")
        if y.numel() and int(y.min()) < 0:
            raise LthError(f"{where}: class labels must be >= 0, found {int(y.min())}")
        return y.to(torch.int64)

    def num_outputs(self, targets: list[Tensor]) -> int:
        return max((int(y.max()) + 1 for y in targets if y.numel()), default=1)

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(outputs, targets, reduction="none")

    def mean_loss(self, outputs: Tensor, targets: Tensor, temperature: float = 1.0) -> Tensor:
        return F.cross_entropy(outputs if temperature == 1.0 else outputs / temperature, targets)

    @staticmethod
    def losses_and_output_grad(outputs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Autograd's own ops for the mean cross-entropy of each network's batch, forward and backward."""
        log_p = torch.log_softmax(outputs, -1)
        target = targets.unsqueeze(-1)
        losses = log_p.gather(-1, target).squeeze(-1).mean(1).neg_()
        # d(mean loss)/d(log-probabilities) is -1/B at each target; then autograd's own log-softmax backward
        d = torch.zeros_like(log_p).scatter_(-1, target, -1.0 / targets.shape[1])
        return losses, torch.ops.aten._log_softmax_backward_data(d, log_p, -1, log_p.dtype)

    def zero_sums(self, count: int, outputs: int, device: torch.device) -> dict[str, Tensor]:
        return {"loss": torch.zeros(count, device=device, dtype=torch.float64),
                "correct": torch.zeros(count, device=device, dtype=torch.long)}

    def add_sums(self, sums: dict[str, Tensor], outputs: Tensor, targets: Tensor) -> None:
        count = outputs.shape[0]
        target = targets.expand(count, -1)
        sums["loss"] += F.cross_entropy(outputs.flatten(0, 1), target.flatten(), reduction="none").view(count, -1).sum(1)
        sums["correct"] += (outputs.argmax(dim=2) == target).sum(1)

    def finish(self, sums: Mapping[str, Tensor], targets: Tensor) -> dict[str, Tensor]:
        n = max(len(targets), 1)
        return {"loss": sums["loss"] / n, "acc": sums["correct"].double() / n}  # float64: 0.96 prints as 0.96

    def error_of(self, metrics: Mapping[str, float]) -> float:
        return 1.0 - metrics["acc"]

    def relevance(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return outputs.gather(1, targets.unsqueeze(1)).sum()  # the true class's logit (one-hot selection)

    def reference_samples(self, targets: Tensor, per_class: int, seed: int) -> Tensor:
        order = torch.randperm(len(targets), generator=torch.Generator().manual_seed(seed))
        shuffled = targets.cpu()[order]
        classes = int(shuffled.max()) + 1 if len(shuffled) else 0
        return torch.cat([order[shuffled == c][:per_class] for c in range(classes)]) if classes else order[:0]


TASK = Classification()
