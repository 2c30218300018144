"""A photo in, an editable latent (and, with PTI, a tuned generator) out: :func:`invert_photo`.

Steps: read the photo (:func:`dragkit.invert.photo.read_photo`), bring it
to the model's resolution - aligned onto the model's face crop
(:mod:`dragkit.invert.align`) or, without alignment, centre-cropped to a
square and resized - then :func:`~dragkit.invert.project.project` and
optionally :func:`~dragkit.invert.pti.pivotal_tuning`.  The figures it
reports (PSNR, SSIM) are measured on the 8-bit images a user sees.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import DragkitError
from .align import Alignment, align_face, alignment_for_model, detect_faces
from .losses import LossWeights
from .metrics import psnr_uint8, ssim_uint8, to_gray
from .photo import Photo, read_photo
from .project import CancelFn, ProgressFn, ProjectConfig, Projection, noise_buffers, project
from .pti import PTIConfig, PTIResult, pivotal_tuning

__all__ = ["InvertConfig", "Inversion", "invert_photo", "prepare_target", "discriminator_for", "default_config",
           "FACE_TERMS"]

FACE_TERMS = ("facefeat", "faceid")


def default_config(pti: bool = False, align: bool = False) -> "InvertConfig":
    """The measured defaults (docs/invert.md, ``benchmarks/bench_invert.py``)."""
    return InvertConfig(align=align, pti=pti)


@dataclass
class InvertConfig:
    """Settings of :func:`invert_photo`.

    Attributes:
        align: align the face first (needs dlib, extra ``dragkit[faces]``).
        alignment: ``'auto'`` (from the model's metadata), ``'celeba'`` or ``'ffhq'``.
        projection: :class:`~dragkit.invert.project.ProjectConfig`.
        pti: pivotal tuning after the projection.
        pti_config: :class:`~dragkit.invert.pti.PTIConfig`.
    """

    align: bool = False
    alignment: str = "auto"
    projection: ProjectConfig = field(default_factory=ProjectConfig)
    pti: bool = False
    pti_config: PTIConfig = field(default_factory=PTIConfig)

    def to_dict(self) -> dict[str, Any]:
        return {"align": self.align, "alignment": self.alignment, "projection": self.projection.to_dict(),
                "pti": self.pti, "pti_config": self.pti_config.to_dict() if self.pti else None}


@dataclass
class Inversion:
    """The result of :func:`invert_photo`.

    Attributes:
        ws: W+ codes ``(1, num_ws, w_dim)`` to edit (the pivot, with PTI).
        G: the generator to edit with: the model itself, or - when ``tuned`` - a copy belonging to this
            edit (PTI weights or optimised noise maps) that must be saved with it.
        tuned: whether ``G`` is such a copy.
        target: the photo at the model's resolution ``(H, W, 3)`` uint8 (the aligned crop).
        reconstruction: ``G(ws)`` as ``(H, W, 3)`` uint8.
        psnr, ssim: of ``reconstruction`` against ``target`` (8-bit; luminance for a grayscale photo).
        psnr_projection, ssim_projection: the same before PTI (equal to the above without PTI).
        alignment: how the crop was made (None without alignment).
        photo: the decoded photo's description (``Photo`` with its pixels dropped).
        warnings: everything that was changed or guessed, one sentence each.
        seconds: wall time per stage (``prepare``, ``project``, ``pti``, ``total``).
        config: the settings used.
        projection, pti_result: the raw results (histories, locality figure).
    """

    ws: torch.Tensor
    G: Any
    tuned: bool
    target: np.ndarray
    reconstruction: np.ndarray
    psnr: float
    ssim: float
    psnr_projection: float
    ssim_projection: float
    alignment: Alignment | None
    photo: Photo
    warnings: list[str]
    seconds: dict[str, float]
    config: InvertConfig
    projection: Projection
    pti_result: PTIResult | None = None

    def session(self, options: Any | None = None):
        """A :class:`~dragkit.drag.session.DragSession` on the inversion (its generator and W+ codes)."""
        from ..drag.session import DragSession

        return DragSession.from_latent(self.G, self.ws, options=options)


def _to_tensor(rgb: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.array(rgb, dtype=np.float32)).permute(2, 0, 1)[None].to(device) / 127.5 - 1


def _to_uint8(img: torch.Tensor) -> np.ndarray:
    from ..utils import tensor_to_uint8

    return tensor_to_uint8(img)


def _fit_square(rgb: np.ndarray, size: int, warnings: list[str]) -> np.ndarray:
    from PIL import Image

    h, w = rgb.shape[:2]
    if h != w:
        s = min(h, w)
        y0, x0 = (h - s) // 2, (w - s) // 2
        rgb = rgb[y0:y0 + s, x0:x0 + s]
        warnings.append(f"the photo is {w}x{h}, not square: centre-cropped to {s}x{s} (use --align to crop on the face)")
    s = rgb.shape[0]
    if s == size:
        return np.ascontiguousarray(rgb)
    if s < size:
        warnings.append(f"the photo is {s} px, smaller than the model's {size} px: enlarged")
    im = Image.fromarray(np.ascontiguousarray(rgb))
    return np.asarray(im.resize((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0))


def prepare_target(photo: Photo, G: Any, align: bool, alignment: str = "auto") -> tuple[np.ndarray, Alignment | None, list[str]]:
    """The photo at ``G``'s resolution: ``(target (H, W, 3) uint8, alignment or None, warnings)``.

    Raises:
        NoFaceError: ``align`` and no usable face.
        DragkitError: the model is not square, or dlib is missing when aligning.
    """
    H, W = int(G.img_resolution), int(getattr(G, "img_width", G.img_resolution))
    if H != W:
        raise DragkitError(f"inversion needs a square model; this one makes {W}x{H} images")
    if int(G.img_channels) != 3:
        raise DragkitError(f"inversion needs an RGB model; this one has {G.img_channels} channels")
    warnings = list(photo.warnings)
    if photo.grayscale:
        warnings.append("the photo is grayscale: matched in luminance, the model chooses the colours")
    if not align:
        return _fit_square(photo.rgb, H, warnings), None, warnings
    method, note = alignment_for_model(G, alignment)
    if note:
        warnings.append(note)
    al = align_face(photo, H, method)
    return al.image, al, warnings + al.warnings


def discriminator_for(model: str | Any) -> Any | None:
    """The discriminator stored beside a model (name or path), or None when there is none."""
    from ..formats import load_discriminator
    from ..models import resolve_model

    try:
        return load_discriminator(resolve_model(model))
    except DragkitError:
        return None


def _face_chip(target: np.ndarray, weights: LossWeights, warnings: list[str]) -> tuple[np.ndarray | None, LossWeights]:
    """dlib's chip matrix for the target's face, or the weights without the face terms (with a warning)."""
    if not any(getattr(weights, t) > 0 for t in FACE_TERMS):
        return None, weights
    try:
        faces = detect_faces(target)
    except DragkitError as exc:  # dlib missing
        faces, why = [], str(exc)
    else:
        why = "no face found in the crop"
    if not faces:
        warnings.append(f"face loss terms off: {why}")
        return None, LossWeights(**{**weights.to_dict(), **{t: 0.0 for t in FACE_TERMS}})
    from .facerec import chip_matrix

    return chip_matrix(faces[0].landmarks, (target.shape[1], target.shape[0])), weights


def _with_noise(G: Any, noise: dict[str, torch.Tensor]) -> Any:
    Gc = copy.deepcopy(G)
    bufs = noise_buffers(Gc)
    for name, value in noise.items():
        bufs[name].copy_(value)
    return Gc


def invert_photo(
    G: Any,
    photo: Photo | str | bytes | np.ndarray | Any,
    config: InvertConfig | None = None,
    *,
    D: Any | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> Inversion:
    """Invert a photo into ``G``: align (optional), project (W then W+), pivotal tuning (optional).

    Args:
        G: the generator (never modified).
        photo: a :class:`~dragkit.invert.photo.Photo`, a path, file bytes, an image array or a PIL image.
        config: :class:`InvertConfig` (default: :func:`default_config`).
        D: the model's discriminator (for the ``disc`` loss term; see :func:`discriminator_for`).
            When the settings weight ``disc`` but there is no ``D``, the term is dropped with a warning.
        progress: called after every optimisation step (:class:`~dragkit.invert.project.Progress`).
        cancel: polled before every step; True raises :class:`~dragkit.invert.project.InversionCancelled`.

    Raises:
        PhotoError: the photo is unusable (not an image, truncated, too large/small) or, when aligning,
            shows no usable face (:class:`~dragkit.invert.align.NoFaceError`).
        DragkitError: bad settings; dlib missing when aligning.
    """
    cfg = config or default_config()
    cfg.projection.validate()
    if cfg.pti:
        cfg.pti_config.validate()
    t0 = time.perf_counter()
    if not isinstance(photo, Photo):
        photo = read_photo(photo)
    target, al, warnings = prepare_target(photo, G, cfg.align, cfg.alignment)
    proj_cfg = copy.deepcopy(cfg.projection)
    if proj_cfg.weights.disc > 0 and D is None:
        warnings.append("discriminator loss term off: no discriminator is stored beside this model")
        proj_cfg.weights = LossWeights(**{**proj_cfg.weights.to_dict(), "disc": 0.0})
    chip, proj_cfg.weights = _face_chip(target, proj_cfg.weights, warnings)
    pti_cfg = copy.deepcopy(cfg.pti_config)
    if cfg.pti:
        w = pti_cfg.weights.to_dict()
        if D is None:
            w["disc"] = 0.0
        if chip is None:
            w.update({t: 0.0 for t in FACE_TERMS})
        pti_cfg.weights = LossWeights(**w)
    dev = G.device
    t_target = _to_tensor(target, dev)
    gray = bool(photo.grayscale)
    t1 = time.perf_counter()
    proj = project(G, t_target, proj_cfg, D=D, face_chip=chip, grayscale=gray, progress=progress, cancel=cancel,
                   _t0=t0)
    t2 = time.perf_counter()
    G_edit, tuned = G, False
    if proj.noise is not None:
        G_edit, tuned = _with_noise(G, proj.noise), True

    def score(img: torch.Tensor) -> tuple[float, float]:
        rec = _to_uint8(img)
        a, b = (rec, target)
        if gray:
            a = _to_uint8(to_gray(img.float()).expand(-1, 3, -1, -1))
            b = _to_uint8(to_gray(t_target).expand(-1, 3, -1, -1))
        return psnr_uint8(a, b), ssim_uint8(a, b)

    p_proj, s_proj = score(proj.image)
    pti_res = None
    image = proj.image
    if cfg.pti:
        pti_res = pivotal_tuning(G_edit, proj.ws, t_target, pti_cfg, D=D, face_chip=chip, grayscale=gray,
                                 progress=progress, cancel=cancel, _t0=t0)
        G_edit, tuned, image = pti_res.G, True, pti_res.image
    t3 = time.perf_counter()
    p, s = score(image) if cfg.pti else (p_proj, s_proj)
    if tuned:
        G_edit.model_name = getattr(G, "model_name", None)  # type: ignore[attr-defined]
        G_edit.dragkit_metadata = dict(getattr(G, "dragkit_metadata", {}) or {})  # type: ignore[attr-defined]
    used = copy.deepcopy(cfg)
    used.projection = proj_cfg
    used.pti_config = pti_cfg
    return Inversion(
        ws=proj.ws, G=G_edit, tuned=tuned, target=target, reconstruction=_to_uint8(image), psnr=p, ssim=s,
        psnr_projection=p_proj, ssim_projection=s_proj, alignment=al,
        photo=Photo(rgb=np.zeros((0, 0, 3), np.uint8), source=photo.source, format=photo.format, mode=photo.mode,
                    stored_size=photo.stored_size, exif_rotated=photo.exif_rotated, grayscale=photo.grayscale,
                    warnings=list(photo.warnings)),
        warnings=warnings,
        seconds={"prepare": t1 - t0, "project": t2 - t1, "pti": t3 - t2 if cfg.pti else 0.0, "total": t3 - t0},
        config=used, projection=proj, pti_result=pti_res,
    )
