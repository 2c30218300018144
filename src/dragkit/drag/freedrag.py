"""FreeDrag-style feature dragging (Ling et al., "FreeDrag: Feature Dragging for Reliable
Point-based Image Editing", CVPR 2024) as pure functions beside DragGAN's (:mod:`.core`).

FreeDrag drops nearest-neighbour point tracking.  Each handle ``i`` has a
*template* ``T_i``: the features of a small patch around it (3 x 3 samples,
3 px apart), at first those of the original image.  A drag is a sequence
of *sub-motions*:

1. **Localisation** (:func:`line_search`): the handle's next position
   ``p_i`` is searched on the segment towards its target, never past it:

   * the last sub-motion went well (its final loss ``L_end < l / 2``):
     10 candidates at 0.1, 0.2, ..., 1.0 of ``min(d_max, |t - p|)`` towards
     the target; the one whose patch distance to ``T_i`` is closest to
     ``l`` (the *expected* initial loss: far enough to make progress, near
     enough to be reachable);
   * it went half-way (``L_end >= l / 2`` but below its initial loss):
     stay, and keep pulling towards the same position;
   * it failed (``L_end`` not below its initial loss): *backtrack* by
     ``min(d_max, |t - p|)`` away from the target (less where the image
     ends), then 10 candidates up to ``2 d_max`` towards it; the one that
     matches ``T_i`` best.

2. **Motion** (:func:`template_loss`): up to :data:`SUB_STEPS` optimisation
   steps of ``sum_i mean |patch(F, p_i) - T_i|`` (mean L1 over the patch
   and the channels), fewer once every point's loss is below ``l / 4``.

3. **Template update** (:func:`update_templates`): ``T_i := lam patch(F,
   p_i) + (1 - lam) T_i`` with ``lam = 1 / (1 + exp(a (L_end - b)))``,
   ``a = ln 9 / (0.6 l)``, ``b = 0.2 l`` (:func:`template_decay`: 0.5 at
   ``L_end = 0.2 l``, 0.1 at ``0.8 l``) - a sub-motion that matched well
   moves the template towards what is there now, a poor one hardly does;
   ``lam = 1`` for a point that has arrived.

A point has *arrived* (:func:`arrived`) when it is within the stop
distance of its target and its final loss is below ``l / 4``; the drag
ends when every point has.  The reported handle is the localised
position ``p_i``.

Constants from the paper and the authors' code: ``l = 0.3`` (faces, cats,
cars; 0.4 for elephants, lions, dogs), ``d_max = 3`` feature pixels of a
128 px map (12 px at 512 px; 4 for the larger animals), 5 steps per
sub-motion, 10 line-search candidates, a 3 x 3 patch 3 px apart, Adam at
lr 2e-3.  dragkit exposes ``l`` (``freedrag_loss``, relative to the mean
``|F0|`` of the drag's first map: :func:`expected_loss`) and ``d_max``
(``freedrag_step``, in image pixels, default 3 map pixels) as options and
keeps the rest fixed; its mask term and learning rate are DragGAN's
(``lambda_mask``, ``lr``).

Points are ``[x, y]`` image pixels, ``(N, 2)`` float64, as in :mod:`.core`;
features are sampled bilinearly from the resized map at fractional
positions (:func:`~.core.sample_features`).
"""
from __future__ import annotations

import math

import torch

from .core import FeatureGeometry, Origin, sample_features

__all__ = [
    "PATCH_SPACING",
    "SUB_STEPS",
    "CANDIDATES",
    "patch_offsets",
    "patch_features",
    "template_loss",
    "template_decay",
    "update_templates",
    "line_search",
    "arrived",
    "reach",
    "expected_loss",
    "FreeDragState",
]

#: Distance in image pixels between the 3 x 3 patch's samples (the authors' ``win_r = 3``).
PATCH_SPACING = 3.0
#: Most optimisation steps of one sub-motion.
SUB_STEPS = 5
#: Line-search candidates per sub-motion.
CANDIDATES = 10


