"""Low-level StyleGAN2 operations in pure PyTorch.

These are written from the StyleGAN2 / StyleGAN2-ADA papers and reproduce
the arithmetic of NVIDIA's reference ops (``upfirdn2d``, ``bias_act``,
``conv2d_resample``, ``modulated_conv2d``) so that NVIDIA weights render the
same images.  Everything is differentiable and device-agnostic; there are no
custom CUDA kernels, so no code path depends on a GPU.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

LRELU_ALPHA = 0.2
LRELU_GAIN = math.sqrt(2.0)


def setup_filter(taps: Sequence[float] = (1, 3, 3, 1)) -> torch.Tensor:
    """Return the normalised 2-D FIR filter ``outer(taps, taps) / sum``.

    Returns:
        Tensor ``(K, K)`` float32 whose entries sum to 1.
    """
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor,
    up: int = 1,
    down: int = 1,
    padding: Sequence[int] = (0, 0, 0, 0),
    gain: float = 1.0,
) -> torch.Tensor:
    """Upsample (zero insertion), pad, FIR-filter and downsample.

    Args:
        x: ``(N, C, H, W)``.
        f: ``(K, K)`` filter (symmetric filters make flipping moot, but the
            filter is flipped as in true convolution for exactness).
        up, down: integer factors.
        padding: ``(x0, x1, y0, y1)``; negative values crop.
        gain: overall gain; the filter is scaled by ``gain``.

    Returns:
        ``(N, C, H', W')`` with ``H' = (H*up + y0 + y1 - K + 1) // down``.
    """
    n, c, h, w = x.shape
    px0, px1, py0, py1 = padding
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    k = (f * gain).to(x.dtype).flip([0, 1])
    k = k[None, None].expand(c, 1, *k.shape)
    x = F.conv2d(x, k, groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """Upsample ``(N, C, H, W)`` by ``up`` with FIR filter ``f`` (NVIDIA padding)."""
    k = f.shape[0]
    p0 = (k + up - 1) // 2
    p1 = (k - up) // 2
    return upfirdn2d(x, f, up=up, padding=(p0, p1, p0, p1), gain=up * up)


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    act: str = "linear",
    gain: float | None = None,
    clamp: float | None = None,
) -> torch.Tensor:
    """Add a per-channel bias (dim 1), apply ``act``, scale by ``gain``, clamp.

    ``act`` is ``'linear'`` (default gain 1) or ``'lrelu'`` (slope 0.2,
    default gain sqrt(2)).  ``clamp`` limits the output to ``[-clamp, clamp]``.
    """
    if b is not None:
        shape = [1] * x.ndim
        shape[1] = -1
        x = x + b.reshape(shape).to(x.dtype)
    if act == "lrelu":
        x = F.leaky_relu(x, LRELU_ALPHA)
        default_gain = LRELU_GAIN
    elif act == "linear":
        default_gain = 1.0
    else:
        raise ValueError(f"unsupported activation {act!r}")
    g = default_gain if gain is None else gain
    if g != 1:
        x = x * g
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def cached_on_weight(w: torch.Tensor, name: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``fn(w)``, kept on ``w`` (attribute ``name``) until the weight changes (storage, version).

    A drag runs the same layers every step with the same weights; while a
    weight is trained (it takes a gradient) ``fn(w)`` is computed afresh.
    """
    if w.requires_grad and torch.is_grad_enabled():
        return fn(w)
    key = (w.data_ptr(), w._version, w.dtype, w.device)
    cached = getattr(w, name, None)
    if cached is None or cached[0] != key:
        with torch.no_grad():
            cached = (key, fn(w.detach()))
        setattr(w, name, cached)
    return cached[1]


def _transposed(w: torch.Tensor) -> torch.Tensor:
    """``w.transpose(0, 1)`` for ``conv_transpose2d``, contiguous, cached on a constant weight
    (the convolution would copy the transposed view on every call: 8 copies of 9 MB per 512 px
    drag step)."""
    return cached_on_weight(w, "_dragkit_transposed", lambda t: t.transpose(0, 1).contiguous())


