"""DragGAN's two halves as pure functions: motion supervision and point tracking.

Conventions (the whole of :mod:`dragkit.drag` uses them):

* Points are ``[x, y]`` image pixels of the generator's output image (x to
  the right, y down, pixel centres at integers).  Point tensors are
  ``(N, 2)`` float, column 0 = x, column 1 = y.
* ``F`` is the output of one synthesis block, ``(1, C, R, R)`` for an image
  of ``H x H`` pixels.  The paper resizes it bilinearly to ``H x H``; we
  never build that resized map.  Its value at integer pixel ``p`` is the
  bilinear sample of ``F`` at feature coordinate ``u = (p + 0.5) * R / H - 0.5``
  (clamped to ``[0, R - 1]``), which is exactly what
  ``F.interpolate(F, (H, H), mode='bilinear', align_corners=False)[..., y, x]``
  gives.  Values between pixels (``F(q + d)``) are the bilinear interpolation
  of the resized map between its four neighbouring pixels (clamped to the
  image), which is what the authors' ``grid_sample(..., align_corners=True)``
  on the resized map gives inside the image.
* A feature tensor may be a *crop* of the block output: ``origin = (fx0, fy0)``
  is the feature-map index of its top-left element.  Every index a function
  needs must lie inside the crop; :func:`needed_feature_box` says which.
* ``Omega1(p, r1)`` = integer pixels ``q = round(p) + o`` with ``|o| < r1``
  (strict, as in the paper and the authors' code), clipped to the image.
  ``Omega2(p, r2)`` = integer pixels ``q = round(p) + o`` with
  ``|o_x|, |o_y| <= r2``, clipped to the image.  Tracked handles are
  therefore always integer pixels, as in the authors' code.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

__all__ = [
    "disk_offsets",
    "square_offsets",
    "pixel_to_feature",
    "sample_features",
    "motion_supervision_loss",
    "mask_loss",
    "track_points",
    "needed_feature_box",
    "stop_distance_for",
]

Origin = Sequence[int]


def disk_offsets(r1: float) -> torch.Tensor:
    """Integer offsets ``o`` with ``|o| < r1`` (strict), ``(K, 2)`` int64 ``[dx, dy]``.

    ``r1 <= 1`` gives only the centre ``(0, 0)``.  Row-major order (y, then x).
    """
    if not math.isfinite(r1) or r1 <= 0:
        raise ValueError(f"r1 must be a positive number of pixels, got {r1!r}")
    k = int(math.ceil(r1))
    r = torch.arange(-k, k + 1)
    dy, dx = torch.meshgrid(r, r, indexing="ij")
    keep = (dx * dx + dy * dy).double() < float(r1) ** 2
    out = torch.stack([dx[keep], dy[keep]], dim=1)
    if out.shape[0] == 0:  # pragma: no cover - r1 > 0 always keeps (0, 0)
        out = torch.zeros(1, 2, dtype=torch.long)
    return out


def square_offsets(r2: int) -> torch.Tensor:
    """Integer offsets of the square ``|dx|, |dy| <= r2``, ``(K, 2)`` int64 ``[dx, dy]``, row-major."""
    if int(r2) != r2 or r2 < 0:
        raise ValueError(f"r2 must be a non-negative integer number of pixels, got {r2!r}")
    r = torch.arange(-int(r2), int(r2) + 1)
    dy, dx = torch.meshgrid(r, r, indexing="ij")
    return torch.stack([dx.reshape(-1), dy.reshape(-1)], dim=1)


def pixel_to_feature(coords: torch.Tensor, image_size: int, feature_size: int) -> torch.Tensor:
    """Image pixel coordinates -> feature-map coordinates (``align_corners=False``).

    ``u = (p + 0.5) * R / H - 0.5``, clamped below at 0 (as PyTorch's bilinear
    resize does).  Works elementwise on any float tensor.
    """
    u = (coords.to(torch.float64) + 0.5) * (feature_size / image_size) - 0.5
    return u.clamp(min=0.0, max=float(feature_size - 1))


def _as_chw(feat: torch.Tensor) -> torch.Tensor:
    if feat.ndim == 4:
        if feat.shape[0] != 1:
            raise ValueError(f"expected one feature map (1, C, h, w), got {list(feat.shape)}")
        feat = feat[0]
    if feat.ndim != 3:
        raise ValueError(f"expected a feature map (1, C, h, w), got {list(feat.shape)}")
    return feat


def _resized_at_pixels(
    feat: torch.Tensor, px: torch.Tensor, py: torch.Tensor, image_size: int, feature_size: int,
    origin: Origin = (0, 0),
) -> torch.Tensor:
    """Resized-map values at integer pixels ``(px, py)`` (any equal shapes S) -> ``(C, *S)``."""
    f = _as_chw(feat)
    c, h, w = f.shape
    shape = px.shape
    u = pixel_to_feature(px.reshape(-1), image_size, feature_size)
    v = pixel_to_feature(py.reshape(-1), image_size, feature_size)
    x0 = u.floor().long()
    y0 = v.floor().long()
    ax = (u - x0).to(f.dtype)
    ay = (v - y0).to(f.dtype)
    x1 = (x0 + 1).clamp(max=feature_size - 1)
    y1 = (y0 + 1).clamp(max=feature_size - 1)
    ox, oy = int(origin[0]), int(origin[1])
    x0, x1, y0, y1 = x0 - ox, x1 - ox, y0 - oy, y1 - oy
    if bool((x0 < 0).any() or (y0 < 0).any() or (x1 >= w).any() or (y1 >= h).any()):
        raise ValueError("a sample position lies outside the feature crop")
    flat = f.reshape(c, h * w)
    dev = f.device
    ax, ay = ax.to(dev), ay.to(dev)

    def g(yy: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
        return flat.index_select(1, (yy * w + xx).to(dev))

    top = g(y0, x0) * (1 - ax) + g(y0, x1) * ax
    bot = g(y1, x0) * (1 - ax) + g(y1, x1) * ax
    return (top * (1 - ay) + bot * ay).reshape(c, *shape)


def sample_features(
    feat: torch.Tensor, points: torch.Tensor, image_size: int, *, feature_size: int | None = None,
    origin: Origin = (0, 0),
) -> torch.Tensor:
    """Features of the bilinearly resized map at (possibly fractional) pixels.

    Args:
        feat: ``(1, C, h, w)`` block output (or a crop of it, see ``origin``).
        points: ``(..., 2)`` float ``[x, y]`` image pixels.
        image_size: H, the image resolution in pixels.
        feature_size: R, the block resolution (default: ``feat``'s width,
            i.e. an uncropped map).
        origin: ``(fx0, fy0)`` feature index of the crop's top-left element.

    Returns:
        ``(..., C)``, differentiable w.r.t. ``feat``.  At integer pixels this
        equals ``F.interpolate(feat, (H, H), mode='bilinear',
        align_corners=False)[0, :, y, x]``; between pixels it is the bilinear
        interpolation of that resized map (positions clamped to the image).
    """
    f = _as_chw(feat)
    R = int(feature_size if feature_size is not None else f.shape[2])
    pts = points.to(torch.float64)
    lead = pts.shape[:-1]
    pts = pts.reshape(-1, 2).clamp(0, image_size - 1)
    p0 = pts.floor()
    a = (pts - p0).to(f.dtype)
    x0 = p0[:, 0].long()
    y0 = p0[:, 1].long()
    x1 = (x0 + 1).clamp(max=image_size - 1)
    y1 = (y0 + 1).clamp(max=image_size - 1)
    xs = torch.stack([x0, x1, x0, x1])
    ys = torch.stack([y0, y0, y1, y1])
    vals = _resized_at_pixels(f, xs, ys, image_size, R, origin)  # (C, 4, M)
    ax, ay = a[:, 0].to(f.device), a[:, 1].to(f.device)
    wts = torch.stack([(1 - ax) * (1 - ay), ax * (1 - ay), (1 - ax) * ay, ax * ay])  # (4, M)
    out = (vals * wts).sum(dim=1)  # (C, M)
    return out.t().reshape(*lead, f.shape[0])


def _check_points(points: torch.Tensor, name: str) -> torch.Tensor:
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2) [x, y], got {list(points.shape)}")
    return points.to(torch.float64)


def motion_supervision_loss(
    feat: torch.Tensor,
    handles: torch.Tensor,
    targets: torch.Tensor,
    r1: float,
    image_size: int,
    *,
    feature_size: int | None = None,
    origin: Origin = (0, 0),
) -> torch.Tensor:
    """DragGAN's motion supervision term.

    ``L = sum_i mean_{q in Omega1(p_i), c} | F(q).detach() - F(q + d_i) |``
    with ``d_i = (t_i - p_i) / |t_i - p_i|``.  The stop-gradient on ``F(q)``
    makes the patch move *towards* the target.  Points with ``|t_i - p_i| <= 1``
    contribute nothing.  Reduction as in the authors' code: mean L1 over the
    disk and the channels for each point, summed over points.

    Args:
        feat: ``(1, C, h, w)`` block output or a crop of it (``origin``); must
            cover :func:`needed_feature_box` of the handles.
        handles: ``(N, 2)`` current handle positions ``[x, y]`` (pixels).
        targets: ``(N, 2)`` targets ``[x, y]``.
        r1: disk radius in pixels (strict ``<``).
        image_size: H in pixels.

    Returns:
        Scalar tensor (0-dim), differentiable w.r.t. ``feat``; an exact zero
        (still attached to ``feat``) when every point is within 1 px.
    """
    f = _as_chw(feat)
    R = int(feature_size if feature_size is not None else f.shape[2])
    p = _check_points(handles, "handles")
    t = _check_points(targets, "targets")
    if p.shape != t.shape:
        raise ValueError("handles and targets must have the same shape")
    diff = t - p
    dist = diff.norm(dim=1)
    active = dist > 1
    if not bool(active.any()):
        return f.sum() * 0.0
    p, diff, dist = p[active], diff[active], dist[active]
    d = diff / dist[:, None]  # (n, 2) unit steps
    centre = p.round().long()  # (n, 2)
    offs = disk_offsets(r1)  # (K, 2)
    q = centre[:, None, :] + offs[None, :, :]  # (n, K, 2) integer pixels
    valid = ((q >= 0) & (q < image_size)).all(dim=2)  # (n, K)
    q = q.clamp(0, image_size - 1)
    # F(q + d): the four pixel neighbours of q + d share floor(d) and weights.
    fl = d.floor()
    frac = (d - fl).to(f.dtype)  # (n, 2)
    base = q + fl.long()[:, None, :]
    corners = torch.tensor([[0, 0], [1, 0], [0, 1], [1, 1]])
    nb = (base[:, None, :, :] + corners[None, :, None, :]).clamp(0, image_size - 1)  # (n, 4, K, 2)
    fx, fy = frac[:, 0].to(f.device), frac[:, 1].to(f.device)
    wts = torch.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], dim=1)  # (n, 4)
    vals_q = _resized_at_pixels(f, q[..., 0], q[..., 1], image_size, R, origin)  # (C, n, K)
    vals_nb = _resized_at_pixels(f, nb[..., 0], nb[..., 1], image_size, R, origin)  # (C, n, 4, K)
    moved = (vals_nb * wts[None, :, :, None]).sum(dim=2)  # (C, n, K)
    err = (vals_q.detach() - moved).abs()  # (C, n, K)
    vmask = valid.to(f.device, f.dtype)
    per_point = (err * vmask[None]).sum(dim=(0, 2)) / (vmask.sum(dim=1) * f.shape[0])
    return per_point.sum()


def _axis_weights(image_size: int, feature_size: int):
    u = pixel_to_feature(torch.arange(image_size, dtype=torch.float64), image_size, feature_size)
    i0 = u.floor().long()
    i1 = (i0 + 1).clamp(max=feature_size - 1)
    return i0, i1, (u - i0)


class _FixedRegionL1(torch.autograd.Function):
    """``sum |resize(D)| over the fixed pixels`` and its exact gradient, a few rows at a time.

    ``resize`` is the bilinear ``align_corners=False`` resize to ``H x H``.
    The forward pass builds the resized rows it needs in chunks of about
    4 M values and accumulates the gradient w.r.t. ``D`` on the way (it is
    ``resize^T(sign(resize(D)) * fixed)``), so no full-resolution tensor
    ever exists, in the forward or the backward pass.
    """

    @staticmethod
    def forward(ctx, diff: torch.Tensor, fixed: torch.Tensor, image_size: int) -> torch.Tensor:  # type: ignore[override]
        C, R, _ = diff.shape
        H = image_size
        iy0, iy1, wy = _axis_weights(H, R)
        ix0, ix1, wx = _axis_weights(H, R)
        dev, dt = diff.device, diff.dtype
        iy0, iy1, ix0, ix1 = iy0.to(dev), iy1.to(dev), ix0.to(dev), ix1.to(dev)
        wy, wx = wy.to(dev, dt), wx.to(dev, dt)
        fixed = fixed.to(dev)
        rows_needed = torch.nonzero(fixed.any(dim=1)).flatten()
        total = diff.new_zeros(())
        grad = torch.zeros_like(diff)
        chunk = max(1, 4_000_000 // max(C * H, 1))
        for start in range(0, rows_needed.numel(), chunk):
            ys = rows_needed[start : start + chunk]
            a0, a1, b = iy0[ys], iy1[ys], wy[ys][None, :, None]
            rows = diff.index_select(1, a0) * (1 - b) + diff.index_select(1, a1) * b  # (C, n, R)
            full = rows.index_select(2, ix0) * (1 - wx) + rows.index_select(2, ix1) * wx  # (C, n, H)
            keep = fixed.index_select(0, ys).to(dt)[None]  # (1, n, H)
            total = total + (full.abs() * keep).sum()
            g_full = full.sign() * keep
            g_rows = torch.zeros_like(rows)
            g_rows.index_add_(2, ix0, g_full * (1 - wx))
            g_rows.index_add_(2, ix1, g_full * wx)
            grad.index_add_(1, a0, g_rows * (1 - b))
            grad.index_add_(1, a1, g_rows * b)
        ctx.save_for_backward(grad)
        return total

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return g * grad, None, None


def mask_loss(
    feat: torch.Tensor, feat0: torch.Tensor, mask: torch.Tensor, image_size: int,
) -> torch.Tensor:
    """The region-fixing term ``mean |(F - F0) * (1 - M)|`` over ``(C, H, W)`` (no lambda).

    ``F`` and ``F0`` are the resized (``H x H``) maps, as in the paper; the
    term is computed exactly from the block-resolution maps, row chunk by row
    chunk, without building the resized map (see :class:`_FixedRegionL1`).
    The mean divides by ``C * H * W`` as the authors' ``F.l1_loss`` over the
    full resized map does.

    Args:
        feat, feat0: ``(1, C, R, R)`` full block outputs (current and initial;
            ``feat0`` gets no gradient).
        mask: ``(H, W)`` bool, True = flexible.  Returns an exact zero when
            the mask does not have both values (the term is off then).
    """
    f = _as_chw(feat)
    f0 = _as_chw(feat0)
    if tuple(mask.shape) != (image_size, image_size):
        raise ValueError(f"mask must be ({image_size}, {image_size}), got {tuple(mask.shape)}")
    m = mask.to(torch.bool)
    if bool(m.all()) or not bool(m.any()):
        return f.sum() * 0.0
    diff = f - f0.detach()
    total = _FixedRegionL1.apply(diff, ~m, image_size)
    return total / (f.shape[0] * image_size * image_size)


def track_points(
    feat: torch.Tensor,
    handles: torch.Tensor,
    refs: torch.Tensor,
    r2: int,
    image_size: int,
    *,
    norm: str = "l1",
    feature_size: int | None = None,
    origin: Origin = (0, 0),
) -> torch.Tensor:
    """Nearest-neighbour point tracking.

    ``p_i := argmin_{q in Omega2(p_i, r2)} || F(q) - f_i ||`` (L1 as in the
    paper, or L2 as in the authors' code).  Ties go to the first candidate in
    row-major order, like the authors' ``torch.min`` over the flattened patch.

    Args:
        feat: ``(1, C, h, w)`` block output or a crop of it.
        handles: ``(N, 2)`` current handles ``[x, y]``.
        refs: ``(N, C)`` reference features ``f_i`` (of the initial handles).
        r2: half size of the search square, integer pixels.
        norm: ``'l1'`` or ``'l2'``.

    Returns:
        ``(N, 2)`` float64 new handle positions (integer-valued), no gradient.
    """
    if norm not in ("l1", "l2"):
        raise ValueError(f"norm must be 'l1' or 'l2', got {norm!r}")
    f = _as_chw(feat)
    R = int(feature_size if feature_size is not None else f.shape[2])
    p = _check_points(handles, "handles")
    if refs.ndim != 2 or refs.shape[0] != p.shape[0] or refs.shape[1] != f.shape[0]:
        raise ValueError(f"refs must have shape ({p.shape[0]}, {f.shape[0]}), got {list(refs.shape)}")
    with torch.no_grad():
        centre = p.round().long()
        cand = centre[:, None, :] + square_offsets(r2)[None]  # (N, K, 2)
        valid = ((cand >= 0) & (cand < image_size)).all(dim=2)
        cand_c = cand.clamp(0, image_size - 1)
        vals = _resized_at_pixels(f, cand_c[..., 0], cand_c[..., 1], image_size, R, origin)  # (C, N, K)
        delta = vals - refs.to(vals.dtype).t()[:, :, None]
        dist = delta.abs().sum(0) if norm == "l1" else delta.square().sum(0)
        dist = dist.masked_fill(~valid.to(dist.device), float("inf"))
        idx = dist.argmin(dim=1).cpu()
        new = cand.gather(1, idx[:, None, None].expand(-1, 1, 2))[:, 0]
    return new.to(torch.float64)


def needed_feature_box(
    handles: torch.Tensor, r1: float, r2: int, image_size: int, feature_size: int,
) -> tuple[int, int, int, int]:
    """Feature-map box ``(fx0, fy0, fx1, fy1)`` (end exclusive) that one step reads.

    A step tracks each handle within ``Omega2`` of its current position and
    then evaluates the motion loss around the tracked position, so the
    pixels read lie within ``round(p) +- (r2 + ceil(r1) + 1)``.  Without a
    mask nothing outside this box influences the step.
    """
    p = _check_points(handles, "handles").round().long()
    reach = int(r2) + int(math.ceil(r1)) + 1
    lo = (p - reach).clamp(0, image_size - 1).min(dim=0).values
    hi = (p + reach).clamp(0, image_size - 1).max(dim=0).values
    flo = pixel_to_feature(lo.double(), image_size, feature_size).floor().long()
    fhi = pixel_to_feature(hi.double(), image_size, feature_size).floor().long() + 1
    fhi = fhi.clamp(max=feature_size - 1)
    return int(flo[0]), int(flo[1]), int(fhi[0]) + 1, int(fhi[1]) + 1


def stop_distance_for(num_points: int) -> float:
    """The paper's stop rule: 1 px for up to 5 points, 2 px otherwise."""
    return 1.0 if num_points <= 5 else 2.0
