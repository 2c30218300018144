"""Adam on the drag's latent, without ``torch.optim``.

``torch.optim.Adam``'s constructor imports ``torch._dynamo`` (4 s on this
project's 2-core machine, 13-29 s under load): the first drag of a process
paid it before its first step.  A drag optimises one tensor with Adam's
defaults, so this is the update written out: the same operations, in the
same order, as PyTorch's single-tensor Adam (betas 0.9 / 0.999, eps 1e-8,
no weight decay, no AMSGrad), so the steps are bit-identical to
``torch.optim.Adam([w], lr)`` on the CPU (``tests/test_adam.py``).
"""

from __future__ import annotations

import torch

__all__ = ["LatentAdam"]


class LatentAdam:
    """Adam for one tensor ``param``; :meth:`step` applies ``param.grad`` in place (no autograd)."""

    def __init__(self, param: torch.Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}")
        self.param, self.lr, self.betas, self.eps = param, float(lr), (float(betas[0]), float(betas[1])), float(eps)
        self.steps = 0
        self.exp_avg = torch.zeros_like(param, memory_format=torch.preserve_format)
        self.exp_avg_sq = torch.zeros_like(param, memory_format=torch.preserve_format)

    @torch.no_grad()
    def step(self) -> None:
        """One update from ``param.grad`` (nothing when it is ``None``)."""
        grad = self.param.grad
        if grad is None:
            return
        beta1, beta2 = self.betas
        self.steps += 1
        self.exp_avg.lerp_(grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step = float(self.steps)
        step_size = self.lr / (1 - beta1**step)
        denom = (self.exp_avg_sq.sqrt() / (1 - beta2**step) ** 0.5).add_(self.eps)
        self.param.addcdiv_(self.exp_avg, denom, value=-step_size)