def conv2d_resample(
    x: torch.Tensor,
    w: torch.Tensor,
    f: torch.Tensor | None = None,
    up: int = 1,
    padding: int = 0,
    groups: int = 1,
    down: int = 1,
) -> torch.Tensor:
    """2-D convolution with optional 2x FIR upsampling or downsampling, as NVIDIA's op.

    Args:
        x: ``(N, C_in, H, W)``.
        w: ``(C_out, C_in / groups, k, k)``.
        f: FIR filter for resampling (required when ``up > 1`` or ``down > 1``).
        up: 1 or 2.
        padding: symmetric padding of the convolution.
        down: 1 or 2 (not with ``up``): the input is padded and blurred with
            ``f``, then convolved with stride ``down``; a 1 x 1 kernel blurs
            and subsamples first, then convolves.

    Returns:
        ``(N, C_out, H*up, W*up)`` (or ``H/down, W/down``) for odd ``k`` and ``padding = k // 2``.
    """
    if down > 1:
        if up > 1:
            raise ValueError("conv2d_resample: up and down at once")
        assert f is not None
        fk, kw = f.shape[0], w.shape[-1]
        p0 = padding + (fk - down + 1) // 2
        p1 = padding + (fk - down) // 2
        if kw == 1:
            x = upfirdn2d(x, f, down=down, padding=(p0, p1, p0, p1))
            return F.conv2d(x, w, groups=groups)
        x = upfirdn2d(x, f, padding=(p0, p1, p0, p1))
        return F.conv2d(x, w, stride=down, groups=groups)
    if up == 1:
        return F.conv2d(x, w, padding=padding, groups=groups)
    assert f is not None
    c_out, c_in_g, kh, kw = w.shape
    fk = f.shape[0]
    p0 = padding + (fk + up - 1) // 2
    p1 = padding + (fk - up) // 2
    if kw == 1 and kh == 1:
        # 1x1 conv commutes with upsampling: convolve at low resolution.
        x = F.conv2d(x, w, groups=groups)
        return upfirdn2d(x, f, up=up, padding=(p0, p1, p0, p1), gain=up * up)
    # Transposed (strided) convolution followed by the FIR filter.
    if groups == 1:
        wt = _transposed(w)
    else:
        wt = w.reshape(groups, c_out // groups, c_in_g, kh, kw).transpose(1, 2)
        wt = wt.reshape(groups * c_in_g, c_out // groups, kh, kw)
    p0 -= kw - 1
    p1 -= kw - up
    pt = max(min(-p0, -p1), 0)
    x = F.conv_transpose2d(x, wt, stride=up, padding=pt, groups=groups)
    return upfirdn2d(x, f, padding=(p0 + pt, p1 + pt, p0 + pt, p1 + pt), gain=up * up)


def demodulation_coefs(weight_sq: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """Demodulation coefficients ``d = rsqrt(s^2 @ (sum_k W^2)^T + 1e-8)``.

    Args:
        weight_sq: ``(C_out, C_in)``, the convolution weight squared and
            summed over its kernel (constant while the weight is).
        styles: ``(N, C_in)``.

    Returns:
        ``(N, C_out)``: what each output filter of ``W * s`` is divided by to
        have unit norm (the same numbers as demodulating the modulated weight).
    """
    return (styles.square() @ weight_sq.t() + 1e-8).rsqrt()


def scaled_modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    dcoefs: torch.Tensor | None = None,
    up: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
) -> torch.Tensor:
    """The modulated convolution in its "scale the activations" form: ``conv(x * s, W) * d``.

    The same maths as convolving with the modulated, demodulated weights
    ``W * s * d``, but the convolution weight is the constant ``W``: no
    per-sample ``C_out x C_in x k x k`` tensor is built, and a backward pass
    needs no weight gradient.  Used for batches and for windowed runs.

    ``x (N, C_in, h, w)``, ``weight (C_out, C_in, k, k)`` (unscaled),
    ``styles (N, C_in)`` and ``dcoefs (N, C_out)`` (from
    :func:`demodulation_coefs`; None: no demodulation) give
    ``(N, C_out, h * up, w * up)``.
    """
    n, c_in = styles.shape
    x = x * styles.to(x.dtype).reshape(n, c_in, 1, 1)
    x = conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, padding=padding)
    if dcoefs is not None:
        x = x * dcoefs.to(x.dtype).reshape(n, -1, 1, 1)
    return x


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None = None,
    up: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
) -> torch.Tensor:
    """StyleGAN2 modulated convolution (grouped, "fused" form for one sample).

    Args:
        x: ``(N, C_in, H, W)``.
        weight: ``(C_out, C_in, k, k)``, unscaled.
        styles: ``(N, C_in)`` per-sample input-channel scales.
        noise: broadcastable to the output, added after the convolution.
        up: 1 or 2.
        demodulate: normalise each output filter to unit norm.

    Returns:
        ``(N, C_out, H*up, W*up)``.
    """
    n = x.shape[0]
    c_out, c_in, kh, kw = weight.shape
    w = weight.unsqueeze(0) * styles.reshape(n, 1, c_in, 1, 1)
    dcoefs = None
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
    if n > 1:
        # Batched form: scale activations instead of building N weight sets
        # (same maths, much cheaper for training batches).
        x = scaled_modulated_conv2d(x, weight, styles, dcoefs, up=up, padding=padding,
                                    resample_filter=resample_filter)
        return x + noise if noise is not None else x
    if dcoefs is not None:
        w = w * dcoefs.reshape(n, c_out, 1, 1, 1)
    x = x.reshape(1, n * c_in, *x.shape[2:])
    w = w.reshape(n * c_out, c_in, kh, kw)
    x = conv2d_resample(x, w.to(x.dtype), f=resample_filter, up=up, padding=padding, groups=n)
    x = x.reshape(n, c_out, *x.shape[2:])
    if noise is not None:
        x = x + noise
    return x


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale ``x`` to unit mean square along ``dim`` (pixel norm)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


