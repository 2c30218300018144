"""Projection: optimise a latent so that the generator reproduces a photo - W first, then W+.

Phase 1 optimises one code ``w`` shared by all layers (W space: stays on
the model's manifold, so the result edits well), starting from the best
of ``init_candidates`` random codes (or the mean code) and with noise added
to it that fades out (so the search is not stuck at the start).  Phase 2
frees every layer's code (W+: reproduces more, edits a little less well),
starting from phase 1's result, optionally pulled towards their mean.
Optionally the generator's per-layer noise maps are optimised too, with
StyleGAN2's noise regularisation (their spatial autocorrelation is
penalised and they are renormalised after every step) - off by default:
noise maps do not move when a drag moves the face (docs/invert.md).

Codes are optimised in standardised units: ``w = w_avg + sigma * u`` with
``sigma`` the per-coordinate standard deviation of the model's W (measured
on 2000 mapped samples), so learning rates mean the same on every model.

Adam; the learning rate ramps up over the first 5 % of each phase and
down (cosine) over the last 25 %.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ..errors import DragkitError
from .losses import LossWeights, ReconstructionLoss, noise_regularisation

__all__ = ["ProjectConfig", "Projection", "Progress", "InversionCancelled", "project", "w_statistics",
           "noise_buffers", "no_labels", "lr_factor", "check_settings"]


class InversionCancelled(DragkitError):
    """The caller asked the inversion to stop."""


@dataclass
class Progress:
    """One report of a running inversion (given to ``progress`` callbacks).

    Attributes:
        phase: ``'w'``, ``'w+'`` or ``'pti'``.
        step: steps done in this phase; steps: the phase's total.
        loss: the weighted loss of the step; psnr: of the image at this step (dB, [-1, 1] range).
        elapsed: seconds since the inversion started.
        image: the current image ``(1, 3, H, W)`` (detached), for previews.
    """

    phase: str
    step: int
    steps: int
    loss: float
    psnr: float
    elapsed: float
    image: torch.Tensor | None = None


ProgressFn = Callable[[Progress], None]
CancelFn = Callable[[], bool]


def check_settings(config: Any, integers: Mapping[str, int], numbers: Sequence[str], prefix: str = "") -> None:
    """Refuse a settings object whose ``integers`` are not whole numbers >= their minimum, or whose
    ``numbers`` are not finite numbers >= 0 (``prefix`` starts the messages, e.g. ``'pti '``).

    Raises:
        DragkitError: the first bad field, named with its value.
    """
    for name, least in integers.items():
        v = getattr(config, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < least:
            raise DragkitError(f"{prefix}{name} must be an integer >= {least}, got {v!r}")
    for name in numbers:
        v = getattr(config, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise DragkitError(f"{prefix}{name} must be a finite number >= 0, got {v!r}")


@dataclass
class ProjectConfig:
    """Settings of :func:`project`.

    Attributes:
        w_steps, wplus_steps: Adam steps of each phase (either may be 0).
        lr_w, lr_wplus: learning rates, in units of W's per-coordinate std.
        init: ``'search'`` (best of ``init_candidates`` random codes and the mean) or ``'mean'``.
        init_candidates: random codes tried by ``'search'`` (truncation 0.7).
        latent_noise: std of the noise added to ``w`` at the start of phase 1 (same units), fading out
            (quadratically) by 75 % of the phase.
        optimize_noise: also optimise the noise maps (the result then needs its own generator copy).
        noise_reg: weight of :func:`~dragkit.invert.losses.noise_regularisation`.
        wplus_reg: weight pulling each W+ code towards their mean (0 = off).
        weights: the loss terms (:class:`~dragkit.invert.losses.LossWeights`).
        seed: for the random candidates and the latent noise.
    """

    w_steps: int = 50
    wplus_steps: int = 100
    lr_w: float = 0.1
    lr_wplus: float = 0.06
    init: str = "search"
    init_candidates: int = 16
    latent_noise: float = 0.5
    optimize_noise: bool = False
    noise_reg: float = 1e4
    wplus_reg: float = 0.0
    weights: LossWeights = field(default_factory=LossWeights)
    seed: int = 0

    def validate(self) -> None:
        check_settings(self, {"w_steps": 0, "wplus_steps": 0, "init_candidates": 0},
                       ("lr_w", "lr_wplus", "latent_noise", "noise_reg", "wplus_reg"))
        if self.init not in ("search", "mean"):
            raise DragkitError(f"init must be 'search' or 'mean', got {self.init!r}")
        if self.w_steps + self.wplus_steps == 0:
            raise DragkitError("w_steps + wplus_steps must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Projection:
    """What :func:`project` found.

    Attributes:
        ws: the W+ codes ``(1, num_ws, w_dim)`` (phase 2's result; phase 1's, broadcast, when it has no steps).
        w: phase 1's code ``(1, w_dim)``.
        noise: the optimised noise maps by buffer name (``'synthesis.b8.conv0.noise_const'``), or None.
        image: the reconstruction ``(1, 3, H, W)`` in [-1, 1].
        psnr: of ``image`` against the target (dB, [-1, 1] range, before 8-bit rounding).
        seconds: wall time.
        history: ``{'phase', 'step', 'loss', <term>...}`` every few steps.
    """

    ws: torch.Tensor
    w: torch.Tensor
    noise: dict[str, torch.Tensor] | None
    image: torch.Tensor
    psnr: float
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)


def lr_factor(t: float, rampup: float = 0.05, rampdown: float = 0.25) -> float:
    """Learning-rate multiplier at fraction ``t`` in [0, 1) of a phase."""
    up = min(1.0, (t + 1e-9) / rampup) if rampup > 0 else 1.0
    down = min(1.0, (1.0 - t) / rampdown) if rampdown > 0 else 1.0
    return up * (0.5 - 0.5 * math.cos(math.pi * down))


def w_statistics(G: Any, n: int = 2000, seed: int = 123) -> tuple[torch.Tensor, float]:
    """``(w_mean (w_dim,), sigma)``: the mean code (``w_avg`` when tracked) and W's per-coordinate std."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, G.z_dim, generator=g).to(G.device)
    with torch.no_grad():
        w = G.mapping(z, no_labels(G, n))[:, 0]
    mean = G.mapping.w_avg.detach().clone() if hasattr(G.mapping, "w_avg") else w.mean(0)
    sigma = float((w - w.mean(0)).pow(2).mean().sqrt())
    return mean, sigma


