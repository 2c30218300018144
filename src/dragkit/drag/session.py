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

History: a session records each drag that changed the latent (its undo
and redo stacks are part of :meth:`~DragSession.get_state` and of session
files).  A caller that keeps its own history of every action - the web app
does - makes the session with ``history=False``, so there is one undo system
per use, never two.

Everything is kept on the generator's device; the latent is float32.

Why this module is long (~860 lines): the session's state - latent, points,
mask, the drag in progress, its history - changes together (any action that
is not a step ends the drag; history entries, :meth:`~DragSession.get_state`
and session files share one snapshot form), so its methods stay in one
class.  Everything that does not need that state lives elsewhere: the maths
in :mod:`.core`, windowed features in :mod:`.features`, options and bounds in
:mod:`.options`, points in :mod:`.points`, results in :mod:`.results`,
encodings in :mod:`.encoding`, the file schema in :mod:`.schema`.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from ..errors import DragkitError, SpecError
from ..threads import tune_threads
from . import freedrag as fd
from .adam import LatentAdam
from .core import (
    confident_templates,
    mask_loss,
    motion_supervision_loss,
    needed_feature_box,
    reference_patch,
    sample_features,
    track_points,
)
from .encoding import b64_chars, decode_mask, decode_tensor, encode_mask, encode_tensor, mask_fits
from .features import FeatureSource, feature_source, source_features
from .options import (  # re-exported: their home is .options
    MAX_POINTS,
    DragOptions,
    auto_feature_block,
    auto_feature_layer,
    auto_lambda_mask,
    auto_r1,
    auto_r2,
    check_psi,
    check_seed,
    check_steps,
    image_size,
)
from .points import check_inside, parse_xy
from .protocols import DragGenerator
from .results import PointPair, StepResult  # re-exported: their home is .results
from .schema import MAX_SESSION_BYTES, SESSION_FORMAT, SESSION_VERSION, parse_session_state

__all__ = [
    "DragOptions",
    "PointPair",
    "StepResult",
    "DragSession",
    "auto_r1",
    "auto_r2",
    "auto_lambda_mask",
    "auto_feature_block",
    "auto_feature_layer",
    "SESSION_FORMAT",
    "MAX_POINTS",
]


@dataclass
class _Point:
    handle: tuple[float, float]
    target: tuple[float, float]


@dataclass
class _Drag:
    opts: DragOptions  # resolved
    src: FeatureSource  # the feature map and its geometry
    w: torch.Tensor  # the optimised codes, (1, k, w_dim) or (1, 1, w_dim)
    held: torch.Tensor  # (1, num_ws - k, w_dim)
    optim: LatentAdam
    refs: torch.Tensor  # (N, C) tracking references f_i
    feat0: torch.Tensor | None  # (1, C, h, w), the whole map, when the mask term is on
    mask: torch.Tensor | None  # (H, W) bool when the mask term is on
    before: dict[str, Any]  # snapshot for undo
    origins: list[tuple[float, float]]
    steps: int = 0
    tracked: bool = False  # handles already tracked on the current latent
    ref_patch: torch.Tensor | None = None  # (N, K, C) original handle patches (supervise_original)
    track_tmpl: torch.Tensor | None = None  # (N, C) adaptive tracking templates (confidence)
    free: fd.FreeDragState | None = None  # method freedrag

    def compose(self) -> torch.Tensor:
        k = self.opts.layers
        w = self.w if self.w.shape[1] == k else self.w.expand(-1, k, -1)
        return torch.cat([w, self.held], dim=1)


