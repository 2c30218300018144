"""DragGAN's two halves as pure functions: motion supervision and point tracking.

Conventions (the whole of :mod:`dragkit.drag` uses them):

* Points are ``[x, y]`` image pixels of the generator's output image (x to
  the right, y down, pixel centres at integers).  Point tensors are
  ``(N, 2)`` float, column 0 = x, column 1 = y.  Images are ``H x W``
  (height x width; ``image_size`` is ``H`` for a square image or
  ``(H, W)``), e.g. 512 x 256 for StyleGAN-Human.
* ``F`` is one feature map, ``(1, C, h, w)``: a StyleGAN2 block output
  (``R x R``, or ``R x R/2`` for StyleGAN-Human) or a StyleGAN3 layer
  output (``S x S`` including its margin).  How its pixels lie on the
  image is a :class:`FeatureGeometry`: per axis,
  ``u = (p + 0.5) * scale - 0.5 + offset``, clamped to ``[0, size - 1]``.
  The default (:meth:`FeatureGeometry.resized`, ``scale = size / image
  size``, ``offset = 0``) is the paper's construction: the map resized
  bilinearly to ``H x W``; we never build that resized map.  Its value at
  integer pixel ``p`` is the bilinear sample of ``F`` at ``u``, which is
  exactly what ``F.interpolate(F, (H, W), mode='bilinear',
  align_corners=False)[..., y, x]`` gives.  A StyleGAN3 layer, whose map
  samples the image plane at ``s`` samples per image width and has
  ``(S - s) / 2`` pixels of margin on each side, is
  :meth:`FeatureGeometry.embedded` (``scale = s / H``, ``offset = (S -
  s) / 2``; its ``layer_geometry``).  Values between pixels (``F(q +
  d)``) are the bilinear interpolation of the resized map between its four
  neighbouring pixels (clamped to the image), which is what the authors'
  ``grid_sample(..., align_corners=True)`` on the resized map gives inside
  the image.
* A feature tensor may be a *crop* of the map: ``origin = (fx0, fy0)``
  is the feature-map index of its top-left element.  Every index a function
  needs must lie inside the crop; :func:`needed_feature_box` says which.
* ``Omega1(p, r1)`` = integer pixels ``q = round(p) + o`` with ``|o| < r1``
  (strict, as in the paper and the authors' code), clipped to the image.
  ``Omega2(p, r2)`` = integer pixels ``q = round(p) + o`` with
  ``|o_x|, |o_y| <= r2``, clipped to the image.  Tracked handles are
  therefore always integer pixels, as in the authors' code.

Every function takes the map's geometry either as ``feature_size`` (the
full map's size: an int for a square map on a square image, or
``(height, width)``; default: the tensor's own size, i.e. an uncropped
map) for the paper's resize, or as ``geometry=FeatureGeometry(...)`` for
any other placement.

Why this module is long (~800 lines): DragGAN's maths - the geometry,
sampling, the motion loss, the fixed-region term, tracking and the stop
rule - share the conventions above and are checked together against the
authors' code (``tests/test_drag.py``); each is a short pure function.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, Union

import torch

__all__ = [
    "FeatureGeometry",
    "disk_offsets",
    "square_offsets",
    "pixel_to_feature",
    "sample_features",
    "motion_supervision_loss",
    "mask_loss",
    "track_points",
    "subpixel_offsets",
    "confident_templates",
    "reference_patch",
    "needed_feature_box",
    "stop_distance_for",
]

Origin = Sequence[int]
ImageSize = Union[int, Sequence[int]]


def image_hw(image_size: ImageSize) -> tuple[int, int]:
    """``H`` or ``(H, W)`` -> ``(H, W)`` (positive ints)."""
    if isinstance(image_size, (tuple, list, torch.Size)):
        if len(image_size) != 2:
            raise ValueError(f"image_size must be H or (H, W), got {image_size!r}")
        h, w = int(image_size[0]), int(image_size[1])
    else:
        h = w = int(image_size)
    if h < 1 or w < 1:
        raise ValueError(f"image size must be positive, got {image_size!r}")
    return h, w


@dataclass(frozen=True)
class FeatureGeometry:
    """Where a feature map's pixels lie on the image, per axis.

    Image pixel ``p`` (centres at integers) reads map coordinate
    ``u = (p + 0.5) * scale - 0.5 + offset``, clamped to ``[0, size - 1]``
    (``x`` with the ``_x``/width fields, ``y`` with the ``_y``/height ones).

    Attributes:
        image_height, image_width: ``H``, ``W`` of the image in pixels.
        map_height, map_width: size of the *whole* map (a crop's origin is
            relative to it).
        scale_x, scale_y: map pixels per image pixel.
        offset_x, offset_y: map coordinate of the image's edge minus the
            resize's (0 for the paper's resize; the margin for StyleGAN3).
    """

    image_height: int
    image_width: int
    map_height: int
    map_width: int
    scale_x: float
    scale_y: float
    offset_x: float = 0.0
    offset_y: float = 0.0

    def __post_init__(self) -> None:
        for name in ("image_height", "image_width", "map_height", "map_width"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        for name in ("scale_x", "scale_y", "offset_x", "offset_y"):
            if not math.isfinite(float(getattr(self, name))):
                raise ValueError(f"{name} must be finite, got {getattr(self, name)!r}")
        if self.scale_x <= 0 or self.scale_y <= 0:
            raise ValueError("scale_x and scale_y must be positive")

    @classmethod
    def resized(cls, image_size: ImageSize, map_size: ImageSize) -> "FeatureGeometry":
        """The paper's (and the authors' code's) construction: the whole map resized to ``H x W``.

        Args:
            image_size: ``H`` or ``(H, W)``.
            map_size: the map's ``h`` (square) or ``(h, w)``.
        """
        H, W = image_hw(image_size)
        h, w = image_hw(map_size)
        return cls(H, W, h, w, w / W, h / H)

    @classmethod
    def embedded(cls, image_size: ImageSize, map_size: ImageSize,
                 samples: float | Sequence[float]) -> "FeatureGeometry":
        """A map that samples the image plane ``samples`` times per image height/width, centred.

        The image occupies the central ``s x s`` samples of the ``S x S``
        map; ``(S - s) / 2`` map pixels of margin lie outside it on each
        side (StyleGAN3's layers: ``S`` = ``layer_geometry(i).size``,
        ``s`` = ``.sampling_rate``).  With ``s = S`` this is :meth:`resized`.

        Args:
            samples: ``s``, or ``(s_y, s_x)`` per axis.
        """
        H, W = image_hw(image_size)
        h, w = image_hw(map_size)
        sy, sx = (float(samples[0]), float(samples[1])) if isinstance(samples, (tuple, list)) else (float(samples),) * 2
        return cls(H, W, h, w, sx / W, sy / H, (w - sx) / 2, (h - sy) / 2)

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)``."""
        return self.image_height, self.image_width

    def to_map_x(self, px: torch.Tensor) -> torch.Tensor:
        """Image x -> map column coordinate (float64, clamped)."""
        return pixel_to_feature(px, self.image_width, self.map_width, scale=self.scale_x, offset=self.offset_x)

    def to_map_y(self, py: torch.Tensor) -> torch.Tensor:
        """Image y -> map row coordinate (float64, clamped)."""
        return pixel_to_feature(py, self.image_height, self.map_height, scale=self.scale_y, offset=self.offset_y)