def no_labels(G: Any, n: int) -> torch.Tensor | None:
    """The class labels of ``n`` unconditional draws: zeros ``(n, c_dim)`` on ``G``'s device, None when ``c_dim`` is 0."""
    return torch.zeros(n, G.c_dim, device=G.device) if G.c_dim else None


def noise_buffers(G: Any) -> dict[str, torch.Tensor]:
    """The generator's constant noise maps by state-dict name."""
    return {name: buf for name, buf in G.named_buffers() if name.endswith("noise_const")}


def _psnr_of(img: torch.Tensor, target: torch.Tensor) -> float:
    mse = float((img.detach() - target).pow(2).mean())
    return 10 * math.log10(4.0 / max(mse, 1e-12))


def _check_cancel(cancel: CancelFn | None) -> None:
    if cancel is not None and cancel():
        raise InversionCancelled("inversion cancelled")


def _checked_target(G: Any, target: torch.Tensor) -> torch.Tensor:
    """``target`` ``(1, 3, H, H)`` for this model, as float32 on its device; else a DragkitError."""
    H = int(G.img_resolution)
    if tuple(target.shape) != (1, 3, H, H):
        raise DragkitError(f"target must be [1, 3, {H}, {H}] for this model, got {list(target.shape)}")
    return target.to(G.device, torch.float32)


def _begin_step(opt: torch.optim.Optimizer, lr: float, cancel: CancelFn | None) -> None:
    """Before an Adam step: honour ``cancel``, then set the step's learning rate."""
    _check_cancel(cancel)
    for grp in opt.param_groups:
        grp["lr"] = lr