def patch_offsets(spacing: float = PATCH_SPACING) -> torch.Tensor:
    """The template patch: ``(9, 2)`` float64 ``[dx, dy]`` offsets ``{-s, 0, s}^2``, row-major."""
    r = torch.tensor([-spacing, 0.0, spacing], dtype=torch.float64)
    dy, dx = torch.meshgrid(r, r, indexing="ij")
    return torch.stack([dx.reshape(-1), dy.reshape(-1)], dim=1)


def patch_features(
    feat: torch.Tensor, points: torch.Tensor, *, geometry: FeatureGeometry, origin: Origin = (0, 0),
) -> torch.Tensor:
    """Features of the patch around each point: ``(N, 9, C)``, differentiable w.r.t. ``feat``.

    Args:
        feat: ``(1, C, h, w)`` map or a crop of it (``origin``).
        points: ``(N, 2)`` or ``(M, N, 2)`` ``[x, y]`` pixels (fractional allowed; samples
            beyond the image are clamped to it).
    """
    pts = points.to(torch.float64)
    return sample_features(feat, pts[..., None, :] + patch_offsets(), None, origin=origin, geometry=geometry)


def template_loss(
    feat: torch.Tensor, points: torch.Tensor, templates: torch.Tensor, *, geometry: FeatureGeometry,
    origin: Origin = (0, 0),
) -> torch.Tensor:
    """Per point ``mean_{patch, c} |patch(F, p_i) - T_i|``: ``(N,)``, differentiable w.r.t. ``feat``.

    Args:
        templates: ``(N, 9, C)`` (no gradient flows into them).
    """
    cur = patch_features(feat, points, geometry=geometry, origin=origin)
    return (cur - templates.detach().to(cur.dtype)).abs().mean(dim=(-2, -1))


def template_decay(loss_end: torch.Tensor, expected: float) -> torch.Tensor:
    """The update weight ``lam = 1 / (1 + exp(a (L_end - b)))``, ``a = ln 9 / (0.6 l)``, ``b = 0.2 l``."""
    a = math.log(9.0) / (0.6 * float(expected))
    b = 0.2 * float(expected)
    return torch.sigmoid(-a * (loss_end.to(torch.float64) - b))


def update_templates(
    templates: torch.Tensor, current: torch.Tensor, loss_end: torch.Tensor, done: torch.Tensor, expected: float,
) -> torch.Tensor:
    """``T := lam current + (1 - lam) T`` per point (``lam = 1`` where ``done``); ``(N, 9, C)``, no gradient."""
    lam = torch.where(done.to(loss_end.device), torch.ones_like(loss_end, dtype=torch.float64),
                      template_decay(loss_end, expected)).to(templates.device, templates.dtype)[:, None, None]
    return (lam * current.detach() + (1 - lam) * templates).detach()