def resolve_geometry(
    feat_hw: Sequence[int] | None, image_size: ImageSize | None, feature_size: ImageSize | None = None,
    geometry: FeatureGeometry | None = None,
) -> FeatureGeometry:
    """The geometry a function uses: ``geometry`` if given, else the paper's resize of ``feature_size``.

    Args:
        feat_hw: ``(h, w)`` of the tensor at hand (the default map size when
            ``feature_size`` is None: an uncropped map).
        image_size: ``H`` or ``(H, W)``; must match ``geometry`` when both are given.
        feature_size: the whole map's size, ``h`` for a square map on a
            square image, or ``(h, w)``.

    Raises:
        ValueError: contradicting sizes, or an int ``feature_size`` with a non-square image.
    """
    if geometry is not None:
        if image_size is not None and image_hw(image_size) != geometry.image_size:
            raise ValueError(f"image_size {image_hw(image_size)} differs from the geometry's {geometry.image_size}")
        if feature_size is not None and image_hw(feature_size) != (geometry.map_height, geometry.map_width):
            raise ValueError("feature_size differs from the geometry's map size")
        return geometry
    if image_size is None:
        raise ValueError("give image_size or geometry")
    H, W = image_hw(image_size)
    if feature_size is None:
        if feat_hw is None:
            raise ValueError("give feature_size or geometry")
        h, w = int(feat_hw[0]), int(feat_hw[1])
    elif isinstance(feature_size, (tuple, list, torch.Size)):
        h, w = image_hw(feature_size)
    else:
        if H != W:
            raise ValueError(f"the image is {H} x {W}: give feature_size as (height, width), not {feature_size!r}")
        h = w = int(feature_size)
    return FeatureGeometry.resized((H, W), (h, w))


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