def _descend(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _report(progress: ProgressFn | None, phase: str, step: int, steps: int, loss: torch.Tensor, img: torch.Tensor,
            target: torch.Tensor, t0: float) -> None:
    """Tell ``progress`` that step ``step`` (0-based) of ``steps`` is done."""
    if progress is not None:
        progress(Progress(phase=phase, step=step + 1, steps=steps, loss=float(loss.detach()),
                          psnr=_psnr_of(img, target), elapsed=time.perf_counter() - t0, image=img.detach()))


def project(
    G: Any,
    target: torch.Tensor,
    config: ProjectConfig | None = None,
    *,
    D: Any | None = None,
    face_chip: np.ndarray | None = None,
    grayscale: bool = False,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    _t0: float | None = None,
) -> Projection:
    """Find W+ codes reproducing ``target``.

    Args:
        G: a generator (not modified; a copy is made when noise maps are optimised).
        target: ``(1, 3, H, W)`` in [-1, 1] at the generator's resolution, on its device.
        config: :class:`ProjectConfig`.
        D: the model's discriminator, needed by the ``disc`` loss term.
        face_chip: dlib's face chip matrix, needed by the face loss terms.
        grayscale: compare luminance only.
        progress: called after every step with a :class:`Progress`.
        cancel: polled before every step; returning True raises :class:`InversionCancelled`.

    Raises:
        DragkitError: bad settings, wrong target size, or a loss term without what it needs.
        InversionCancelled: ``cancel`` returned True.
    """
    cfg = config or ProjectConfig()
    cfg.validate()
    target = _checked_target(G, target)
    t0 = _t0 if _t0 is not None else time.perf_counter()
    dev = G.device
    rec = ReconstructionLoss(target, cfg.weights, D=D, face_chip=face_chip, grayscale=grayscale)
    w_mean, sigma = w_statistics(G)
    gen = torch.Generator().manual_seed(int(cfg.seed))

    work = G
    noises: dict[str, torch.Tensor] = {}
    if cfg.optimize_noise:
        work = copy.deepcopy(G)
        for name, buf in noise_buffers(work).items():
            mod = work.get_submodule(name.rsplit(".", 1)[0])
            leaf = torch.randn(buf.shape, generator=gen).to(dev).requires_grad_(True)
            mod.noise_const = leaf  # a buffer may be replaced by any tensor of its shape
            noises[name] = leaf

    def synth(ws: torch.Tensor) -> torch.Tensor:
        return work.synthesis(ws, noise_mode="const")

    # -- initial code ---------------------------------------------------------
    u0 = torch.zeros(1, G.w_dim)
    if cfg.init == "search" and cfg.init_candidates > 0:
        z = torch.randn(cfg.init_candidates, G.z_dim, generator=gen).to(dev)
        with torch.no_grad():
            cand = torch.cat([w_mean[None], G.mapping(z, no_labels(G, len(z)), truncation_psi=0.7)[:, 0]])
            scores = []
            for i in range(0, len(cand), 8):
                part = cand[i:i + 8]
                imgs = synth(part[:, None].expand(-1, G.num_ws, -1))
                for img in imgs:
                    scores.append(float(rec(img[None])[0]))
        u0 = ((cand[int(np.argmin(scores))] - w_mean) / sigma)[None].cpu()
    history: list[dict[str, Any]] = []
    every = 5

    def run_phase(phase: str, u: torch.Tensor, steps: int, lr: float, plus: bool) -> torch.Tensor:
        params = [u] + list(noises.values())
        opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999))
        for step in range(steps):
            t = step / steps
            _begin_step(opt, lr * lr_factor(t), cancel)
            code = u
            if not plus and cfg.latent_noise > 0:
                strength = cfg.latent_noise * max(0.0, 1.0 - t / 0.75) ** 2
                code = u + strength * torch.randn(u.shape, generator=gen).to(dev)
            ws = w_mean + sigma * code
            ws = ws if plus else ws[:, None].expand(-1, G.num_ws, -1)
            img = synth(ws)
            loss, terms = rec(img)
            if noises and cfg.noise_reg > 0:
                nreg = noise_regularisation(list(noises.values()))
                loss = loss + cfg.noise_reg * nreg
                terms["noise_reg"] = float(nreg.detach())
            if plus and cfg.wplus_reg > 0:
                loss = loss + cfg.wplus_reg * (u - u.mean(1, keepdim=True)).pow(2).mean()
            _descend(opt, loss)
            with torch.no_grad():
                for n in noises.values():
                    n -= n.mean()
                    n /= n.pow(2).mean().sqrt()
            if step % every == 0 or step == steps - 1:
                history.append({"phase": phase, "step": step, "loss": float(loss.detach()), **terms})
            _report(progress, phase, step, steps, loss, img, target, t0)
        return u.detach()

    u = u0.to(dev).clone().requires_grad_(True)
    u = run_phase("w", u, cfg.w_steps, cfg.lr_w, plus=False)
    w = (w_mean + sigma * u).detach()  # (1, w_dim)
    u_plus = u[:, None].expand(-1, G.num_ws, -1).clone().requires_grad_(True)
    u_plus = run_phase("w+", u_plus, cfg.wplus_steps, cfg.lr_wplus, plus=True)
    ws = (w_mean + sigma * u_plus).detach()
    with torch.no_grad():
        img = synth(ws)
    noise_out = {k: v.detach().clone() for k, v in noises.items()} if noises else None
    return Projection(ws=ws, w=w, noise=noise_out, image=img, psnr=_psnr_of(img, target),
                      seconds=time.perf_counter() - t0, history=history)
