"""DiffAugment: differentiable augmentation for data-efficient GAN training.

Zhao et al., "Differentiable Augmentation for Data-Efficient GAN Training"
(NeurIPS 2020).  The same random transform family is applied to real and
generated images before the discriminator, and gradients flow through it to
the generator.  Policies: ``color`` (brightness, saturation, contrast),
``translation`` (shift by up to 1/8 of the size, zero padded), ``cutout``
(zero a random square of half the size).  Random numbers come from the
global torch generator, which the trainer seeds per iteration.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["diff_augment", "parse_policy", "POLICIES"]


def _brightness(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.rand(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device) - 0.5)


def _saturation(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (torch.rand(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device) * 2) + mean


def _contrast(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (torch.rand(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device) + 0.5) + mean


def _translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    n, _, h, w = x.shape
    sx, sy = int(h * ratio + 0.5), int(w * ratio + 0.5)
    tx = torch.randint(-sx, sx + 1, size=[n, 1, 1], device=x.device)
    ty = torch.randint(-sy, sy + 1, size=[n, 1, 1], device=x.device)
    gb, gx, gy = torch.meshgrid(
        torch.arange(n, device=x.device), torch.arange(h, device=x.device), torch.arange(w, device=x.device),
        indexing="ij",
    )
    gx = torch.clamp(gx + tx + 1, 0, h + 1)
    gy = torch.clamp(gy + ty + 1, 0, w + 1)
    xp = F.pad(x, [1, 1, 1, 1])
    return xp.permute(0, 2, 3, 1).contiguous()[gb, gx, gy].permute(0, 3, 1, 2)


def _cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ox = torch.randint(0, h + (1 - ch % 2), size=[n, 1, 1], device=x.device)
    oy = torch.randint(0, w + (1 - cw % 2), size=[n, 1, 1], device=x.device)
    gb, gx, gy = torch.meshgrid(
        torch.arange(n, device=x.device), torch.arange(ch, device=x.device), torch.arange(cw, device=x.device),
        indexing="ij",
    )
    gx = torch.clamp(gx + ox - ch // 2, min=0, max=h - 1)
    gy = torch.clamp(gy + oy - cw // 2, min=0, max=w - 1)
    mask = torch.ones(n, h, w, dtype=x.dtype, device=x.device)
    mask[gb, gx, gy] = 0
    return x * mask.unsqueeze(1)


POLICIES = {
    "color": (_brightness, _saturation, _contrast),
    "translation": (_translation,),
    "cutout": (_cutout,),
}


def parse_policy(spec: str | None) -> tuple[str, ...]:
    """``'translation,cutout,color'`` -> tuple of names; ``''``/``'none'``/None -> ()."""
    from ..errors import DragkitError

    if not spec or spec == "none":
        return ()
    names = tuple(s.strip() for s in spec.split(",") if s.strip())
    bad = [s for s in names if s not in POLICIES]
    if bad:
        raise DragkitError(f"unknown DiffAugment policy {bad[0]!r}; choose from {', '.join(POLICIES)}")
    return names


def diff_augment(x: torch.Tensor, policy: tuple[str, ...]) -> torch.Tensor:
    """Apply the policy to ``x (N, C, H, W)`` (differentiable w.r.t. ``x``)."""
    for name in policy:
        for fn in POLICIES[name]:
            x = fn(x)
    return x
