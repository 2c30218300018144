"""``DragSession``: the stateful wrapper around the pure drag functions.

A session holds one latent, its points and mask, the running drag (Adam
state, tracking references) and the undo history of whole drags.

What a "drag" is (the unit of :meth:`DragSession.undo`):
    A drag begins with the first :meth:`~DragSession.step` after anything
    that is not a step (or with :meth:`~DragSession.begin_drag`) and ends at
    :meth:`~DragSession.end_drag`, at the end of :meth:`~DragSession.run`,
    or automatically at the next action that is not a step: adding, moving,
    removing or clearing points, setting the mask, undo/redo, save,
    ``set_state``.  Ending a drag that changed the latent records it in the
    history.  The next step then starts a new drag whose tracking references
    ``f_i`` and mask reference ``F0`` are taken from the *current* image, as
    in the paper's interactive use (add a point mid-drag and carry on).

Everything is kept on the generator's device; the latent is float32.
"""
from __future__ import annotations

import base64
import copy
import json
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from ..errors import DragkitError, SpecError
from .core import (
    mask_loss,
    motion_supervision_loss,
    needed_feature_box,
    sample_features,
    stop_distance_for,
    track_points,
)
from .features import block_features

__all__ = [
    "DragOptions",
    "PointPair",
    "StepResult",
    "DragSession",
    "auto_r1",
    "auto_r2",
    "auto_lambda_mask",
    "auto_feature_block",
    "SESSION_FORMAT",
]

SESSION_FORMAT = "dragkit-session"
SESSION_VERSION = 1
SPACES = ("w+", "w")
TRACKING = ("l1", "l2")
NOISE_MODES = ("const", "none")


# ----------------------------------------------------------------------------
# Defaults for small models (chosen on the toy world, see docs/drag.md).


def auto_r1(img_resolution: int) -> float:
    """Default motion-supervision radius.

    ``H / 4`` for models of at most 64 px (measured on the 32 px toy world:
    objects there span a few pixels of flat colour, and a disk that covers
    the dragged object moves it far more accurately; docs/drag.md); above
    that the paper's 3 px at 512 px, scaled with ``H``, never below 3 px.
    """
    if img_resolution <= 64:
        return img_resolution / 4.0
    return max(3.0, 3.0 * img_resolution / 512)


def auto_r2(img_resolution: int) -> int:
    """Default tracking half-size: the paper's 12 px at 512 px, never below 6 px."""
    return max(6, round(12 * img_resolution / 512))


def auto_lambda_mask(img_resolution: int) -> float:
    """Default weight of the mask term.

    The paper's 20 above 64 px.  5 for models of at most 64 px: there the
    feature block's halo around a moving object reaches a few pixels into a
    hand-painted fixed region, and lambda = 20 holds the dragged object back
    (toy world, flexible band 3 px wider than the disk: 37 % of drags arrive
    within 300 steps at 20, 87 % at 5; docs/drag.md).
    """
    return 5.0 if img_resolution <= 64 else 20.0