def _segment(start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """``CANDIDATES`` points at 0.1, ..., 1.0 of the way from ``start`` to ``end``: ``(K, 2)``."""
    s = torch.arange(1, CANDIDATES + 1, dtype=torch.float64)[:, None] / CANDIDATES
    return (1 - s) * start[None] + s * end[None]


def _inside_fraction(p: torch.Tensor, v: torch.Tensor, frac: float, W: int, H: int) -> float:
    """The largest ``s <= frac`` with ``p + s v`` inside the image (``p`` inside it)."""
    s = frac
    for axis, hi in ((0, W - 1), (1, H - 1)):
        step = float(v[axis])
        if step > 0:
            s = min(s, (hi - float(p[axis])) / step)
        elif step < 0:
            s = min(s, -float(p[axis]) / step)
    return max(s, 0.0)


def line_search(
    feat: torch.Tensor, current: torch.Tensor, targets: torch.Tensor, templates: torch.Tensor, *,
    expected: float, d_max: float, loss_ini: torch.Tensor, loss_end: torch.Tensor, active: torch.Tensor,
    geometry: FeatureGeometry, origin: Origin = (0, 0),
) -> torch.Tensor:
    """The next position of each handle, on its line to the target (module docstring, step 1).

    Args:
        feat: the map after the last sub-motion (no gradient is taken).
        current, targets: ``(N, 2)`` ``[x, y]`` pixels.
        templates: ``(N, 9, C)``.
        expected: ``l``; ``d_max``: the longest sub-motion, pixels.
        loss_ini, loss_end: ``(N,)`` the last sub-motion's first and final template losses
            (zeros before the first sub-motion: the forward branch).
        active: ``(N,)`` bool; inactive (arrived) points stay where they are.

    Returns:
        ``(N, 2)`` float64.  Forward candidates never lie past the target
        (the step is at most the remaining distance); every candidate lies on
        the line through the current position and the target, within
        ``2 d_max`` of the current position (a backtrack is shortened so as
        to stay inside the image).
    """
    H, W = geometry.image_size
    cur = current.to(torch.float64)
    tgt = targets.to(torch.float64)
    out = cur.clone()
    with torch.no_grad():
        for i in range(cur.shape[0]):
            if not bool(active[i]):
                continue
            p, t = cur[i], tgt[i]
            remain = float((t - p).norm())
            frac = min(d_max / (remain + 1e-8), 1.0)
            le, li = float(loss_end[i]), float(loss_ini[i])
            if le < 0.5 * expected:
                cand = _segment(p, p + frac * (t - p))
                target_dist = float(expected)
            elif le < li:
                continue
            else:
                back = p - _inside_fraction(p, -(t - p), frac, W, H) * (t - p)
                remain2 = float((t - back).norm())
                cand = _segment(back, back + min(2 * d_max / (remain2 + 1e-8), 1.0) * (t - back))
                target_dist = 0.0
            vals = patch_features(feat.detach(), cand, geometry=geometry, origin=origin)  # (K, 9, C)
            dist = (vals - templates[i].to(vals.dtype)[None]).abs().mean(dim=(1, 2))
            k = int(torch.argmin((dist - target_dist).abs()))
            out[i] = cand[k].to(torch.float64)
    return out


def arrived(current: torch.Tensor, targets: torch.Tensor, loss_end: torch.Tensor, expected: float,
            stop_distance: float) -> torch.Tensor:
    """``(N,)`` bool: within ``stop_distance`` of the target and the final loss below ``l / 4``."""
    d = (targets.to(torch.float64) - current.to(torch.float64)).norm(dim=1)
    return (d <= float(stop_distance)) & (loss_end.to(torch.float64).cpu() <= 0.25 * float(expected))


def expected_loss(relative: float, feat0: torch.Tensor) -> float:
    """``l`` for one drag: ``relative * mean |F0|`` over the drag's first (whole) feature map.

    The paper gives ``l`` in the units of its models' features (0.3 for
    512 px faces); feature magnitudes differ by an order of magnitude between
    models (mean ``|F|`` of the toy model's b16: ~0.09), and an absolute
    ``l`` that is too large for a model makes the line search jump straight
    to the target (the drag "arrives" with nothing moved), one too small
    stalls it.  dragkit's ``freedrag_loss`` is relative to the map's scale.
    """
    return float(relative) * float(feat0.detach().abs().mean())


def reach(d_max: float) -> tuple[float, int]:
    """``(r1, r2)`` to give :func:`~.core.needed_feature_box` for the pixels one FreeDrag step reads.

    A step reads patches (``PATCH_SPACING`` px) around positions within
    ``2 d_max`` of the current handles (the line search's candidates).
    """
    return PATCH_SPACING + 1.0, int(math.ceil(2 * d_max)) + 1


class FreeDragState:
    """What a FreeDrag drag carries between steps (held by the session's drag in progress).

    Attributes:
        templates: ``(N, 9, C)`` the handles' template patches.
        loss_ini, loss_end: ``(N,)`` the last sub-motion's first and final template losses.
        done: ``(N,)`` bool, the points that have arrived (:func:`arrived`).
        sub: steps taken in the current sub-motion (0: the next step begins one).
        expected: ``l`` in the map's own units (:func:`expected_loss`).
    """

    def __init__(self, templates: torch.Tensor, expected: float) -> None:
        n = templates.shape[0]
        self.templates = templates.detach()
        self.expected = float(expected)
        self.loss_ini = torch.zeros(n, dtype=torch.float64)
        self.loss_end = torch.zeros(n, dtype=torch.float64)
        self.done = torch.zeros(n, dtype=torch.bool)
        self.sub = 0