# --------------------------------------------------------------------------
# Separable FIR resampling and the filtered leaky ReLU (StyleGAN3).


def _fir_up_last_axis(x: torch.Tensor, f: torch.Tensor, up: int, p0: int, p1: int) -> torch.Tensor:
    """One axis (the last) of ``upfirdn2d``: zero-insert by ``up``, pad ``(p0, p1)``, convolve with ``f``.

    Computed polyphase: output sample ``n = q * up + r`` is ``x`` convolved
    with the phase filter ``f[r::up]``, so no zero is ever multiplied.  The
    products are those of the zero-insertion form; only their summation
    order differs.
    """
    n, c, h, w = x.shape
    k = f.numel()
    out_len = w * up + p0 + p1 - k + 1
    if up == 1:
        x = F.pad(x, [p0, p1])
        wt = f.flip(0).reshape(1, 1, 1, k).expand(c, 1, 1, k)
        return F.conv2d(x, wt, groups=c)
    kp = -(-k // up)  # taps per phase
    fp = F.pad(f, [0, kp * up - k]).reshape(kp, up).t()  # fp[r, j] = f[j * up + r]
    wt = fp.flip(1).repeat(c, 1).reshape(c * up, 1, 1, kp)  # out channel c*up + r <- input channel c
    y = F.conv2d(F.pad(x, [kp - 1, kp - 1]), wt, groups=c)  # (N, C*up, H, W + kp - 1)
    q = w + kp - 1
    t = y.reshape(n, c, up, h, q).permute(0, 1, 3, 4, 2).reshape(n, c, h, q * up)
    # t[n] = sum_i x[i] f[n - i*up] (the full convolution); the padded,
    # filtered signal is t shifted by k - 1 - p0, zero outside.
    o = k - 1 - p0
    return F.pad(t, [-o, o + out_len - q * up])


def _fir_down_last_axis(x: torch.Tensor, f: torch.Tensor, down: int, p0: int, p1: int) -> torch.Tensor:
    """One axis (the last): pad ``(p0, p1)``, convolve with ``f``, keep every ``down``-th sample."""
    c = x.shape[1]
    k = f.numel()
    x = F.pad(x, [p0, p1])
    wt = f.flip(0).reshape(1, 1, 1, k).expand(c, 1, 1, k)
    return F.conv2d(x, wt, stride=(1, down), groups=c)


def fir_resample(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: int = 1,
    down: int = 1,
    padding: Sequence[int] = (0, 0, 0, 0),
    gain: float = 1.0,
) -> torch.Tensor:
    """NVIDIA's ``upfirdn2d`` for separable (1-D), full (2-D) or identity (None) filters.

    Upsample by zero insertion, pad (negative values crop), convolve with the
    filter, keep every ``down``-th sample.  A 1-D filter of ``K`` taps is
    applied along x, then along y, each pass scaled by ``sqrt(gain)`` (so the
    overall gain is ``gain``, as NVIDIA's op); a 2-D filter is applied once,
    scaled by ``gain``.  Upsampling is computed polyphase and downsampling
    with a strided convolution, which gives the same sums without the
    multiplications by inserted zeros or the discarded outputs.

    Args:
        x: ``(N, C, H, W)``.
        f: ``(K,)``, ``(K, K)`` or None (identity, ``1 x 1``).
        up, down: integer factors, not both > 1 with a 2-D filter.
        padding: ``(x0, x1, y0, y1)`` with respect to the upsampled image.

    Returns:
        ``(N, C, H', W')``, ``W' = (W * up + x0 + x1 - K + down) // down``
        (likewise ``H'``).
    """
    px0, px1, py0, py1 = (int(p) for p in padding)
    if f is None:
        if up == 1 and down == 1:
            x = F.pad(x, [px0, px1, py0, py1])
            return x * gain if gain != 1 else x
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    f = f.to(x.dtype)
    if f.ndim == 2:
        if up > 1:
            return upfirdn2d(x, f, up=up, down=down, padding=(px0, px1, py0, py1), gain=gain)
        c = x.shape[1]
        x = F.pad(x, [px0, px1, py0, py1])
        wt = (f * gain).flip([0, 1])[None, None].expand(c, 1, *f.shape)
        return F.conv2d(x, wt, stride=down, groups=c)
    if f.ndim != 1:
        raise ValueError(f"filter must be 1-D, 2-D or None, got shape {list(f.shape)}")
    f = f * math.sqrt(gain) if gain != 1 else f
    if up > 1:
        x = _fir_up_last_axis(x, f, up, px0, px1)
        x = _fir_up_last_axis(x.transpose(2, 3), f, up, py0, py1).transpose(2, 3)
        if down > 1:
            x = x[:, :, ::down, ::down]
        return x
    x = _fir_down_last_axis(x, f, down, px0, px1)
    return _fir_down_last_axis(x.transpose(2, 3), f, down, py0, py1).transpose(2, 3)


def filtered_lrelu(
    x: torch.Tensor,
    fu: torch.Tensor | None,
    fd: torch.Tensor | None,
    b: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: Sequence[int] = (0, 0, 0, 0),
    gain: float = LRELU_GAIN,
    slope: float = LRELU_ALPHA,
    clamp: float | None = None,
) -> torch.Tensor:
    """StyleGAN3's filtered leaky ReLU: bias, upsample, activate, downsample.

    ``x + b`` is upsampled by ``up`` with filter ``fu`` (gain ``up**2``, the
    given ``padding``), passed through ``leaky_relu(slope) * gain``, clamped to
    ``[-clamp, clamp]``, then low-pass filtered with ``fd`` and decimated by
    ``down`` (the arithmetic of NVIDIA's reference ``filtered_lrelu``, whose
    CUDA kernel is a faster form of the same).

    Args:
        x: ``(N, C, H, W)``.
        fu, fd: 1-D (separable) or 2-D filters, or None (identity).
        b: ``(C,)`` bias or None.
        padding: ``(x0, x1, y0, y1)`` of the upsampled image (negative crops).

    Returns:
        ``(N, C, H', W')`` with ``W' = (W * up + x0 + x1 - (Ku - 1) - (Kd - 1) + down - 1) // down``.
    """
    if b is not None:
        x = x + b.to(x.dtype).reshape(1, -1, 1, 1)
    x = fir_resample(x, fu, up=up, padding=padding, gain=up * up)
    x = F.leaky_relu(x, slope) if slope != 1 else x
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return fir_resample(x, fd, down=down)