def auto_feature_block(block_resolutions: Sequence[int], img_resolution: int) -> int:
    """Default feature block: ``H / 4`` (the paper's b128 at 512 px), at least b16."""
    want = max(16, img_resolution // 4)
    cands = [r for r in block_resolutions if r <= want]
    return max(cands) if cands else min(block_resolutions)


@dataclass
class DragOptions:
    """Settings of a drag (mutable between drags; a change applies to the next drag).

    Attributes:
        lr: Adam learning rate.
        r1: motion-supervision disk radius in pixels (None = :func:`auto_r1`).
        r2: tracking search half-size in pixels (None = :func:`auto_r2`).
        lambda_mask: weight of the mask term (used only when a mask with
            both values is set; None = :func:`auto_lambda_mask`).
        space: ``'w+'`` (one code per layer) or ``'w'`` (one shared code).
        layers: how many of the first codes are optimised; the others are
            held at their values from the start of the drag.
        tracking: ``'l1'`` (paper) or ``'l2'`` (authors' code).
        feature_block: block resolution whose output is the feature map
            (None = :func:`auto_feature_block`).
        stop_distance: stop when every handle is within this many pixels of
            its target (None = the paper's rule, 1 px for up to 5 points,
            2 px otherwise).
        noise_mode: ``'const'`` or ``'none'``.
    """

    lr: float = 0.004
    r1: float | None = None
    r2: int | None = None
    lambda_mask: float | None = None
    space: str = "w+"
    layers: int = 6
    tracking: str = "l1"
    feature_block: int | None = None
    stop_distance: float | None = None
    noise_mode: str = "const"

    def validate(self, G: Any | None = None) -> None:
        """Raise :class:`SpecError` naming the first bad field."""

        def num(name: str, v: Any, positive: bool = True, allow_none: bool = False) -> None:
            if v is None and allow_none:
                return
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise SpecError(f"option {name} must be a finite number, got {v!r}")
            if positive and v <= 0:
                raise SpecError(f"option {name} must be > 0, got {v!r}")

        num("lr", self.lr)
        num("r1", self.r1, allow_none=True)
        num("r2", self.r2, allow_none=True)
        if self.r2 is not None and int(self.r2) != self.r2:
            raise SpecError(f"option r2 must be a whole number of pixels, got {self.r2!r}")
        num("lambda_mask", self.lambda_mask, positive=False, allow_none=True)
        if self.lambda_mask is not None and self.lambda_mask < 0:
            raise SpecError(f"option lambda_mask must be >= 0, got {self.lambda_mask!r}")
        num("stop_distance", self.stop_distance, allow_none=True)
        if self.space not in SPACES:
            raise SpecError(f"option space must be one of {SPACES}, got {self.space!r}")
        if self.tracking not in TRACKING:
            raise SpecError(f"option tracking must be one of {TRACKING}, got {self.tracking!r}")
        if self.noise_mode not in NOISE_MODES:
            raise SpecError(f"option noise_mode must be one of {NOISE_MODES}, got {self.noise_mode!r}")
        if isinstance(self.layers, bool) or not isinstance(self.layers, int) or self.layers < 1:
            raise SpecError(f"option layers must be an integer >= 1, got {self.layers!r}")
        if self.feature_block is not None and (
            isinstance(self.feature_block, bool) or not isinstance(self.feature_block, int)
        ):
            raise SpecError(f"option feature_block must be a block resolution or null, got {self.feature_block!r}")
        if G is not None:
            if self.layers > G.num_ws:
                raise SpecError(f"option layers must be at most {G.num_ws} for this model, got {self.layers}")
            blocks = list(G.synthesis.block_resolutions)
            if self.feature_block is not None and self.feature_block not in blocks:
                raise SpecError(f"option feature_block must be one of {blocks} for this model, got {self.feature_block}")

    def resolved(self, G: Any) -> "DragOptions":
        """A copy with every None default replaced by its value for ``G`` (validated)."""
        self.validate(G)
        H = int(G.img_resolution)
        return DragOptions(
            lr=float(self.lr),
            r1=float(self.r1) if self.r1 is not None else auto_r1(H),
            r2=int(self.r2) if self.r2 is not None else auto_r2(H),
            lambda_mask=float(self.lambda_mask) if self.lambda_mask is not None else auto_lambda_mask(H),
            space=self.space,
            layers=int(self.layers),
            tracking=self.tracking,
            feature_block=int(self.feature_block) if self.feature_block is not None
            else auto_feature_block(G.synthesis.block_resolutions, H),
            stop_distance=float(self.stop_distance) if self.stop_distance is not None else None,
            noise_mode=self.noise_mode,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DragOptions":
        """Build from a dict; unknown keys are a :class:`SpecError`."""
        if not isinstance(d, dict):
            raise SpecError(f"options must be an object, got {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise SpecError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        opts = cls(**d)
        opts.validate()
        return opts


@dataclass(frozen=True)
class PointPair:
    """A handle and its target, ``[x, y]`` pixels."""

    handle: tuple[float, float]
    target: tuple[float, float]


@dataclass(frozen=True)
class StepResult:
    """What one call of :meth:`DragSession.step` saw.

    Attributes:
        step: optimisation steps applied in the current drag so far.
        points: handles tracked on the image *before* this call's update
            (for a ``done`` result: on the final image).
        distances: ``|handle - target|`` per point, pixels.
        done: the drag is over (stop rule met, or the end of a ``run``).
        reached: every handle is within the stop distance of its target.
    """

    step: int
    points: list[PointPair]
    distances: list[float]
    done: bool
    reached: bool = False


# ----------------------------------------------------------------------------
# Compact JSON encodings (exact).


def _enc_tensor(t: torch.Tensor) -> dict[str, Any]:
    a = t.detach().to("cpu", torch.float32).contiguous().numpy()
    return {"shape": list(a.shape), "dtype": "float32",
            "data": base64.b64encode(a.astype("<f4").tobytes()).decode("ascii")}


def _dec_tensor(d: Any, what: str) -> torch.Tensor:
    try:
        shape = [int(s) for s in d["shape"]]
        raw = base64.b64decode(d["data"], validate=True)
        a = np.frombuffer(raw, dtype="<f4").reshape(shape)
    except Exception as exc:
        raise DragkitError(f"{what}: not a valid encoded tensor ({exc})") from None
    if not np.isfinite(a).all():
        raise DragkitError(f"{what}: contains NaN or infinity")
    return torch.from_numpy(a.astype(np.float32))


def _enc_mask(m: np.ndarray | None) -> dict[str, Any] | None:
    if m is None:
        return None
    return {"shape": list(m.shape), "packbits": base64.b64encode(np.packbits(m.reshape(-1)).tobytes()).decode("ascii")}


def _dec_mask(d: Any, what: str) -> np.ndarray | None:
    if d is None:
        return None
    try:
        shape = [int(s) for s in d["shape"]]
        bits = np.frombuffer(base64.b64decode(d["packbits"], validate=True), dtype=np.uint8)
        n = int(np.prod(shape))
        m = np.unpackbits(bits)[:n].astype(bool).reshape(shape)
    except Exception as exc:
        raise DragkitError(f"{what}: not a valid encoded mask ({exc})") from None
    return m


# ----------------------------------------------------------------------------


@dataclass
class _Point:
    handle: tuple[float, float]
    target: tuple[float, float]


@dataclass
class _Drag:
    opts: DragOptions  # resolved
    w: torch.Tensor  # the optimised codes, (1, k, w_dim) or (1, 1, w_dim)
    held: torch.Tensor  # (1, num_ws - k, w_dim)
    optim: torch.optim.Optimizer
    refs: torch.Tensor  # (N, C) tracking references f_i
    feat0: torch.Tensor | None  # (1, C, R, R) when the mask term is on
    mask: torch.Tensor | None  # (H, W) bool when the mask term is on
    before: dict[str, Any]  # snapshot for undo
    origins: list[tuple[float, float]]
    steps: int = 0
    tracked: bool = False  # handles already tracked on the current latent

    def compose(self) -> torch.Tensor:
        k = self.opts.layers
        w = self.w if self.w.shape[1] == k else self.w.expand(-1, k, -1)
        return torch.cat([w, self.held], dim=1)


class DragSession:
    """Interactive DragGAN editing of one latent.

    Args:
        G: a :class:`dragkit.nets.Generator` (eval mode).
        seed, psi: the starting latent is ``G.ws_from_seed(seed, psi)``.
        options: :class:`DragOptions` (default settings when None).
        device: where to compute; must be the generator's device (None = it).

    Raises:
        SpecError: bad options or points; DragkitError for other misuse.
    """

    def __init__(
        self, G: Any, seed: int = 0, psi: float = 0.7, *, options: DragOptions | None = None,
        device: str | torch.device | None = None, _ws: torch.Tensor | None = None,
    ) -> None:
        self.G = G
        gdev = next(G.parameters()).device
        self.device = torch.device(device) if device is not None else gdev
        if self.device != gdev:
            raise DragkitError(f"the generator is on {gdev}, not {self.device}; move it with G.to(device) first")
        self.options = copy.deepcopy(options) if options is not None else DragOptions()
        self.options.validate(G)
        self.seed = None if _ws is not None else int(seed)
        self.psi = float(psi)
        ws = _ws if _ws is not None else G.ws_from_seed(int(seed), psi=float(psi))
        self._latent = self._check_ws(ws)
        self.w0 = self._latent.clone()
        self._points: list[_Point] = []
        self._mask: np.ndarray | None = None
        self._drag: _Drag | None = None
        self._undo: list[dict[str, Any]] = []
        self._redo: list[dict[str, Any]] = []
        self._img_cache: tuple[int, torch.Tensor] | None = None
        self._version = 0  # bumps whenever the latent changes
        self._crop = True  # compute features on the handles' window when no mask is set

    # -- construction -------------------------------------------------------

    @classmethod
    def from_latent(cls, G: Any, ws: torch.Tensor | np.ndarray, options: DragOptions | None = None) -> "DragSession":
        """Start from W+ codes ``(1, num_ws, w_dim)`` (or ``(num_ws, w_dim)``, or W ``(1, w_dim)``)."""
        t = torch.as_tensor(np.asarray(ws) if isinstance(ws, np.ndarray) else ws).to(torch.float32)
        if t.ndim == 2 and t.shape[0] == 1 and t.shape[1] == G.w_dim and G.num_ws != 1:
            t = t[:, None, :].repeat(1, G.num_ws, 1)
        elif t.ndim == 2:
            t = t[None]
        return cls(G, options=options, _ws=t)

    def _check_ws(self, ws: Any) -> torch.Tensor:
        t = torch.as_tensor(ws).detach().to(self.device, torch.float32)
        want = (1, self.G.num_ws, self.G.w_dim)
        if tuple(t.shape) != want:
            raise SpecError(f"latent must have shape {list(want)} for this model, got {list(t.shape)}")
        if not bool(torch.isfinite(t).all()):
            raise SpecError("latent contains NaN or infinity")
        return t.clone()

    # -- properties ---------------------------------------------------------

    @property
    def resolution(self) -> int:
        return int(self.G.img_resolution)

    @property
    def latent(self) -> torch.Tensor:
        """Current W+ codes ``(1, num_ws, w_dim)`` (a copy)."""
        return self._latent.clone()

    @property
    def points(self) -> list[PointPair]:
        """Current (tracked) handles and their targets."""
        return [PointPair(tuple(p.handle), tuple(p.target)) for p in self._points]

    @property
    def mask(self) -> np.ndarray | None:
        """``(H, W)`` bool, True = flexible, or None."""
        return None if self._mask is None else self._mask.copy()

    @property
    def can_undo(self) -> bool:
        return bool(self._undo) or self._pending_change()

    @property
    def can_redo(self) -> bool:
        return bool(self._redo) and not self._pending_change()

    @property
    def dragging(self) -> bool:
        """A drag is in progress (steps taken since the last non-step action)."""
        return self._drag is not None

    # -- points and mask ----------------------------------------------------

    def _xy(self, v: Any, what: str) -> tuple[float, float]:
        try:
            x, y = (float(c) for c in v)
        except Exception:
            raise SpecError(f"{what} must be [x, y], got {v!r}") from None
        H = self.resolution
        if not (math.isfinite(x) and math.isfinite(y)):
            raise SpecError(f"{what} {[x, y]} is not a finite point")
        if not (0 <= x <= H - 1 and 0 <= y <= H - 1):
            raise SpecError(f"{what} {[x, y]} lies outside the {H}x{H} image (pixels 0..{H - 1})")
        return x, y

    def add_point(self, handle: Sequence[float], target: Sequence[float]) -> int:
        """Add a handle -> target pair; returns its index."""
        h, t = self._xy(handle, "handle"), self._xy(target, "target")
        self.end_drag()
        self._points.append(_Point(h, t))
        return len(self._points) - 1

    def move_point(self, i: int, handle: Sequence[float] | None = None, target: Sequence[float] | None = None) -> None:
        """Move the handle and/or the target of point ``i``."""
        self._index(i)
        h = self._xy(handle, "handle") if handle is not None else None
        t = self._xy(target, "target") if target is not None else None
        self.end_drag()
        if h is not None:
            self._points[i].handle = h
        if t is not None:
            self._points[i].target = t

    def remove_point(self, i: int) -> None:
        self._index(i)
        self.end_drag()
        del self._points[i]

    def clear_points(self) -> None:
        self.end_drag()
        self._points.clear()

    def _index(self, i: int) -> None:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(self._points):
            raise SpecError(f"no point {i!r} (there are {len(self._points)})")

    def set_mask(self, mask: Any) -> None:
        """Set the flexible region: ``(H, W)`` bool (True = may change), or None for no mask."""
        m = None
        if mask is not None:
            if hasattr(mask, "detach"):
                mask = mask.detach().cpu().numpy()
            m = np.asarray(mask)
            H = self.resolution
            if m.shape != (H, H):
                raise SpecError(f"mask must be {H}x{H} (the image size), got {'x'.join(map(str, m.shape))}")
            if m.dtype != bool:
                if not np.isin(m, (0, 1)).all():
                    raise SpecError("mask must be boolean (or 0/1)")
                m = m.astype(bool)
            m = m.copy()
        self.end_drag()
        self._mask = m

    # -- images -------------------------------------------------------------

    def image_tensor(self) -> torch.Tensor:
        """The current image ``(1, 3, H, W)`` float in [-1, 1] (rendered on demand, cached)."""
        if self._img_cache is None or self._img_cache[0] != self._version:
            with torch.no_grad():
                img = self.G.synthesis(self._latent, noise_mode=self.options.noise_mode)
            self._img_cache = (self._version, img)
        return self._img_cache[1].clone()

    def image(self):
        """The current image as a PIL RGB image."""
        from ..utils import tensor_to_pil

        return tensor_to_pil(self.image_tensor())

    # -- the drag -----------------------------------------------------------

    def _mask_active(self) -> bool:
        return self._mask is not None and bool(self._mask.any()) and not bool(self._mask.all())

    def _features(self, ws: torch.Tensor, d: _Drag, box: tuple[int, int, int, int] | None):
        return block_features(self.G, ws, d.opts.feature_block, box, noise_mode=d.opts.noise_mode)

    def begin_drag(self) -> None:
        """Start a drag now (otherwise the first :meth:`step` does)."""
        if self._drag is not None:
            return
        if not self._points:
            raise SpecError("add at least one point before dragging")
        opts = self.options.resolved(self.G)
        k = opts.layers
        start = self._latent
        if opts.space == "w":
            w = start[:, :1].clone()
        else:
            w = start[:, :k].clone()
        w.requires_grad_(True)
        held = start[:, k:].clone()
        res = opts.feature_block
        H = self.resolution
        with torch.no_grad():
            ws = torch.cat([(w if w.shape[1] == k else w.expand(-1, k, -1)), held], dim=1)
            feat0, origin = block_features(self.G, ws, res, None, noise_mode=opts.noise_mode)
            handles = torch.tensor([p.handle for p in self._points], dtype=torch.float64)
            refs = sample_features(feat0, handles, H)
        mask_on = self._mask_active()
        self._drag = _Drag(
            opts=opts, w=w, held=held, optim=torch.optim.Adam([w], lr=opts.lr), refs=refs,
            feat0=feat0 if mask_on else None,
            mask=torch.from_numpy(self._mask).to(self.device) if mask_on else None,
            before=self._snapshot(), origins=[p.handle for p in self._points],
        )
        if opts.space == "w" and not torch.equal(self._drag.compose().detach(), self._latent):
            # W space shares one code over the optimised layers (authors' code).
            self._set_latent(self._drag.compose().detach())

    def _stop_distance(self, d: _Drag) -> float:
        return d.opts.stop_distance if d.opts.stop_distance is not None else stop_distance_for(len(self._points))

    def _result(self, d: _Drag, done: bool) -> StepResult:
        dist = self._distances()
        reached = all(x <= self._stop_distance(d) for x in dist)
        return StepResult(step=d.steps, points=self.points, distances=dist, done=done, reached=reached)

    def _distances(self) -> list[float]:
        return [math.hypot(p.target[0] - p.handle[0], p.target[1] - p.handle[1]) for p in self._points]

    def step(self) -> StepResult:
        """One DragGAN iteration: track the handles, test the stop rule, one Adam step.

        The first step of a drag uses the handles as placed (no tracking);
        each later step first tracks them on the image left by the previous
        update.  Returns ``done=True, reached=True`` without changing the
        latent when every handle is within the stop distance.
        """
        self.begin_drag()
        d = self._drag
        assert d is not None
        H = self.resolution
        res = d.opts.feature_block
        handles = torch.tensor([p.handle for p in self._points], dtype=torch.float64)
        targets = torch.tensor([p.target for p in self._points], dtype=torch.float64)
        box = None if d.mask is not None or not self._crop else \
            needed_feature_box(handles, d.opts.r1, d.opts.r2, H, res)
        ws = d.compose()
        feat, origin = self._features(ws, d, box)
        if d.steps > 0 and not d.tracked:
            handles = track_points(feat.detach(), handles, d.refs, d.opts.r2, H, norm=d.opts.tracking,
                                   feature_size=res, origin=origin)
            for p, h in zip(self._points, handles.tolist()):
                p.handle = (float(h[0]), float(h[1]))
        d.tracked = True
        if all(x <= self._stop_distance(d) for x in self._distances()):
            return self._result(d, done=True)
        loss = motion_supervision_loss(feat, handles, targets, d.opts.r1, H, feature_size=res, origin=origin)
        if d.mask is not None and d.opts.lambda_mask > 0:
            loss = loss + d.opts.lambda_mask * mask_loss(feat, d.feat0, d.mask, H)
        result = self._result(d, done=False)
        if loss.requires_grad:
            (grad,) = torch.autograd.grad(loss, [d.w], allow_unused=True)
            if grad is not None:
                d.w.grad = grad
                d.optim.step()
                d.w.grad = None
        d.steps += 1
        d.tracked = False
        self._set_latent(d.compose().detach())
        return StepResult(step=d.steps, points=result.points, distances=result.distances, done=False,
                          reached=result.reached)

    def track(self) -> StepResult:
        """Track the handles on the current image without optimising (``done=True``)."""
        self.begin_drag()
        d = self._drag
        assert d is not None
        if d.steps > 0 and not d.tracked:
            H = self.resolution
            res = d.opts.feature_block
            handles = torch.tensor([p.handle for p in self._points], dtype=torch.float64)
            box = needed_feature_box(handles, 0.5, d.opts.r2, H, res) if self._crop else None
            with torch.no_grad():
                feat, origin = self._features(d.compose(), d, box)
            handles = track_points(feat, handles, d.refs, d.opts.r2, H, norm=d.opts.tracking,
                                   feature_size=res, origin=origin)
            for p, h in zip(self._points, handles.tolist()):
                p.handle = (float(h[0]), float(h[1]))
            d.tracked = True
        return self._result(d, done=True)

    def run(self, max_steps: int = 300) -> Iterator[StepResult]:
        """Drag until the stop rule or ``max_steps`` optimisation steps; yields every step.

        The last result has ``done=True``; its points are tracked on the
        final image and ``reached`` says whether the stop rule was met.  The
        drag ends (and enters the history) when the generator finishes or is
        closed.
        """
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 0:
            raise SpecError(f"max_steps must be an integer >= 0, got {max_steps!r}")
        try:
            while True:
                d = self._drag
                if d is not None and d.steps >= max_steps:
                    yield self.track()
                    return
                r = self.step()
                yield r
                if r.done:
                    return
                if self._drag is not None and self._drag.steps >= max_steps:
                    yield self.track()
                    return
        finally:
            self.end_drag()

    def end_drag(self) -> bool:
        """End the drag in progress; returns True when it changed the latent (and was recorded)."""
        d = self._drag
        if d is None:
            return False
        self._drag = None
        changed = not torch.equal(self._latent, _dec_tensor(d.before["latent"], "latent").to(self.device))
        if changed:
            self._undo.append({"before": d.before, "after": self._snapshot()})
            self._redo.clear()
        return changed

    def _pending_change(self) -> bool:
        d = self._drag
        return d is not None and d.steps > 0

    # -- history ------------------------------------------------------------

    def _snapshot(self) -> dict[str, Any]:
        return {
            "latent": _enc_tensor(self._latent),
            "points": [{"handle": list(p.handle), "target": list(p.target)} for p in self._points],
            "mask": _enc_mask(self._mask),
        }

    def _restore(self, snap: dict[str, Any]) -> None:
        self._set_latent(self._check_ws(_dec_tensor(snap["latent"], "latent")))
        pts = []
        for i, p in enumerate(snap.get("points", [])):
            pts.append(_Point(self._xy(p["handle"], f"point {i} handle"), self._xy(p["target"], f"point {i} target")))
        self._points = pts
        m = _dec_mask(snap.get("mask"), "mask")
        if m is not None and m.shape != (self.resolution, self.resolution):
            raise DragkitError(f"mask must be {self.resolution}x{self.resolution}, got {m.shape}")
        self._mask = m

    def _set_latent(self, ws: torch.Tensor) -> None:
        self._latent = ws
        self._version += 1

    def undo(self) -> bool:
        """Undo the last whole drag (latent, points and mask as before it). False if none."""
        self.end_drag()
        if not self._undo:
            return False
        entry = self._undo.pop()
        self._restore(entry["before"])
        self._redo.append(entry)
        return True

    def redo(self) -> bool:
        """Redo the last undone drag. False if none."""
        self.end_drag()
        if not self._redo:
            return False
        entry = self._redo.pop()
        self._restore(entry["after"])
        self._undo.append(entry)
        return True

    # -- state and files ----------------------------------------------------

    def get_state(self, include_history: bool = True) -> dict[str, Any]:
        """A JSON-able snapshot of everything (a drag in progress is not ended).

        Keys: ``format, version, model, latent, w0, points`` (with each
        handle's ``origin``, its position at the start of the drag),
        ``mask`` (packed bits), ``options``, ``seed``, ``psi`` and, when
        ``include_history``, ``history = {undo: [...], redo: [...]}``.
        """
        origins = self._drag.origins if self._drag is not None else [p.handle for p in self._points]
        state: dict[str, Any] = {
            "format": SESSION_FORMAT,
            "version": SESSION_VERSION,
            "model": {
                "name": getattr(self.G, "model_name", None),
                "img_resolution": self.resolution,
                "num_ws": int(self.G.num_ws),
                "w_dim": int(self.G.w_dim),
            },
            "seed": self.seed,
            "psi": self.psi,
            "latent": _enc_tensor(self._latent),
            "w0": _enc_tensor(self.w0),
            "points": [
                {"handle": list(p.handle), "target": list(p.target), "origin": list(o)}
                for p, o in zip(self._points, origins)
            ],
            "mask": _enc_mask(self._mask),
            "options": self.options.to_dict(),
        }
        if include_history:
            state["history"] = {"undo": copy.deepcopy(self._undo), "redo": copy.deepcopy(self._redo)}
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`get_state` snapshot (ends any drag in progress).

        Raises:
            DragkitError: the snapshot is malformed or made for another model.
        """
        if not isinstance(state, dict) or state.get("format") != SESSION_FORMAT:
            raise DragkitError(f"not a {SESSION_FORMAT} state")
        if int(state.get("version", 0)) > SESSION_VERSION:
            raise DragkitError(f"session version {state.get('version')} is newer than this dragkit supports")
        model = state.get("model", {})
        mine = (self.resolution, int(self.G.num_ws), int(self.G.w_dim))
        theirs = (model.get("img_resolution"), model.get("num_ws"), model.get("w_dim"))
        if tuple(theirs) != mine:
            raise DragkitError(
                f"session was made for a {theirs[0]} px model with {theirs[1]}x{theirs[2]} codes; "
                f"this one is {mine[0]} px with {mine[1]}x{mine[2]}"
            )
        try:
            options = DragOptions.from_dict(dict(state.get("options", {})))
            options.validate(self.G)
            self._drag = None
            self._restore(state)
            self.w0 = self._check_ws(_dec_tensor(state["w0"], "w0"))
            hist = state.get("history") or {}
            self._undo = copy.deepcopy(list(hist.get("undo", [])))
            self._redo = copy.deepcopy(list(hist.get("redo", [])))
        except (KeyError, TypeError, ValueError) as exc:
            raise DragkitError(f"malformed session state: {exc}") from None
        self.options = options
        self.seed = state.get("seed")
        self.psi = float(state.get("psi", self.psi))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the session as JSON (ends a drag in progress first); atomic."""
        from ..utils import atomic_write_bytes

        self.end_drag()
        data = json.dumps(self.get_state(), separators=(",", ":")).encode("utf-8")
        return atomic_write_bytes(path, data)

    @classmethod
    def load(cls, path: str | os.PathLike[str], G: Any) -> "DragSession":
        """Read a session written by :meth:`save` for generator ``G``."""
        try:
            state = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DragkitError(f"{path}: not a dragkit session file ({exc})") from None
        if not isinstance(state, dict) or state.get("format") != SESSION_FORMAT:
            raise DragkitError(f"{path}: not a dragkit session file")
        s = cls(G, _ws=torch.zeros(1, G.num_ws, G.w_dim, device=next(G.parameters()).device))
        s.set_state(state)
        return s
