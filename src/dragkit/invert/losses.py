"""The reconstruction loss of an inversion: pixels plus the perceptual terms the project can build offline.

No LPIPS or VGG weights exist offline, so the perceptual candidates are
built from what the project has (which of them help is measured by
``benchmarks/bench_invert.py``; docs/invert.md has the figures):

``pixel``    mean squared error of the [-1, 1] images;
``l1``       mean absolute error;
``msssim``   1 - multi-scale SSIM (:mod:`dragkit.invert.metrics`);
``disc``     distance of the model's own discriminator features (the
             output of every discriminator block, each unit-normalised over
             channels at every position and compared by mean squared
             difference, summed over blocks - the LPIPS construction on a
             network trained on exactly these images);
``facefeat`` the same distance on the stage outputs (stages 0-2: 32 x 35 x 35,
             64 x 17 x 17, 128 x 8 x 8) of dlib's face-recognition ResNet,
             on the 150 px face chip dlib would cut;
``faceid``   Euclidean distance of that ResNet's 128-d identity descriptors.

A grayscale photo is compared in luminance only (both images are turned
to luma first), so the generator is free to choose colours.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DragkitError
from .metrics import ms_ssim, ms_ssim_levels, to_gray

__all__ = ["LossWeights", "ReconstructionLoss", "discriminator_features", "noise_regularisation", "TERMS"]

TERMS = ("pixel", "l1", "msssim", "disc", "facefeat", "faceid")


@dataclass
class LossWeights:
    """Weight of each term (0 = off).  See the module docstring for what each term is."""

    pixel: float = 1.0
    l1: float = 0.0
    msssim: float = 0.0
    disc: float = 0.0
    facefeat: float = 0.0
    faceid: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LossWeights":
        names = {f.name for f in fields(cls)}
        bad = sorted(set(d) - names)
        if bad:
            raise DragkitError(f"unknown loss term(s) {', '.join(bad)}; known: {', '.join(TERMS)}")
        out = cls(**{k: float(v) for k, v in d.items()})
        for k, v in out.to_dict().items():
            if not np.isfinite(v) or v < 0:
                raise DragkitError(f"loss weight {k} must be a finite number >= 0, got {v}")
        return out

    @classmethod
    def parse(cls, text: str) -> "LossWeights":
        """``'pixel=1,msssim=0.5'`` -> weights (terms not named are 0)."""
        d: dict[str, float] = {k: 0.0 for k in TERMS}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, _, value = part.partition("=")
            try:
                d[name.strip()] = float(value) if value else 1.0
            except ValueError:
                raise DragkitError(f"loss weights: {part!r} is not NAME=NUMBER") from None
            if name.strip() not in TERMS:
                raise DragkitError(f"unknown loss term {name.strip()!r}; known: {', '.join(TERMS)}")
        return cls.from_dict(d)

    def active(self) -> list[str]:
        return [k for k, v in self.to_dict().items() if v > 0]


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / (x.pow(2).sum(1, keepdim=True) + 1e-10).sqrt()


def _feature_distance(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    return sum((_unit(x) - _unit(y)).pow(2).sum(1).mean() for x, y in zip(a, b))  # type: ignore[return-value]


def discriminator_features(D: Any, img: torch.Tensor) -> list[torch.Tensor]:
    """The output of every block of ``D`` (a :class:`dragkit.nets.discriminator.Discriminator`) for ``img``."""
    x = None
    out = []
    for res in D.block_resolutions:
        x = getattr(D, f"b{res}")(x, img)
        out.append(x)
    return out


def noise_regularisation(noises: list[torch.Tensor]) -> torch.Tensor:
    """Penalty on spatial autocorrelation of noise maps ``(R, R)``, at every scale down to 8 px.

    Squared mean products of each map with itself shifted by one pixel
    (horizontally and vertically, wrapping), summed over a pyramid of 2x
    average-poolings (rescaled so that white noise keeps unit variance),
    so that the maps stay noise instead of carrying the image.
    """
    total = noises[0].new_zeros(())
    for n in noises:
        x = n[None, None]
        while True:
            total = total + (x * torch.roll(x, 1, dims=3)).mean() ** 2 + (x * torch.roll(x, 1, dims=2)).mean() ** 2
            if x.shape[2] <= 8:
                break
            x = F.avg_pool2d(x, 2) * 2
    return total


class ReconstructionLoss:
    """The weighted loss between generator images and one target photo.

    Args:
        target: ``(1, 3, H, W)`` float in [-1, 1] (the aligned photo).
        weights: :class:`LossWeights`.
        D: the model's discriminator (needed when ``weights.disc > 0``).
        face_chip: 2 x 3 matrix image -> dlib's 150 px chip (needed for the face terms).
        grayscale: compare luminance only.

    ``loss(img) -> (total, {term: value})`` for ``img`` ``(N, 3, H, W)``;
    the target's features are computed once here.

    Raises:
        DragkitError: a weighted term lacks what it needs (no discriminator, no face).
    """

    def __init__(self, target: torch.Tensor, weights: LossWeights, *, D: Any | None = None,
                 face_chip: np.ndarray | None = None, grayscale: bool = False) -> None:
        if target.ndim != 4 or target.shape[0] != 1 or target.shape[1] != 3:
            raise ValueError(f"target must be (1, 3, H, W), got {list(target.shape)}")
        self.weights = weights
        self.grayscale = grayscale
        self.target = self._prep(target.detach())
        self.D = D
        self.face_chip = face_chip
        self.facenet = None
        if weights.disc > 0:
            if D is None:
                raise DragkitError("the disc loss term needs the model's discriminator (none is stored beside it)")
            with torch.no_grad():
                self.t_disc = discriminator_features(D, self.target)
        if weights.facefeat > 0 or weights.faceid > 0:
            if face_chip is None:
                raise DragkitError("the face loss terms need a face in the photo (none was found)")
            from .facerec import cut_chip, load_face_recognition_net

            self.facenet = load_face_recognition_net(target.device)
            self._cut = cut_chip
            with torch.no_grad():
                self.t_id, self.t_face = self.facenet.features(cut_chip(self.target, face_chip), stages=(0, 1, 2))
        self.levels = ms_ssim_levels(min(target.shape[2:])) if weights.msssim > 0 else 0

    def _prep(self, img: torch.Tensor) -> torch.Tensor:
        return to_gray(img).expand(-1, 3, -1, -1) if self.grayscale else img

    def __call__(self, img: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        w = self.weights
        x = self._prep(img)
        t = self.target.expand_as(x)
        terms: dict[str, torch.Tensor] = {}
        if w.pixel > 0:
            terms["pixel"] = (x - t).pow(2).mean()
        if w.l1 > 0:
            terms["l1"] = (x - t).abs().mean()
        if w.msssim > 0:
            terms["msssim"] = 1 - ms_ssim(x, t, data_range=2.0, levels=self.levels).mean()
        if w.disc > 0:
            terms["disc"] = _feature_distance(discriminator_features(self.D, x), self.t_disc)
        if self.facenet is not None:
            desc, feats = self.facenet.features(self._cut(x, self.face_chip), stages=(0, 1, 2))
            if w.facefeat > 0:
                terms["facefeat"] = _feature_distance(feats, self.t_face)
            if w.faceid > 0:
                terms["faceid"] = ((desc - self.t_id).pow(2).sum(1) + 1e-8).sqrt().mean()
        total = sum(getattr(w, k) * v for k, v in terms.items())
        return total, {k: float(v.detach()) for k, v in terms.items()}  # type: ignore[return-value]
