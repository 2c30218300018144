"""Image and summary metrics of the evaluation suites."""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

__all__ = ["mse", "ssim", "mean", "median", "share", "to_float_image", "png_b64", "from_png_b64"]


def to_float_image(img) -> np.ndarray:
    """Generator output ``(1, 3, H, W)`` in [-1, 1] or ``(H, W, 3)`` uint8 -> ``(H, W, 3)`` float64 in [0, 1].

    Tensors are first quantised to uint8 as a saved PNG would be
    (:func:`dragkit.utils.tensor_to_uint8`), so scores are those of the images a user sees.
    """
    if hasattr(img, "detach"):
        from ..utils import tensor_to_uint8

        img = tensor_to_uint8(img)
    a = np.asarray(img)
    if a.dtype == np.uint8:
        return a.astype(np.float64) / 255.0
    return a.astype(np.float64)


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error of two ``(H, W, 3)`` images in [0, 1]."""
    return float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))


def _gauss_filter(x: np.ndarray, sigma: float = 1.5, radius: int = 5) -> np.ndarray:
    """Separable Gaussian filter, 'valid' region only (as the reference SSIM with an 11 x 11 window)."""
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-(t ** 2) / (2 * sigma ** 2))
    k /= k.sum()
    h, w = x.shape[:2]
    if h < 2 * radius + 1 or w < 2 * radius + 1:
        raise ValueError(f"SSIM needs images of at least {2 * radius + 1} px, got {h}x{w}")
    y = sum(k[i] * x[i:h - 2 * radius + i] for i in range(2 * radius + 1))
    return sum(k[i] * y[:, i:w - 2 * radius + i] for i in range(2 * radius + 1))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity (Wang et al. 2004) of two ``(H, W, 3)`` images in [0, 1].

    Gaussian window 11 x 11, sigma 1.5, K1 = 0.01, K2 = 0.03, data range 1,
    averaged over the valid window positions and the channels (the
    reference implementation's settings).
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    vals = []
    for c in range(a.shape[2]):
        x, y = a[..., c], b[..., c]
        mx, my = _gauss_filter(x), _gauss_filter(y)
        sxx = _gauss_filter(x * x) - mx * mx
        syy = _gauss_filter(y * y) - my * my
        sxy = _gauss_filter(x * y) - mx * my
        m = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
        vals.append(m.mean())
    return float(np.mean(vals))


def _finite(xs: Iterable[float | None]) -> list[float]:
    return [float(x) for x in xs if x is not None and math.isfinite(float(x))]


def mean(xs: Iterable[float | None]) -> float | None:
    """Mean of the finite values (None when there are none)."""
    f = _finite(xs)
    return float(np.mean(f)) if f else None


def median(xs: Iterable[float | None]) -> float | None:
    """Median of the finite values (None when there are none)."""
    f = _finite(xs)
    return float(np.median(f)) if f else None


def share(flags: Sequence[bool]) -> float | None:
    """Fraction of True (None for an empty list)."""
    return float(sum(bool(f) for f in flags) / len(flags)) if len(flags) else None


def png_b64(arr: np.ndarray) -> str:
    """``(H, W, 3)`` uint8 -> base64 PNG text."""
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(arr, np.uint8)).save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def from_png_b64(text: str):
    """base64 PNG text -> PIL image."""
    import base64
    import io

    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(text))).convert("RGB")