def pixel_to_feature(coords: torch.Tensor, image_size: int, feature_size: int, *, scale: float | None = None,
                     offset: float = 0.0) -> torch.Tensor:
    """Image pixel coordinates -> feature-map coordinates along one axis.

    ``u = (p + 0.5) * scale - 0.5 + offset`` with ``scale = R / H`` by
    default (``align_corners=False``: PyTorch's bilinear resize), clamped to
    ``[0, R - 1]`` as that resize does.  ``offset``/``scale`` place a map
    whose samples are not a resize of the image (StyleGAN3's margins; see
    :class:`FeatureGeometry`).  Works elementwise on any float tensor.

    Args:
        image_size: the image's extent along this axis (``H`` or ``W``).
        feature_size: the map's extent along this axis.
    """
    s = feature_size / image_size if scale is None else float(scale)
    u = (coords.to(torch.float64) + 0.5) * s - 0.5 + float(offset)
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
    feat: torch.Tensor, px: torch.Tensor, py: torch.Tensor, geom: FeatureGeometry, origin: Origin = (0, 0),
) -> torch.Tensor:
    """Resized-map values at integer pixels ``(px, py)`` (any equal shapes S) -> ``(C, *S)``."""
    f = _as_chw(feat)
    c, h, w = f.shape
    shape = px.shape
    u = geom.to_map_x(px.reshape(-1))
    v = geom.to_map_y(py.reshape(-1))
    x0 = u.floor().long()
    y0 = v.floor().long()
    ax = (u - x0).to(f.dtype)
    ay = (v - y0).to(f.dtype)
    x1 = (x0 + 1).clamp(max=geom.map_width - 1)
    y1 = (y0 + 1).clamp(max=geom.map_height - 1)
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
    feat: torch.Tensor, points: torch.Tensor, image_size: ImageSize | None, *,
    feature_size: ImageSize | None = None, origin: Origin = (0, 0), geometry: FeatureGeometry | None = None,
) -> torch.Tensor:
    """Features of the bilinearly resized map at (possibly fractional) pixels.

    Args:
        feat: ``(1, C, h, w)`` feature map (or a crop of it, see ``origin``).
        points: ``(..., 2)`` float ``[x, y]`` image pixels.
        image_size: ``H`` (square image) or ``(H, W)`` in pixels (may be
            None when ``geometry`` is given).
        feature_size: the whole map's size, ``R`` (square) or ``(h, w)``
            (default: ``feat``'s size, i.e. an uncropped map).
        origin: ``(fx0, fy0)`` feature index of the crop's top-left element.
        geometry: where the map lies on the image (default: the paper's
            resize, :meth:`FeatureGeometry.resized`).

    Returns:
        ``(..., C)``, differentiable w.r.t. ``feat``.  At integer pixels this
        equals ``F.interpolate(feat, (H, W), mode='bilinear',
        align_corners=False)[0, :, y, x]`` (for the default geometry);
        between pixels it is the bilinear interpolation of that resized map
        (positions clamped to the image).
    """
    f = _as_chw(feat)
    geom = resolve_geometry(f.shape[1:], image_size, feature_size, geometry)
    H, W = geom.image_size
    pts = points.to(torch.float64)
    lead = pts.shape[:-1]
    pts = pts.reshape(-1, 2)
    pts = torch.stack([pts[:, 0].clamp(0, W - 1), pts[:, 1].clamp(0, H - 1)], dim=1)
    p0 = pts.floor()
    a = (pts - p0).to(f.dtype)
    x0 = p0[:, 0].long()
    y0 = p0[:, 1].long()
    x1 = (x0 + 1).clamp(max=W - 1)
    y1 = (y0 + 1).clamp(max=H - 1)
    xs = torch.stack([x0, x1, x0, x1])
    ys = torch.stack([y0, y0, y1, y1])
    vals = _resized_at_pixels(f, xs, ys, geom, origin)  # (C, 4, M)
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
    image_size: ImageSize | None,
    *,
    feature_size: ImageSize | None = None,
    origin: Origin = (0, 0),
    geometry: FeatureGeometry | None = None,
    reference: torch.Tensor | None = None,
) -> torch.Tensor:
    """DragGAN's motion supervision term.

    ``L = sum_i mean_{q in Omega1(p_i), c} | F(q).detach() - F(q + d_i) |``
    with ``d_i = (t_i - p_i) / |t_i - p_i|``.  The stop-gradient on ``F(q)``
    makes the patch move *towards* the target.  Points with ``|t_i - p_i| <= 1``
    contribute nothing.  Reduction as in the authors' code: mean L1 over the
    disk and the channels for each point, summed over points.

    Args:
        feat: ``(1, C, h, w)`` feature map or a crop of it (``origin``); must
            cover :func:`needed_feature_box` of the handles.
        handles: ``(N, 2)`` current handle positions ``[x, y]`` (pixels).
        targets: ``(N, 2)`` targets ``[x, y]``.
        r1: disk radius in pixels (strict ``<``).
        image_size: ``H`` or ``(H, W)`` in pixels.
        feature_size, origin, geometry: the map's placement, as in :func:`sample_features`.
        reference: ``(N, K, C)`` values to compare ``F(q + d_i)`` with instead
            of ``F(q).detach()``, ``K = len(disk_offsets(r1))`` in its order
            (GoodDrag's supervision with the original handle patch:
            :func:`reference_patch` of the drag's first map); no gradient.

    Returns:
        Scalar tensor (0-dim), differentiable w.r.t. ``feat``; an exact zero
        (still attached to ``feat``) when every point is within 1 px.
    """
    f = _as_chw(feat)
    geom = resolve_geometry(f.shape[1:], image_size, feature_size, geometry)
    H, W = geom.image_size
    lim = torch.tensor([W - 1, H - 1])
    p = _check_points(handles, "handles")
    t = _check_points(targets, "targets")
    if p.shape != t.shape:
        raise ValueError("handles and targets must have the same shape")
    diff = t - p
    dist = diff.norm(dim=1)
    active = dist > 1
    if reference is not None and tuple(reference.shape) != (p.shape[0], len(disk_offsets(r1)), f.shape[0]):
        raise ValueError(f"reference must have shape ({p.shape[0]}, {len(disk_offsets(r1))}, {f.shape[0]}), "
                         f"got {list(reference.shape)}")
    if not bool(active.any()):
        return f.sum() * 0.0
    p, diff, dist = p[active], diff[active], dist[active]
    d = diff / dist[:, None]  # (n, 2) unit steps
    centre = p.round().long()  # (n, 2)
    offs = disk_offsets(r1)  # (K, 2)
    q = centre[:, None, :] + offs[None, :, :]  # (n, K, 2) integer pixels
    valid = ((q >= 0) & (q <= lim)).all(dim=2)  # (n, K)
    q = torch.minimum(q.clamp(min=0), lim)
    # F(q + d): the four pixel neighbours of q + d share floor(d) and weights.
    fl = d.floor()
    frac = (d - fl).to(f.dtype)  # (n, 2)
    base = q + fl.long()[:, None, :]
    corners = torch.tensor([[0, 0], [1, 0], [0, 1], [1, 1]])
    nb = torch.minimum((base[:, None, :, :] + corners[None, :, None, :]).clamp(min=0), lim)  # (n, 4, K, 2)
    fx, fy = frac[:, 0].to(f.device), frac[:, 1].to(f.device)
    wts = torch.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], dim=1)  # (n, 4)
    vals_q = _resized_at_pixels(f, q[..., 0], q[..., 1], geom, origin)  # (C, n, K)
    vals_nb = _resized_at_pixels(f, nb[..., 0], nb[..., 1], geom, origin)  # (C, n, 4, K)
    moved = (vals_nb * wts[None, :, :, None]).sum(dim=2)  # (C, n, K)
    if reference is not None:
        vals_q = reference[active.to(reference.device)].to(f.device, f.dtype).permute(2, 0, 1)  # (C, n, K)
    err = (vals_q.detach() - moved).abs()  # (C, n, K)
    vmask = valid.to(f.device, f.dtype)
    per_point = (err * vmask[None]).sum(dim=(0, 2)) / (vmask.sum(dim=1) * f.shape[0])
    return per_point.sum()


