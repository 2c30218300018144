"""Image similarity: PSNR, SSIM and multi-scale SSIM (differentiable, pure PyTorch).

Images are ``(N, C, H, W)`` float tensors with a stated ``data_range``
(2.0 for the generator's [-1, 1], 255 for 8-bit pixels).  SSIM is Wang et
al. (2004): an 11 x 11 Gaussian window of sigma 1.5, K1 = 0.01, K2 = 0.03,
"valid" filtering (no padding; the border is left out, as scikit-image
does), averaged over channels and positions.  MS-SSIM (Wang et al. 2003)
uses their five weights, truncated and renormalised when the image is too
small for five scales (a 128 px image has four, a 32 px one two).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["psnr", "ssim", "ms_ssim", "psnr_uint8", "ssim_uint8", "MS_SSIM_WEIGHTS", "to_gray"]

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_WIN, _SIGMA, _K1, _K2 = 11, 1.5, 0.01, 0.03


def to_gray(x: torch.Tensor) -> torch.Tensor:
    """``(N, 3, H, W)`` -> ``(N, 1, H, W)`` luma (ITU-R BT.601 weights)."""
    w = x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image ``(N,)`` (infinite for identical images)."""
    mse = (x.float() - y.float()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(data_range**2 / mse)


def _window(channels: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    ax = torch.arange(_WIN, dtype=torch.float64) - (_WIN - 1) / 2
    g = torch.exp(-(ax**2) / (2 * _SIGMA**2))
    g = (g / g.sum()).to(device=device, dtype=dtype)
    return g.view(1, 1, 1, _WIN).expand(channels, 1, 1, _WIN).contiguous()


def _ssim_parts(x: torch.Tensor, y: torch.Tensor, data_range: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image mean SSIM and mean contrast-structure term ``(N,)``, ``(N,)``."""
    C = x.shape[1]
    g = _window(C, x.device, x.dtype)

    def blur(t: torch.Tensor) -> torch.Tensor:  # separable Gaussian, valid
        t = F.conv2d(t, g, groups=C)
        return F.conv2d(t, g.transpose(2, 3), groups=C)

    c1 = (_K1 * data_range) ** 2
    c2 = (_K2 * data_range) ** 2
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    lum = (2 * mx * my + c1) / (mx * mx + my * my + c1)
    return (lum * cs).flatten(1).mean(1), cs.flatten(1).mean(1)


def _check(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"expected two (N, C, H, W) tensors of one shape, got {list(x.shape)} and {list(y.shape)}")
    if min(x.shape[2:]) < _WIN:
        raise ValueError(f"images must be at least {_WIN} px a side for SSIM, got {list(x.shape[2:])}")


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Mean SSIM per image ``(N,)``; 1 = identical."""
    _check(x, y)
    return _ssim_parts(x, y, data_range)[0]


def ms_ssim_levels(size: int) -> int:
    """How many MS-SSIM scales fit an image of ``size`` px (each halves; the coarsest keeps one window)."""
    return max(1, min(len(MS_SSIM_WEIGHTS), int(math.floor(math.log2(size / _WIN))) + 1))


def ms_ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0, levels: int | None = None) -> torch.Tensor:
    """Multi-scale SSIM per image ``(N,)``; negative terms are clamped to 0 (so the powers stay real)."""
    _check(x, y)
    n = levels or ms_ssim_levels(min(x.shape[2:]))
    w = torch.tensor(MS_SSIM_WEIGHTS[:n], dtype=x.dtype, device=x.device)
    w = w / w.sum()
    vals = []
    for i in range(n):
        s, cs = _ssim_parts(x, y, data_range)
        vals.append((s if i == n - 1 else cs).clamp_min(1e-6))
        if i < n - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    v = torch.stack(vals, dim=1)  # (N, n)
    return torch.prod(v ** w[None], dim=1)


def _u8(a: np.ndarray) -> torch.Tensor:
    a = np.asarray(a)
    if a.dtype != np.uint8 or a.ndim != 3:
        raise ValueError(f"expected an (H, W, C) uint8 image, got {a.dtype} {list(a.shape)}")
    return torch.from_numpy(a.astype(np.float64)).permute(2, 0, 1)[None]


def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) of two ``(H, W, C)`` uint8 images."""
    return float(psnr(_u8(a), _u8(b), 255.0)[0])


def ssim_uint8(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two ``(H, W, C)`` uint8 images (channels averaged)."""
    return float(ssim(_u8(a), _u8(b), 255.0)[0])