class DragSession:
    """Interactive DragGAN editing of one latent.

    Args:
        G: a :class:`dragkit.nets.Generator` (square or StyleGAN-Human's
            ``H x H/2``), a :class:`dragkit.nets.StyleGAN3Generator`, or any
            :class:`~.protocols.DragGenerator`, in eval mode.  Points are
            ``[x, y]`` pixels of its ``H x W`` image.
        seed, psi: the starting latent is ``G.ws_from_seed(seed, psi)``.
        options: :class:`DragOptions` (default settings when None).
        device: where to compute; must be the generator's device (None = it).
        history: record drags for :meth:`undo`/:meth:`redo` (False: the
            caller keeps its own history; undo and redo then do nothing).

    Raises:
        SpecError: bad options or points, a seed outside ``0 .. 2^32 - 1`` or not whole,
            a psi outside ``-1 .. 2`` (``drag.options.check_seed``/``check_psi``);
            DragkitError for other misuse.
    """

    def __init__(
        self, G: DragGenerator, seed: int = 0, psi: float = 0.7, *, options: DragOptions | None = None,
        device: str | torch.device | None = None, history: bool = True, _ws: torch.Tensor | None = None,
    ) -> None:
        tune_threads()  # once per process (dragkit/threads.py): a library drag as fast as the CLI's
        self.G = G
        gdev = next(G.parameters()).device
        self.device = torch.device(device) if device is not None else gdev
        if self.device != gdev:
            raise DragkitError(f"the generator is on {gdev}, not {self.device}; move it with G.to(device) first")
        self.options = copy.deepcopy(options) if options is not None else DragOptions()
        self.options.validate(G)
        self.seed = None if _ws is not None else check_seed(seed)
        self.psi = check_psi(psi) if _ws is None else float(psi)
        ws = _ws if _ws is not None else G.ws_from_seed(self.seed, psi=self.psi)
        self._latent = self._check_ws(ws)
        self.w0 = self._latent.clone()
        self._points: list[_Point] = []
        self._mask: np.ndarray | None = None
        self._drag: _Drag | None = None
        self._history = bool(history)
        self._undo: list[dict[str, Any]] = []
        self._redo: list[dict[str, Any]] = []
        self._img_cache: tuple[int, torch.Tensor] | None = None
        self._version = 0  # bumps whenever the latent changes
        self._crop = True  # compute features on the handles' window when no mask is set
        self.inversion: dict[str, Any] | None = None  # an edit of a photo: its block (dragkit.invert.edit)
        self.edit_files: Any = None  # ... and the files beside it, written by save() (invert.edit.EditFiles)
        self.inversion_result: Any = None  # from_image: the Inversion (PSNR, target, reconstruction, warnings)

    # -- construction -------------------------------------------------------

    @classmethod
    def from_latent(cls, G: DragGenerator, ws: torch.Tensor | np.ndarray, options: DragOptions | None = None,
                    history: bool = True) -> "DragSession":
        """Start from W+ codes ``(1, num_ws, w_dim)`` (or ``(num_ws, w_dim)``, or W ``(1, w_dim)``)."""
        t = torch.as_tensor(np.asarray(ws) if isinstance(ws, np.ndarray) else ws).to(torch.float32)
        if t.ndim == 2 and t.shape[0] == 1 and t.shape[1] == G.w_dim and G.num_ws != 1:
            t = t[:, None, :].repeat(1, G.num_ws, 1)
        elif t.ndim == 2:
            t = t[None]
        return cls(G, options=options, history=history, _ws=t)

    @classmethod
    def from_image(
        cls, G: Any, photo: Any, *, align: bool = False, pti: bool = False, config: Any | None = None,
        D: Any = "auto", model: str | None = None, options: DragOptions | None = None,
        progress: Any | None = None, cancel: Any | None = None,
    ) -> "DragSession":
        """A session that drags a photo: read, (align,) invert into ``G`` (W, W+, optional PTI).

        Args:
            G: the generator (never modified; with PTI the session gets a tuned copy that belongs to it).
            photo: a path, the bytes of a file, an ``(H, W, 3)`` uint8 array or a PIL image.
            align, pti: face alignment (needs ``dragkit[faces]``) and pivotal tuning, when ``config`` is None.
            config: :class:`dragkit.invert.InvertConfig` (overrides ``align`` and ``pti``).
            D: the model's discriminator, None, or ``'auto'`` (the one stored beside ``model``/``G``).
            model: the base model's name or path, recorded in the edit (default ``G.model_name``).
            progress, cancel: called after / polled before every optimisation step
                (:class:`dragkit.invert.Progress`; ``cancel() -> True`` stops it).

        ``session.inversion_result`` holds the inversion (``psnr``, ``target``,
        ``reconstruction``, ``warnings``); :meth:`save` writes the edit's files
        (tuned generator, pivot, photo, reconstruction) beside the session.
        See docs/invert.md.

        Raises:
            PhotoError: unreadable, corrupt, too large or too small file; with ``align``, no usable
                face (``NoFaceError``; several faces: the largest is used, with a warning).
            InversionCancelled: cancelled.
            DragkitError: bad settings, dlib missing when aligning.
        """
        from ..invert.edit import session_from_image
        from ..invert.pipeline import InvertConfig

        cfg = config if config is not None else InvertConfig(align=align, pti=pti)
        return session_from_image(G, photo, cfg, D=D, model=model, options=options, progress=progress, cancel=cancel)

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
        """The image height ``H`` in pixels (``G.img_resolution``)."""
        return int(self.G.img_resolution)

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the image in pixels."""
        return image_size(self.G)

    @property
    def latent(self) -> torch.Tensor:
        """Current W+ codes ``(1, num_ws, w_dim)`` (a copy)."""
        return self._latent.clone()

    @property
    def points(self) -> list[PointPair]:
        """Current (tracked) handles and their targets."""
        return [PointPair(tuple(p.handle), tuple(p.target)) for p in self._points]

    @property
    def num_points(self) -> int:
        """How many handle/target pairs there are."""
        return len(self._points)

    @property
    def stop_distance(self) -> float:
        """The stop rule's distance in pixels for the current points and options
        (the drag in progress's, if any): every handle within it of its target ends a drag."""
        opts = self._drag.opts if self._drag is not None else self.options
        return opts.stop_distance_at(len(self._points))

    @property
    def mask(self) -> np.ndarray | None:
        """``(H, W)`` bool, True = flexible, or None."""
        return None if self._mask is None else self._mask.copy()

    @property
    def can_undo(self) -> bool:
        return bool(self._undo) or (self._history and self._pending_change())

    @property
    def can_redo(self) -> bool:
        return bool(self._redo) and not self._pending_change()

    @property
    def dragging(self) -> bool:
        """A drag is in progress (steps taken since the last non-step action)."""
        return self._drag is not None

    # -- points and mask ----------------------------------------------------

    def _xy(self, v: Any, what: str) -> tuple[float, float]:
        xy = parse_xy(v, what)
        H, W = self.image_size
        check_inside(xy, W, H, what)
        return xy

    def add_point(self, handle: Sequence[float], target: Sequence[float]) -> int:
        """Add a handle -> target pair; returns its index.

        Raises:
            SpecError: a point outside the image, or more than :data:`MAX_POINTS` pairs.
        """
        h, t = self._xy(handle, "handle"), self._xy(target, "target")
        if len(self._points) >= MAX_POINTS:
            raise SpecError(f"at most {MAX_POINTS} point pairs per drag")
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
            raise SpecError(f"no point pair #{i!r:.20}; there are {len(self._points)}")

    def set_mask(self, mask: Any) -> None:
        """Set the flexible region: ``(H, W)`` bool (True = may change), or None for no mask."""
        m = None
        if mask is not None:
            if hasattr(mask, "detach"):
                mask = mask.detach().cpu().numpy()
            m = np.asarray(mask)
            H, W = self.image_size
            if m.shape != (H, W):
                raise SpecError(f"mask must be {W}x{H} (width x height, the image size), "
                                f"got {'x'.join(map(str, m.shape[::-1]))}")
            if m.dtype != bool:
                if not np.isin(m, (0, 1)).all():
                    raise SpecError("mask must be boolean (or 0/1)")
                m = m.astype(bool)
            m = m.copy()
        self.end_drag()
        self._mask = m

    def handles_outside_mask(self) -> list[int]:
        """Indices of the pairs whose handle lies on a fixed pixel of the mask (its nearest
        pixel is False): such a handle cannot move, and a drag would run to its step cap.
        Empty without a mask (everything may move)."""
        if self._mask is None:
            return []
        H, W = self.image_size
        out = []
        for i, p in enumerate(self._points):
            x = min(max(int(round(p.handle[0])), 0), W - 1)
            y = min(max(int(round(p.handle[1])), 0), H - 1)
            if not self._mask[y, x]:
                out.append(i)
        return out

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
        return source_features(self.G, ws, d.src, box, noise_mode=d.opts.noise_mode, precision=d.opts.precision,
                               compiled=d.opts.compile)

    def _windows(self, d: _Drag) -> bool:
        """Whether a step without a mask computes the map on the handles' window only: a StyleGAN2
        block, or a StyleGAN3 layer (``run_window``; exact, ``tests/test_stylegan3_window.py``)."""
        return self._crop and (d.src.kind == "block" or hasattr(self.G.synthesis, "window_plan"))

    def _box(self, d: _Drag, handles: torch.Tensor, r1: float) -> tuple[int, int, int, int] | None:
        """The map box a step reads (None = the whole map: a mask is on, or cropping is off)."""
        if d.mask is not None or not self._windows(d):
            return None
        return needed_feature_box(handles, r1, d.opts.r2, None, geometry=d.src.geometry)

    def check_drag(self) -> None:
        """Raise :class:`SpecError` if a drag of the current points with the current
        options would pass a bound of :mod:`.options` (radii, points, work per step).

        Every drag checks this before any computation; callers (the server,
        the CLI) may call it earlier to refuse a drag before queueing it.
        """
        self.options.validate(self.G, num_points=len(self._points))

    def begin_drag(self) -> None:
        """Start a drag now (otherwise the first :meth:`step` does)."""
        if self._drag is not None:
            return
        if not self._points:
            raise SpecError("add at least one point before dragging")
        self.check_drag()
        mask_on = self._mask_active()
        opts = self.options.resolved(self.G, masked=mask_on)
        k = opts.layers
        start = self._latent
        if opts.space == "w":
            w = start[:, :1].clone()
        else:
            w = start[:, :k].clone()
        w.requires_grad_(True)
        held = start[:, k:].clone()
        src = feature_source(self.G, opts.feature_block, opts.feature_layer)
        with torch.no_grad():
            ws = torch.cat([(w if w.shape[1] == k else w.expand(-1, k, -1)), held], dim=1)
            feat0, _origin = source_features(self.G, ws, src, None, noise_mode=opts.noise_mode,
                                             precision=opts.precision)
            handles = torch.tensor([p.handle for p in self._points], dtype=torch.float64)
            refs = sample_features(feat0, handles, None, geometry=src.geometry)
            ref_patch = None
            if opts.method == "draggan" and opts.supervise_original:
                ref_patch = reference_patch(feat0, handles, opts.r1, None, geometry=src.geometry)
            fd_state = None
            if opts.method == "freedrag":
                fd_state = fd.FreeDragState(fd.patch_features(feat0, handles, geometry=src.geometry),
                                            fd.expected_loss(opts.freedrag_loss, feat0))
        self._drag = _Drag(
            opts=opts, src=src, w=w, held=held, optim=LatentAdam(w, lr=opts.lr), refs=refs,
            feat0=feat0 if mask_on else None,
            mask=torch.from_numpy(self._mask).to(self.device) if mask_on else None,
            before=self._snapshot(), origins=[p.handle for p in self._points],
            ref_patch=ref_patch, free=fd_state,
        )
        if opts.space == "w" and not torch.equal(self._drag.compose().detach(), self._latent):
            # W space shares one code over the optimised layers (authors' code).
            self._set_latent(self._drag.compose().detach())

    def _result(self, steps: int, done: bool) -> StepResult:
        dist = [math.hypot(p.target[0] - p.handle[0], p.target[1] - p.handle[1]) for p in self._points]
        return StepResult(step=steps, points=self.points, distances=dist, done=done, stop_distance=self.stop_distance)

    def status(self) -> StepResult:
        """Where the points are now: the current handles, their distances and the stop rule
        (``step``: steps of the drag in progress, ``done``: no drag is in progress).  Changes nothing."""
        d = self._drag
        return self._result(d.steps if d is not None else 0, done=d is None)

    def step(self) -> StepResult:
        """One DragGAN iteration: track the handles, test the stop rule, one Adam step
        (``options.method == 'freedrag'``: one FreeDrag step instead, :mod:`.freedrag`).

        The first step of a drag uses the handles as placed (no tracking);
        each later step first tracks them on the image left by the previous
        update.  Returns ``done=True, reached=True`` without changing the
        latent when every handle is within the stop distance.
        """
        self.begin_drag()
        d = self._drag
        assert d is not None
        if d.free is not None:
            return self._freedrag_step(d)
        geom = d.src.geometry
        handles = torch.tensor([p.handle for p in self._points], dtype=torch.float64)
        targets = torch.tensor([p.target for p in self._points], dtype=torch.float64)
        box = self._box(d, handles, d.opts.r1)
        ws = d.compose()
        feat, origin = self._features(ws, d, box)
        if d.steps > 0 and not d.tracked:
            handles = self._track(d, feat.detach(), handles, origin)
        d.tracked = True
        result = self._result(d.steps, done=False)
        if result.reached:
            return dataclasses.replace(result, done=True)
        sup, sup_origin = feat, origin
        if box is None and d.mask is not None:
            # the whole map (for the mask term): the motion term reads only the handles' box, and its
            # gathers' backward on a slice builds one whole-map gradient instead of one per gather
            x0, y0, x1, y1 = needed_feature_box(handles, d.opts.r1, 0, None, geometry=geom)
            sup, sup_origin = feat[:, :, y0:y1, x0:x1], (x0, y0)
        loss = motion_supervision_loss(sup, handles, targets, d.opts.r1, None, origin=sup_origin, geometry=geom,
                                       reference=d.ref_patch)
        self._descend(d, feat, loss)
        d.tracked = False
        self._set_latent(d.compose().detach())
        return dataclasses.replace(result, step=d.steps)

    @staticmethod
    def _descend(d: _Drag, feat: torch.Tensor, loss: torch.Tensor) -> None:
        """One optimiser step of the drag on ``loss`` plus the mask term (``lambda_mask``, when a mask is set):
        the gradient reaches the latent only; counts the step."""
        if d.mask is not None and d.opts.lambda_mask > 0:
            loss = loss + d.opts.lambda_mask * mask_loss(feat, d.feat0, d.mask, None, geometry=d.src.geometry)
        if loss.requires_grad:
            (grad,) = torch.autograd.grad(loss, [d.w], allow_unused=True)
            if grad is not None:
                d.w.grad = grad
                d.optim.step()
                d.w.grad = None
        d.steps += 1

    def _track(self, d: _Drag, feat: torch.Tensor, handles: torch.Tensor, origin: Any) -> torch.Tensor:
        """DragGAN's tracking of the handles on ``feat`` (options ``tracking``, ``subpixel``, ``confidence``);
        moves the session's handles there and returns them ``(N, 2)``."""
        o, geom = d.opts, d.src.geometry
        adaptive = d.track_tmpl is not None
        tmpl = d.track_tmpl if adaptive else d.refs
        new = track_points(feat, handles, tmpl, o.r2, None, norm=o.tracking, origin=origin, geometry=geom,
                           subpixel=o.subpixel)
        if o.confidence is not None:
            matched = sample_features(feat, new, None, origin=origin, geometry=geom)
            d.track_tmpl, ok = confident_templates(matched, d.refs, o.confidence)
            if adaptive and not bool(ok.all()):  # a poor match: track with the original again
                again = track_points(feat, handles, d.refs, o.r2, None, norm=o.tracking, origin=origin,
                                     geometry=geom, subpixel=o.subpixel)
                new = torch.where(ok[:, None], new, again)
        for p, h in zip(self._points, new.tolist()):
            p.handle = (float(h[0]), float(h[1]))
        return new

    def _freedrag_step(self, d: _Drag) -> StepResult:
        """One FreeDrag step (:mod:`.freedrag`): a sub-motion's first step localises the handles first."""
        st, o, geom = d.free, d.opts, d.src.geometry
        assert st is not None
        handles = torch.tensor([p.handle for p in self._points], dtype=torch.float64)
        targets = torch.tensor([p.target for p in self._points], dtype=torch.float64)
        if d.steps == 0 and self._result(0, done=False).reached:
            d.tracked = True
            return self._result(0, done=True)
        box = None
        if d.mask is None and self._windows(d):
            r1b, r2b = fd.reach(o.freedrag_step)
            box = needed_feature_box(handles, r1b, r2b, None, geometry=geom)
        feat, origin = self._features(d.compose(), d, box)
        if st.sub == 0:
            if d.steps > 0:  # close the last sub-motion: its final loss, who arrived, the templates
                with torch.no_grad():
                    cur = fd.patch_features(feat.detach(), handles, geometry=geom, origin=origin)
                    st.loss_end = (cur - st.templates).abs().mean(dim=(1, 2)).double().cpu()
                st.done = fd.arrived(handles, targets, st.loss_end, st.expected, self.stop_distance)
                st.templates = fd.update_templates(st.templates, cur, st.loss_end, st.done, st.expected)
                if bool(st.done.all()):
                    d.tracked = True
                    return self._result(d.steps, done=True)
            handles = fd.line_search(feat, handles, targets, st.templates, expected=st.expected,
                                     d_max=o.freedrag_step, loss_ini=st.loss_ini, loss_end=st.loss_end,
                                     active=~st.done, geometry=geom, origin=origin)
            for p, h in zip(self._points, handles.tolist()):
                p.handle = (float(h[0]), float(h[1]))
        d.tracked = True
        result = self._result(d.steps, done=False)
        losses = fd.template_loss(feat, handles, st.templates, geometry=geom, origin=origin)
        if st.sub == 0:
            st.loss_ini = losses.detach().double().cpu()
        self._descend(d, feat, losses.sum())
        st.sub += 1
        if st.sub >= fd.SUB_STEPS or float(losses.detach().max()) < 0.25 * st.expected:
            st.sub = 0
        self._set_latent(d.compose().detach())
        return dataclasses.replace(result, step=d.steps)

    def track(self) -> StepResult:
        """Track the handles on the current image without optimising (``done=True``)."""
        self.begin_drag()
        d = self._drag
        assert d is not None
        if d.steps > 0 and not d.tracked and d.free is None:  # FreeDrag's handles are its localised points
            handles = torch.tensor([p.handle for p in self._points], dtype=torch.float64)
            box = None
            if self._windows(d):
                box = needed_feature_box(handles, 0.5, d.opts.r2, None, geometry=d.src.geometry)
            with torch.no_grad():
                feat, origin = self._features(d.compose(), d, box)
            self._track(d, feat, handles, origin)
        d.tracked = True
        return self._result(d.steps, done=True)

    def finish(self) -> StepResult:
        """End the drag in progress: track the handles on the final image, record the drag
        (when the session keeps history) and return the final result (``done=True``).
        Without a drag in progress, the current :meth:`status`."""
        result = self.track() if self._drag is not None else self.status()
        self.end_drag()
        return result

    def run(self, max_steps: int = 300) -> Iterator[StepResult]:
        """Drag until the stop rule or ``max_steps`` optimisation steps; yields one result per state.

        Result ``k`` (``r.step == k``) holds the handles tracked after ``k``
        updates: the first is the start (``step == 0``, the points as placed),
        then one per update, each step number once; the last has ``done=True``,
        its points tracked on the final image, and ``reached`` says whether the
        stop rule was met.  A drag of N updates yields N + 1 results.
        ``max_steps=0`` changes nothing and yields the start, ``done=True``.
        (:meth:`step` labels its result with the updates *after* its own;
        ``run`` labels by the state the points were tracked on.)  The drag ends
        (and enters the history) when the generator finishes or is closed.
        """
        max_steps = check_steps(max_steps)
        if max_steps == 0:
            yield self.status() if self._drag is None else self.track()
            return
        try:
            while True:
                d = self._drag
                if d is not None and d.steps >= max_steps:
                    yield self.track()
                    return
                r = self.step()
                if r.done:
                    yield r
                    return
                yield dataclasses.replace(r, step=r.step - 1)  # tracked before this update
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
        changed = not torch.equal(self._latent, decode_tensor(d.before["latent"], "latent").to(self.device))
        if changed and self._history:
            self._undo.append({"before": d.before, "after": self._snapshot()})
            self._redo.clear()
        return changed

    def _pending_change(self) -> bool:
        d = self._drag
        return d is not None and d.steps > 0

    # -- history ------------------------------------------------------------

    def _snapshot(self) -> dict[str, Any]:
        return {
            "latent": encode_tensor(self._latent),
            "points": [{"handle": list(p.handle), "target": list(p.target)} for p in self._points],
            "mask": encode_mask(self._mask),
        }

    def _restore(self, snap: dict[str, Any]) -> None:
        latent = self._check_ws(decode_tensor(snap["latent"], "latent", self._ws_shape))
        points = self._check_points(snap.get("points", []))
        m = decode_mask(snap.get("mask"), "mask", self.image_size)
        self._set_latent(latent)
        self._points = points
        self._mask = m

    @property
    def _ws_shape(self) -> tuple[int, int, int]:
        return (1, int(self.G.num_ws), int(self.G.w_dim))

    def _check_points(self, raw: Sequence[Any]) -> list[_Point]:
        if len(raw) > MAX_POINTS:
            raise SpecError(f"at most {MAX_POINTS} point pairs per drag, got {len(raw)}")
        return [_Point(self._xy(p["handle"], f"point {i} handle"), self._xy(p["target"], f"point {i} target"))
                for i, p in enumerate(raw)]

    def _check_snapshot(self, snap: dict[str, Any], what: str) -> None:
        """A history snapshot fits this model (shapes and points), checked without decoding it."""
        lat, mask = snap["latent"], snap.get("mask")
        if list(lat["shape"]) != list(self._ws_shape) or len(lat["data"]) != b64_chars(4 * math.prod(self._ws_shape)):
            raise DragkitError(f"{what}: latent does not fit this model")
        H, W = self.image_size
        if mask is not None and not mask_fits(mask, (H, W)):
            raise DragkitError(f"{what}: mask does not fit the {W}x{H} image")
        self._check_points(snap.get("points", []))

    def _set_latent(self, ws: torch.Tensor) -> None:
        self._latent = ws
        self._version += 1

    def undo(self) -> bool:
        """Undo the last whole drag (latent, points and mask as before it). False if none."""
        return self._travel(self._undo, self._redo, "before")

    def redo(self) -> bool:
        """Redo the last undone drag. False if none."""
        return self._travel(self._redo, self._undo, "after")

    def _travel(self, src: list[dict[str, Any]], dst: list[dict[str, Any]], side: str) -> bool:
        self.end_drag()
        if not src:
            return False
        entry = src.pop()
        self._restore(entry[side])
        dst.append(entry)
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
                "img_width": self.image_size[1],
                "num_ws": int(self.G.num_ws),
                "w_dim": int(self.G.w_dim),
            },
            "seed": self.seed,
            "psi": self.psi,
            "latent": encode_tensor(self._latent),
            "w0": encode_tensor(self.w0),
            "points": [
                {"handle": list(p.handle), "target": list(p.target), "origin": list(o)}
                for p, o in zip(self._points, origins)
            ],
            "mask": encode_mask(self._mask),
            "options": self.options.to_dict(),
        }
        if include_history:
            state["history"] = {"undo": copy.deepcopy(self._undo), "redo": copy.deepcopy(self._redo)}
        if self.inversion is not None:
            state["inversion"] = copy.deepcopy(self.inversion)
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`get_state` snapshot (ends any drag in progress).

        The snapshot is validated field by field (:mod:`.schema`), then
        against this model (latent shape, mask size, points inside the
        image, option bounds) before anything is decoded; on any error the
        session is unchanged.

        Raises:
            DragkitError: the snapshot is malformed or made for another model
                (:class:`SpecError` for points or options out of bounds).
        """
        st = parse_session_state(state).model_dump()
        model = st["model"]
        H, W = self.image_size
        # a file without img_width was written before non-square models: square
        mine = (H, W, int(self.G.num_ws), int(self.G.w_dim))
        theirs = (model["img_resolution"], model.get("img_width") or model["img_resolution"], model["num_ws"],
                  model["w_dim"])
        if theirs != mine:
            raise DragkitError(
                f"session was made for a {theirs[0]}x{theirs[1]} px model with {theirs[2]}x{theirs[3]} codes; "
                f"this one is {mine[0]}x{mine[1]} px with {mine[2]}x{mine[3]}"
            )
        options = DragOptions.from_dict(dict(st["options"]))
        options.validate(self.G, num_points=len(st["points"]) or None)
        if st.get("inversion") is not None:
            from ..invert.edit import read_inversion_block

            read_inversion_block(state, "session")
        hist = st.get("history") or {"undo": [], "redo": []}
        for kind in ("undo", "redo"):
            for i, entry in enumerate(hist[kind]):
                for side in ("before", "after"):
                    self._check_snapshot(entry[side], f"history.{kind}[{i}].{side}")
        w0 = self._check_ws(decode_tensor(st["w0"], "w0", self._ws_shape))
        old = (self._latent, self._points, self._mask, self._version)
        self._drag = None
        try:
            self._restore(st)
        except BaseException:
            self._latent, self._points, self._mask, self._version = old
            raise
        self.w0 = w0
        self._undo = list(hist["undo"]) if self._history else []
        self._redo = list(hist["redo"]) if self._history else []
        self.options = options
        self.seed = st["seed"]
        self.psi = float(st["psi"])
        self.inversion = copy.deepcopy(state.get("inversion"))

    def to_bytes(self) -> bytes:
        """The session file's bytes (what :meth:`save` writes; ends a drag in progress first)."""
        self.end_drag()
        return json.dumps(self.get_state(), separators=(",", ":")).encode("utf-8")

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the session as JSON (ends a drag in progress first); atomic.

        An edit of a photo (:meth:`from_image`, ``dragkit.invert.load_inversion``)
        writes its files beside it too - the tuned generator, the pivot, the
        photo and its reconstruction - all or nothing (``path`` must then be
        ``NAME.dragkit.json``).
        """
        if self.edit_files is not None:
            return self.edit_files.write(self, path)["session"]
        from ..utils import atomic_write_bytes

        return atomic_write_bytes(path, self.to_bytes())

    @classmethod
    def from_bytes(cls, data: bytes, G: DragGenerator, *, history: bool = True) -> "DragSession":
        """A session from a session file's bytes (untrusted: validated by :meth:`set_state`).

        ``history=False``
        drops the file's drag history (see the module docstring).

        Raises:
            DragkitError: too large, not JSON, or not a valid session for ``G``;
                the message never contains a path.
        """
        if len(data) > MAX_SESSION_BYTES:
            raise DragkitError(f"not a dragkit session file (larger than {MAX_SESSION_BYTES // 2**20} MiB)")

        def no_constant(name: str) -> Any:
            raise ValueError(f"{name} is not a number")

        try:
            state = json.loads(bytes(data).decode("utf-8"), parse_constant=no_constant)
        except (UnicodeDecodeError, ValueError) as exc:
            raise DragkitError(f"not a dragkit session file ({str(exc)[:120]})") from None
        except RecursionError:
            raise DragkitError("not a dragkit session file (nests too deeply)") from None
        if not isinstance(state, dict) or state.get("format") != SESSION_FORMAT:
            raise DragkitError("not a dragkit session file")
        s = cls(G, history=history, _ws=torch.zeros(1, G.num_ws, G.w_dim, device=next(G.parameters()).device))
        s.set_state(state)
        return s

    @classmethod
    def load(cls, G: Any, path: Any) -> "DragSession":
        """Read a session written by :meth:`save`: ``DragSession.load(G, path)``, the generator
        first as in ``DragSession(G, ...)``.  The older order ``load(path, G)`` is still accepted
        (told apart by which argument is a path).

        Raises:
            DragkitError: unreadable file, not a session file, or made for another model shape.
        """
        if isinstance(G, (str, os.PathLike)) and not isinstance(path, (str, os.PathLike)):
            G, path = path, G
        if not isinstance(path, (str, os.PathLike)):
            raise DragkitError(f"DragSession.load(G, path): path must be a file path, got {type(path).__name__}")
        if not hasattr(G, "ws_from_seed") or not hasattr(G, "synthesis"):
            raise DragkitError(f"DragSession.load(G, path): G must be a generator, got {type(G).__name__}")
        p = Path(path)
        try:
            with open(p, "rb") as f:
                data = f.read(MAX_SESSION_BYTES + 1)
        except OSError as exc:
            raise DragkitError(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None
        try:
            return cls.from_bytes(data, G)
        except DragkitError as exc:
            raise type(exc)(f"{path}: {exc}") from None