def _axis_weights(n_pixels: int, map_size: int, scale: float, offset: float):
    u = pixel_to_feature(torch.arange(n_pixels, dtype=torch.float64), n_pixels, map_size, scale=scale, offset=offset)
    i0 = u.floor().long()
    i1 = (i0 + 1).clamp(max=map_size - 1)
    return i0, i1, (u - i0)


#: values of the resized map that the fixed-region term builds at once (a chunk of rows)
_CHUNK_VALUES = 4_000_000


def _phase_taps(s: int) -> list[tuple[int, float, float]]:
    """The paper's bilinear resize by an integer factor ``s`` along one axis, as ``s`` phases.

    Output pixel ``s * i + k`` reads map coordinate ``i + d_k``,
    ``d_k = (k + 0.5) / s - 0.5``: phase ``k`` is ``a * P[i + j] + b * P[i + j + 1]``
    on the map ``P`` padded by one replicated pixel on each side, with
    ``(j, a, b)`` returned here (the edge clamp of ``align_corners=False``
    is the replicated pixel).
    """
    taps = []
    for k in range(s):
        d = (k + 0.5) / s - 0.5
        taps.append((0, -d, 1.0 + d) if d < 0 else (1, 1.0 - d, d))
    return taps


def _fixed_region_phases(diff: torch.Tensor, fixed: torch.Tensor, sy: int, sx: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``sum |resize(D)|`` over the fixed pixels and its gradient for an integer resize ``(sy, sx)``.

    The resized rows of input rows ``a..b`` are built phase by phase from
    slices of the padded map (no gather, no scatter), as a ``(C, n, sy, sx,
    w)`` block (image pixel ``(sy * i + ky, sx * j + kx)`` at ``[:, i, ky,
    kx, j]``: every slice written or read is contiguous along ``w``), the
    fixed pixels permuted to the same layout once.  The gradient is the
    transpose, slice by slice, folded back off the padding.
    """
    C, h, w = diff.shape
    dp = torch.nn.functional.pad(diff[None], (1, 1, 1, 1), mode="replicate")[0]  # (C, h + 2, w + 2)
    gp = torch.zeros_like(dp)
    ty, tx = _phase_taps(sy), _phase_taps(sx)
    keep_all = fixed.reshape(h, sy, w, sx).permute(0, 1, 3, 2).to(diff.dtype).contiguous()  # (h, sy, sx, w)
    keep_rows = fixed.reshape(h, -1).any(dim=1)
    total = diff.new_zeros(())
    n = min(h, max(1, _CHUNK_VALUES // max(C * sy * sx * w, 1)))
    # buffers reused by every chunk (fresh large tensors cost page faults each time)
    rows_buf = dp.new_empty((C, n, sy, w + 2))
    g_rows_buf = dp.new_empty((C, n, sy, w + 2))
    full_buf = dp.new_empty((C, n, sy, sx, w))
    g_buf = dp.new_empty((C, n, sy, sx, w))
    for a in range(0, h, n):
        b = min(h, a + n)
        if not bool(keep_rows[a:b].any()):
            continue
        rows, g_rows, full, g = rows_buf[:, : b - a], g_rows_buf[:, : b - a], full_buf[:, : b - a], g_buf[:, : b - a]
        for k, (j, _wa, wb) in enumerate(ty):
            torch.lerp(dp[:, a + j : b + j], dp[:, a + j + 1 : b + j + 1], wb, out=rows[:, :, k])
        for k, (j, _wa, wb) in enumerate(tx):
            torch.lerp(rows[..., j : j + w], rows[..., j + 1 : j + 1 + w], wb, out=full[:, :, :, k])
        full.mul_(keep_all[a:b])  # the fixed pixels only
        torch.sign(full, out=g)  # d|full| * fixed
        total = total + full.abs_().sum()  # sum |full| over the fixed pixels (pairwise sum: accurate)
        g_rows.zero_()
        for k, (j, wa, wb) in enumerate(tx):
            gk = g[:, :, :, k]
            g_rows[..., j : j + w].add_(gk, alpha=wa)
            g_rows[..., j + 1 : j + 1 + w].add_(gk, alpha=wb)
        for k, (j, wa, wb) in enumerate(ty):
            gk = g_rows[:, :, k]
            gp[:, a + j : b + j].add_(gk, alpha=wa)
            gp[:, a + j + 1 : b + j + 1].add_(gk, alpha=wb)
    gp[:, :, 1] += gp[:, :, 0]
    gp[:, :, w] += gp[:, :, w + 1]
    gp[:, 1] += gp[:, 0]
    gp[:, h] += gp[:, h + 1]
    return total, gp[:, 1 : h + 1, 1 : w + 1].contiguous()


def _integer_factors(geom: FeatureGeometry) -> tuple[int, int] | None:
    """``(sy, sx)`` when ``geom`` is the paper's resize by integer factors, else None."""
    H, W = geom.image_size
    h, w = geom.map_height, geom.map_width
    if geom.offset_x != 0.0 or geom.offset_y != 0.0 or H % h or W % w:
        return None
    if geom.scale_y != h / H or geom.scale_x != w / W:
        return None
    return H // h, W // w


class _FixedRegionL1(torch.autograd.Function):
    """``sum |resize(D)| over the fixed pixels`` and its exact gradient, a few rows at a time.

    ``resize`` samples ``D`` at the image pixels (the bilinear
    ``align_corners=False`` resize to ``H x W`` for the paper's geometry).
    The forward pass builds the resized rows it needs in chunks of about
    4 M values and accumulates the gradient w.r.t. ``D`` on the way (it is
    ``resize^T(sign(resize(D)) * fixed)``), so no full-resolution tensor
    ever exists, in the forward or the backward pass.  The paper's resize by
    an integer factor (every StyleGAN2 model's feature block: 512 px and b128
    is 4) is built phase by phase from slices (:func:`_fixed_region_phases`);
    other geometries gather whole rows and resize along a row by PyTorch's
    own bilinear resize where that is the paper's (``F.interpolate`` with
    the height unchanged), else by a gather.
    """

    @staticmethod
    def forward(ctx, diff: torch.Tensor, fixed: torch.Tensor, geom: FeatureGeometry) -> torch.Tensor:  # type: ignore[override]
        fixed = fixed.to(diff.device)
        factors = _integer_factors(geom)
        if factors is not None:
            total, grad = _fixed_region_phases(diff, fixed, *factors)
            ctx.save_for_backward(grad)
            return total
        C, _h, w = diff.shape
        H, W = geom.image_size
        iy0, iy1, wy = _axis_weights(H, geom.map_height, geom.scale_y, geom.offset_y)
        ix0, ix1, wx = _axis_weights(W, geom.map_width, geom.scale_x, geom.offset_x)
        dev, dt = diff.device, diff.dtype
        iy0, iy1, ix0, ix1 = iy0.to(dev), iy1.to(dev), ix0.to(dev), ix1.to(dev)
        wy, wx = wy.to(dev, dt), wx.to(dev, dt)
        # the paper's resize along x: F.interpolate computes exactly these weights
        native = geom.offset_x == 0.0 and geom.scale_x == w / W
        rows_needed = torch.nonzero(fixed.any(dim=1)).flatten()
        total = diff.new_zeros(())
        grad = torch.zeros_like(diff)
        chunk = max(1, _CHUNK_VALUES // max(C * W, 1))
        for start in range(0, rows_needed.numel(), chunk):
            ys = rows_needed[start : start + chunk]
            a0, a1, b = iy0[ys], iy1[ys], wy[ys][None, :, None]
            rows = diff.index_select(1, a0) * (1 - b) + diff.index_select(1, a1) * b  # (C, n, w)
            if native:
                full = torch.nn.functional.interpolate(rows[None], size=(rows.shape[1], W), mode="bilinear",
                                                       align_corners=False)[0]  # (C, n, W)
            else:
                full = rows.index_select(2, ix0) * (1 - wx) + rows.index_select(2, ix1) * wx  # (C, n, W)
            keep = fixed.index_select(0, ys).to(dt)[None]  # (1, n, W)
            g_full = full.sign().mul_(keep)  # d|full| * fixed
            total = total + (full * g_full).sum()  # sum |full| over the fixed pixels (pairwise sum: accurate)
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
    feat: torch.Tensor, feat0: torch.Tensor, mask: torch.Tensor, image_size: ImageSize | None, *,
    geometry: FeatureGeometry | None = None,
) -> torch.Tensor:
    """The region-fixing term ``mean |(F - F0) * (1 - M)|`` over ``(C, H, W)`` (no lambda).

    ``F`` and ``F0`` are the resized (``H x W``) maps, as in the paper; the
    term is computed exactly from the feature maps, row chunk by row chunk,
    without building the resized map (see :class:`_FixedRegionL1`).  The
    mean divides by ``C * H * W`` as the authors' ``F.l1_loss`` over the
    full resized map does.

    Args:
        feat, feat0: ``(1, C, h, w)`` whole feature maps (current and
            initial; ``feat0`` gets no gradient).
        mask: ``(H, W)`` bool, True = flexible.  Returns an exact zero when
            the mask does not have both values (the term is off then).
        image_size: ``H`` or ``(H, W)`` (may be None with ``geometry``).
        geometry: where the map lies on the image (default: the paper's resize of the whole map).
    """
    f = _as_chw(feat)
    f0 = _as_chw(feat0)
    if f.shape != f0.shape:
        raise ValueError(f"feat and feat0 differ in shape: {list(f.shape)} vs {list(f0.shape)}")
    geom = resolve_geometry(f.shape[1:], image_size, None, geometry)
    if (geom.map_height, geom.map_width) != tuple(f.shape[1:]):
        raise ValueError("mask_loss needs the whole feature map, not a crop")
    H, W = geom.image_size
    if tuple(mask.shape) != (H, W):
        raise ValueError(f"mask must be ({H}, {W}), got {tuple(mask.shape)}")
    m = mask.to(torch.bool)
    if bool(m.all()) or not bool(m.any()):
        return f.sum() * 0.0
    diff = f - f0.detach()
    total = _FixedRegionL1.apply(diff, ~m, geom)
    return total / (f.shape[0] * H * W)


def track_points(
    feat: torch.Tensor,
    handles: torch.Tensor,
    refs: torch.Tensor,
    r2: int,
    image_size: ImageSize | None,
    *,
    norm: str = "l1",
    feature_size: ImageSize | None = None,
    origin: Origin = (0, 0),
    geometry: FeatureGeometry | None = None,
    subpixel: bool = False,
) -> torch.Tensor:
    """Nearest-neighbour point tracking.

    ``p_i := argmin_{q in Omega2(p_i, r2)} || F(q) - f_i ||`` (L1 as in the
    paper, or L2 as in the authors' code).  Ties go to the first candidate in
    row-major order, like the authors' ``torch.min`` over the flattened patch.

    Args:
        feat: ``(1, C, h, w)`` feature map or a crop of it.
        handles: ``(N, 2)`` current handles ``[x, y]``.
        refs: ``(N, C)`` reference features ``f_i`` (of the initial handles).
        r2: half size of the search square, integer pixels.
        image_size: ``H`` or ``(H, W)``.
        norm: ``'l1'`` or ``'l2'``.
        feature_size, origin, geometry: the map's placement, as in :func:`sample_features`.
        subpixel: refine each best match by :func:`subpixel_offsets` (the
            handle may then be fractional, within half a pixel of the match).

    Returns:
        ``(N, 2)`` float64 new handle positions (integer-valued unless
        ``subpixel``, inside the image), no gradient.
    """
    if norm not in ("l1", "l2"):
        raise ValueError(f"norm must be 'l1' or 'l2', got {norm!r}")
    f = _as_chw(feat)
    geom = resolve_geometry(f.shape[1:], image_size, feature_size, geometry)
    H, W = geom.image_size
    lim = torch.tensor([W - 1, H - 1])
    p = _check_points(handles, "handles")
    if refs.ndim != 2 or refs.shape[0] != p.shape[0] or refs.shape[1] != f.shape[0]:
        raise ValueError(f"refs must have shape ({p.shape[0]}, {f.shape[0]}), got {list(refs.shape)}")
    with torch.no_grad():
        centre = p.round().long()
        cand = centre[:, None, :] + square_offsets(r2)[None]  # (N, K, 2)
        valid = ((cand >= 0) & (cand <= lim)).all(dim=2)
        cand_c = torch.minimum(cand.clamp(min=0), lim)
        vals = _resized_at_pixels(f, cand_c[..., 0], cand_c[..., 1], geom, origin)  # (C, N, K)
        delta = vals - refs.to(vals.dtype).t()[:, :, None]
        dist = delta.abs().sum(0) if norm == "l1" else delta.square().sum(0)
        dist = dist.masked_fill(~valid.to(dist.device), float("inf"))
        idx = dist.argmin(dim=1).cpu()
        new = cand.gather(1, idx[:, None, None].expand(-1, 1, 2))[:, 0].to(torch.float64)
        if subpixel:
            side = 2 * int(r2) + 1
            new = new + subpixel_offsets(dist.cpu().to(torch.float64).reshape(-1, side, side), idx)
            new = torch.minimum(new.clamp(min=0), lim.to(torch.float64))
    return new


def subpixel_offsets(dist: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Sub-pixel refinement of grid minima: a parabola through each minimum and its two neighbours, per axis.

    Along x, with ``a, b, c`` the distances left of, at and right of the
    minimum: ``dx = (a - c) / (2 (a - 2 b + c))``, clamped to ``[-0.5, 0.5]``;
    0 when a neighbour is missing (the image edge: ``inf``) or the curvature
    is not positive.  The same along y.

    Args:
        dist: ``(N, S, S)`` distances on the search square, row-major (y, then x).
        idx: ``(N,)`` flat index of each point's minimum.

    Returns:
        ``(N, 2)`` float64 ``[dx, dy]`` pixels.
    """
    n, side, _ = dist.shape
    iy, ix = (idx // side).long(), (idx % side).long()
    ar = torch.arange(n)
    out = torch.zeros(n, 2, dtype=torch.float64)
    for axis, (i, lim) in enumerate(((ix, side), (iy, side))):
        lo_ok, hi_ok = i > 0, i < lim - 1
        il, ih = (i - 1).clamp(min=0), (i + 1).clamp(max=lim - 1)
        b = dist[ar, iy, ix].double()
        if axis == 0:
            a, c = dist[ar, iy, il].double(), dist[ar, iy, ih].double()
        else:
            a, c = dist[ar, il, ix].double(), dist[ar, ih, ix].double()
        curv = a - 2 * b + c
        ok = lo_ok & hi_ok & torch.isfinite(a) & torch.isfinite(c) & (curv > 0)
        off = torch.where(ok, (a - c) / (2 * torch.where(ok, curv, torch.ones_like(curv))), torch.zeros_like(b))
        out[:, axis] = off.clamp(-0.5, 0.5)
    return out


def confident_templates(
    matched: torch.Tensor, original: torch.Tensor, threshold: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which tracking matches to trust: cosine similarity of each matched feature to the original one.

    Args:
        matched: ``(N, C)`` features at the tracked handles.
        original: ``(N, C)`` the original handle features ``f_i``.
        threshold: trust a match whose similarity is at least this.

    Returns:
        ``(templates, confident)``: ``(N, C)`` the next tracking templates (the
        match where confident, else the original) and ``(N,)`` bool.
    """
    sim = torch.nn.functional.cosine_similarity(matched.double(), original.double(), dim=1, eps=1e-12)
    ok = sim >= float(threshold)
    return torch.where(ok[:, None], matched, original.to(matched.dtype)), ok


def reference_patch(
    feat: torch.Tensor, handles: torch.Tensor, r1: float, image_size: ImageSize | None, *,
    origin: Origin = (0, 0), geometry: FeatureGeometry | None = None,
) -> torch.Tensor:
    """The handle patches ``F(round(p_i) + o)``, ``o`` in :func:`disk_offsets` ``(r1)``, clamped to the image.

    Returns:
        ``(N, K, C)``, no gradient (the ``reference`` of :func:`motion_supervision_loss`).
    """
    f = _as_chw(feat)
    geom = resolve_geometry(f.shape[1:], image_size, None, geometry)
    H, W = geom.image_size
    lim = torch.tensor([W - 1, H - 1])
    p = _check_points(handles, "handles").round().long()
    q = torch.minimum((p[:, None, :] + disk_offsets(r1)[None]).clamp(min=0), lim)
    with torch.no_grad():
        vals = _resized_at_pixels(f, q[..., 0], q[..., 1], geom, origin)  # (C, N, K)
    return vals.permute(1, 2, 0).contiguous()


def needed_feature_box(
    handles: torch.Tensor, r1: float, r2: int, image_size: ImageSize | None,
    feature_size: ImageSize | None = None, *, geometry: FeatureGeometry | None = None,
) -> tuple[int, int, int, int]:
    """Feature-map box ``(fx0, fy0, fx1, fy1)`` (end exclusive) that one step reads.

    A step tracks each handle within ``Omega2`` of its current position and
    then evaluates the motion loss around the tracked position, so the
    pixels read lie within ``round(p) +- (r2 + ceil(r1) + 1)``.  Without a
    mask nothing outside this box influences the step.

    Args:
        image_size: ``H`` or ``(H, W)``.
        feature_size: the whole map's size (``R`` for a square map on a
            square image, or ``(h, w)``); or give ``geometry``.
    """
    if feature_size is None and geometry is None:
        raise ValueError("give feature_size or geometry")
    geom = resolve_geometry(None, image_size, feature_size, geometry)
    H, W = geom.image_size
    lim = torch.tensor([W - 1, H - 1])
    p = _check_points(handles, "handles").round().long()
    reach = int(r2) + int(math.ceil(r1)) + 1
    lo = torch.minimum((p - reach).clamp(min=0), lim).min(dim=0).values
    hi = torch.minimum((p + reach).clamp(min=0), lim).max(dim=0).values
    fx0 = int(geom.to_map_x(lo[0:1].double()).floor().long()[0])
    fy0 = int(geom.to_map_y(lo[1:2].double()).floor().long()[0])
    fx1 = min(int(geom.to_map_x(hi[0:1].double()).floor().long()[0]) + 1, geom.map_width - 1)
    fy1 = min(int(geom.to_map_y(hi[1:2].double()).floor().long()[0]) + 1, geom.map_height - 1)
    return fx0, fy0, fx1 + 1, fy1 + 1


def stop_distance_for(num_points: int) -> float:
    """The paper's stop rule: 1 px for up to 5 points, 2 px otherwise."""
    return 1.0 if num_points <= 5 else 2.0
