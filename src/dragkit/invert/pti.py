"""Pivotal tuning (PTI; Roich et al., 2022): fine-tune a copy of the generator around a projected pivot.

The pivot ``ws_p`` (the projection's W+ codes) stays fixed; the synthesis
weights of a *copy* of the generator are tuned so that ``G'(ws_p)``
reproduces the photo closely.  A locality regulariser keeps the tuned
generator equal to the original away from the pivot, so that the latent
neighbourhood a drag explores still behaves like the model: every
``locality_every`` steps a code ``w_r`` is drawn on the segment from the
pivot towards a random code of the model, at ``locality_distance`` times
the typical distance of codes from their mean, and
``|G'(w_r) - G(w_r)|^2`` (plus the discriminator-feature distance when
that term is on) is added with weight ``locality``.

The tuned generator belongs to one edit: it is returned, never written
over the model (:mod:`dragkit.invert.edit` saves it beside the session).
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import DragkitError
from .losses import LossWeights, ReconstructionLoss, _feature_distance, discriminator_features
from .project import (
    CancelFn,
    ProgressFn,
    _begin_step,
    _checked_target,
    _descend,
    _psnr_of,
    _report,
    check_settings,
    lr_factor,
    no_labels,
    w_statistics,
)

__all__ = ["PTIConfig", "PTIResult", "pivotal_tuning", "tuned_parameters"]


@dataclass
class PTIConfig:
    """Settings of :func:`pivotal_tuning`.

    Attributes:
        steps: Adam steps.
        lr: learning rate of the synthesis weights (PTI: 3e-4; 1e-3 measured better here, docs/invert.md).
        weights: the reconstruction loss at the pivot.
        locality: weight of the locality regulariser (PTI: 0.1; 0 = off).
        locality_every: apply it every this many steps.
        locality_distance: how far from the pivot ``w_r`` lies, in units of
            the typical distance of the model's codes from their mean.
        seed: for the locality codes.
    """

    steps: int = 300  # 20 held-out faces: 28.05 dB against 26.92 at 200 (docs/invert.md, section 5)
    lr: float = 1e-3
    weights: LossWeights = field(default_factory=LossWeights)
    locality: float = 0.1
    locality_every: int = 4
    locality_distance: float = 0.5
    seed: int = 0

    def validate(self) -> None:
        check_settings(self, {"steps": 0, "locality_every": 1}, ("lr", "locality", "locality_distance"), prefix="pti ")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PTIResult:
    """The tuned generator and how it went.

    Attributes:
        G: the tuned copy (eval mode, no gradients).
        image: ``G(ws_pivot)`` ``(1, 3, H, W)``.
        psnr: of ``image`` against the target (dB, [-1, 1] range).
        locality_psnr: mean PSNR of tuned vs original generator at 8 fixed codes drawn like the
            regulariser's (seeded apart from it), measured after tuning: how little the latent
            space around the pivot changed (higher = more local; measured whether or not the
            regulariser was on).
        seconds: wall time of the tuning.
        history: ``{'step', 'loss', <term>..., 'locality'}`` every few steps.
    """

    G: Any
    image: torch.Tensor
    psnr: float
    locality_psnr: float
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)


def tuned_parameters(G: Any) -> list[torch.nn.Parameter]:
    """The parameters PTI tunes: every synthesis weight and bias (not the mapping, not the noise maps)."""
    return [p for _, p in G.synthesis.named_parameters()]


def pivotal_tuning(
    G: Any,
    ws_pivot: torch.Tensor,
    target: torch.Tensor,
    config: PTIConfig | None = None,
    *,
    D: Any | None = None,
    face_chip: np.ndarray | None = None,
    grayscale: bool = False,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    _t0: float | None = None,
) -> PTIResult:
    """Tune a copy of ``G`` so that ``G'(ws_pivot)`` reproduces ``target``.

    Args:
        G: the generator (not modified; its noise maps are copied as they are).
        ws_pivot: ``(1, num_ws, w_dim)``.
        target: ``(1, 3, H, W)`` in [-1, 1].
        config, D, face_chip, grayscale, progress, cancel: as for :func:`dragkit.invert.project.project`.

    Raises:
        DragkitError: bad settings or shapes; InversionCancelled when ``cancel`` returns True.
    """
    cfg = config or PTIConfig()
    cfg.validate()
    target = _checked_target(G, target)
    if tuple(ws_pivot.shape) != (1, G.num_ws, G.w_dim):
        raise DragkitError(f"pivot must be [1, {G.num_ws}, {G.w_dim}], got {list(ws_pivot.shape)}")
    t0 = _t0 if _t0 is not None else time.perf_counter()
    dev = G.device
    ws_pivot = ws_pivot.detach().to(dev, torch.float32)
    rec = ReconstructionLoss(target, cfg.weights, D=D, face_chip=face_chip, grayscale=grayscale)
    Gt = copy.deepcopy(G).train(False)
    params = tuned_parameters(Gt)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.999))
    w_mean, _ = w_statistics(G)
    gen = torch.Generator().manual_seed(int(cfg.seed))
    # Typical distance of the model's codes from their mean, the unit of locality_distance.
    zs = torch.randn(256, G.z_dim, generator=gen).to(dev)
    with torch.no_grad():
        spread = float((G.mapping(zs, no_labels(G, 256))[:, 0] - w_mean).norm(dim=1).median())
    history: list[dict[str, Any]] = []
    img = None
    for step in range(cfg.steps):
        _begin_step(opt, cfg.lr * lr_factor(step / cfg.steps, rampup=0.0, rampdown=0.25), cancel)
        img = Gt.synthesis(ws_pivot, noise_mode="const")
        loss, terms = rec(img)
        if cfg.locality > 0 and step % cfg.locality_every == 0:
            z = torch.randn(1, G.z_dim, generator=gen).to(dev)
            with torch.no_grad():
                w_z = G.mapping(z, no_labels(G, 1))  # (1, num_ws, w_dim)
                d = w_z - ws_pivot
                w_r = ws_pivot + cfg.locality_distance * spread * d / d[:, 0].norm().clamp_min(1e-8)
                ref = G.synthesis(w_r, noise_mode="const")
            out = Gt.synthesis(w_r, noise_mode="const")
            loc = (out - ref).pow(2).mean()
            if D is not None and cfg.weights.disc > 0:
                with torch.no_grad():
                    ref_f = discriminator_features(D, ref)
                loc = loc + cfg.weights.disc * _feature_distance(discriminator_features(D, out), ref_f)
            loss = loss + cfg.locality * loc
            terms["locality"] = float(loc.detach())
        _descend(opt, loss)
        if step % 5 == 0 or step == cfg.steps - 1:
            history.append({"step": step, "loss": float(loss.detach()), **terms})
        _report(progress, "pti", step, cfg.steps, loss, img, target, t0)
    for p in params:
        p.requires_grad_(False)
    Gt.eval()
    with torch.no_grad():
        img = Gt.synthesis(ws_pivot, noise_mode="const")
        check = torch.Generator().manual_seed(987654)
        zs = torch.randn(8, G.z_dim, generator=check).to(dev)
        w_z = G.mapping(zs, no_labels(G, 8))
        d = w_z - ws_pivot
        w_r = ws_pivot + cfg.locality_distance * spread * d / d[:, :1].norm(dim=2, keepdim=True).clamp_min(1e-8)
        loc_check = [_psnr_of(Gt.synthesis(w[None], noise_mode="const"), G.synthesis(w[None], noise_mode="const"))
                     for w in w_r]
    return PTIResult(G=Gt, image=img, psnr=_psnr_of(img, target), locality_psnr=float(np.mean(loc_check)),
                     seconds=time.perf_counter() - t0, history=history)
