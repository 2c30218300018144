"""Face alignment: find the face and its 68 landmarks (dlib), warp it onto the crop a face model was trained on.

Two crops (``method``):

``'celeba'``
    The crop of ``../shared/data/celeba128_train.zip`` (CelebA's aligned
    178 x 218 images, a 148 x 148 box at x = 15, y = 40, resized to 128),
    which ``faces128`` is trained on.  Its canonical landmark positions are
    *measured*, not guessed: the mean of dlib's 68 landmarks over training
    images, stored in ``dragkit/assets/celeba128_landmarks.json`` by
    ``python -m dragkit.invert.template`` (which also chose, by
    measurement, the landmarks the similarity is fitted to).  The photo is
    mapped by the least-squares similarity (rotation, uniform scale,
    translation; Umeyama) from its landmarks to the template's.
``'ffhq'``
    The FFHQ crop (Karras et al., 2019), for models trained on FFHQ: an
    oriented square from the eye and mouth landmarks - centre
    ``eye_avg + 0.1 * eye_to_mouth``, half-side
    ``max(2 * |eye_to_eye|, 1.8 * |eye_to_mouth|)``, its x axis along
    ``eye_to_eye`` turned by the perpendicular of ``eye_to_mouth`` - with
    the area outside the photo filled by reflection that fades into a blur,
    as FFHQ's own crops are.

Which one a model wants: :func:`alignment_for_model` (its metadata, or a flag).

Coordinates are ``[x, y]`` pixels with pixel centres at integers; a
``matrix`` is 2 x 3 and maps a photo point to the crop: ``crop = M @ [x, y, 1]``.

Outcomes for awkward photos (each documented in docs/invert.md):
- no face: :class:`NoFaceError` (one line);
- several faces: the largest is aligned, with a warning naming how many;
- a tiny face (fewer than :data:`MIN_EYE_DISTANCE` px between the eye
  centres): :class:`NoFaceError` - dlib's landmarks are not reliable there;
  a small face (the crop enlarges it more than 2x): a warning;
- a huge photo: faces are searched on a copy at most
  :data:`DETECT_MAX_SIDE` px long, landmarks are read at full resolution,
  and the crop is anti-aliased (box-filtered down before resampling).

Why this module is long (~480 lines): detection, the canonical crop (the
template measured from training images) and the warp share the same
coordinate conventions and failure outcomes; each part is a few short
functions, and a split would pass the matrix conventions between files.
"""
from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import DragkitError
from .photo import Photo, PhotoError

__all__ = [
    "ALIGNMENTS", "NoFaceError", "Face", "Alignment", "LandmarkTemplate", "celeba_template", "fit_similarity",
    "ffhq_matrix", "template_matrix", "warp_image", "detect_faces", "align_face", "align_landmarks",
    "alignment_for_model",
    "apply_matrix", "group_points", "TEMPLATE_PATH", "MIN_EYE_DISTANCE", "DETECT_MAX_SIDE",
]

ALIGNMENTS = ("celeba", "ffhq")
TEMPLATE_PATH = Path(__file__).resolve().parents[1] / "assets" / "celeba128_landmarks.json"
TEMPLATE_FORMAT = "dragkit-landmark-template"
MIN_EYE_DISTANCE = 12.0
DETECT_MAX_SIDE = 1280
SOFT_UPSCALE = 2.0

# dlib's 68-point scheme.
JAW, BROWS, NOSE, EYES, MOUTH = range(0, 17), range(17, 27), range(27, 36), range(36, 48), range(48, 68)
LEFT_EYE, RIGHT_EYE = range(36, 42), range(42, 48)  # "left" = image left
MOUTH_LEFT, MOUTH_RIGHT = 48, 54


class NoFaceError(PhotoError):
    """No usable face in the photo (none found, or too small for reliable landmarks)."""


@dataclass(frozen=True)
class LandmarkTemplate:
    """Canonical landmark positions of a crop.

    Attributes:
        size: the crop size (pixels) the positions are given in.
        points: ``(68, 2)`` float ``[x, y]``.
        fit_groups: the similarity is fitted to one point per group, the
            mean of the group's landmarks (e.g. the six of an eye).
        info: the file's provenance fields.
    """

    size: int
    points: np.ndarray
    fit_groups: tuple[tuple[int, ...], ...]
    info: dict[str, Any] = field(default_factory=dict)

    def scaled(self, size: int) -> np.ndarray:
        """``points`` in an ``size`` px crop of the same framing (pixel centres stay centres)."""
        return (self.points + 0.5) * (size / self.size) - 0.5


@functools.lru_cache(maxsize=4)
def celeba_template(path: str | None = None) -> LandmarkTemplate:
    """The measured CelebA-128 template (``assets/celeba128_landmarks.json``).

    Raises:
        DragkitError: the file is missing or malformed (re-make it with ``python -m dragkit.invert.template``).
    """
    p = Path(path) if path else TEMPLATE_PATH
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
        if d.get("format") != TEMPLATE_FORMAT:
            raise ValueError(f"format is not {TEMPLATE_FORMAT!r}")
        pts = np.asarray(d["landmarks"], dtype=np.float64)
        groups = tuple(tuple(int(i) for i in g) for g in d["fit_groups"])
        if pts.shape != (68, 2) or not np.isfinite(pts).all() or len(groups) < 2 \
                or not all(g and all(0 <= i < 68 for i in g) for g in groups):
            raise ValueError("landmarks must be 68 finite [x, y] pairs and fit_groups >= 2 lists of indices")
        info = {k: v for k, v in d.items() if k not in ("landmarks", "std")}
        return LandmarkTemplate(size=int(d["size"]), points=pts, fit_groups=groups, info=info)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DragkitError(f"{p}: landmark template missing or malformed ({exc}); "
                           "re-make it with python -m dragkit.invert.template") from None


# ----------------------------------------------------------------------------
# Geometry.


def apply_matrix(M: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """``(N, 2)`` points through a 2 x 3 matrix."""
    pts = np.asarray(pts, dtype=np.float64)
    return pts @ M[:, :2].T + M[:, 2]


def invert_matrix(M: np.ndarray) -> np.ndarray:
    """The inverse of a 2 x 3 affine matrix."""
    A = np.linalg.inv(M[:, :2])
    return np.concatenate([A, -A @ M[:, 2:3]], axis=1)


def _compose(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``A o B`` for 2 x 3 matrices (B first)."""
    return np.concatenate([A[:, :2] @ B[:, :2], A[:, :2] @ B[:, 2:3] + A[:, 2:3]], axis=1)


def fit_similarity(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) with ``dst ~ M @ src``.

    Umeyama (1991).  ``src``, ``dst``: ``(N, 2)``, N >= 2.  Returns ``M`` (2, 3).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need two (N, 2) point sets with N >= 2, got {src.shape} and {dst.shape}")
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    mu_s, mu_d = w @ src, w @ dst
    xs, xd = src - mu_s, dst - mu_d
    cov = (xd * w[:, None]).T @ xs
    U, S, Vt = np.linalg.svd(cov)
    D = np.diag([1.0, np.sign(np.linalg.det(U @ Vt)) or 1.0])
    R = U @ D @ Vt
    var_s = float(w @ (xs**2).sum(1))
    if var_s <= 0:
        raise ValueError("source points coincide")
    scale = float(np.trace(np.diag(S) @ D)) / var_s
    t = mu_d - scale * R @ mu_s
    return np.concatenate([scale * R, t[:, None]], axis=1)


def group_points(landmarks: np.ndarray, groups: Sequence[Sequence[int]]) -> np.ndarray:
    """One point per group of landmark indices, the group's mean: ``(len(groups), 2)``."""
    lm = np.asarray(landmarks, dtype=np.float64)
    return np.stack([lm[list(g)].mean(0) for g in groups])


def matrix_scale(M: np.ndarray) -> float:
    """Uniform scale of a similarity (crop pixels per photo pixel)."""
    return float(math.sqrt(abs(np.linalg.det(M[:, :2]))))


def ffhq_matrix(landmarks: np.ndarray, size: int) -> np.ndarray:
    """FFHQ's crop of a face with dlib's 68 ``landmarks`` as the matrix photo -> ``size`` px crop."""
    lm = np.asarray(landmarks, dtype=np.float64)
    eye_l = lm[list(LEFT_EYE)].mean(0)
    eye_r = lm[list(RIGHT_EYE)].mean(0)
    eye_avg = (eye_l + eye_r) / 2
    eye_to_eye = eye_r - eye_l
    mouth_avg = (lm[MOUTH_LEFT] + lm[MOUTH_RIGHT]) / 2
    eye_to_mouth = mouth_avg - eye_avg
    # x axis: eye_to_eye, averaged with eye_to_mouth turned a quarter (so a tilt of either counts).
    x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])
    x = x / np.hypot(*x)
    half = max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    x = x * half
    y = np.array([-x[1], x[0]])
    c = eye_avg + eye_to_mouth * 0.1
    top_left = c - x - y
    # top_left -> crop edge (0, 0), top_left + 2x -> (size, 0), top_left + 2y -> (0, size).
    k = size / (2 * half * half)
    A = k * np.array([[x[0], x[1]], [-x[1], x[0]]])
    t = -A @ top_left - 0.5  # crop edges -> pixel-centre coordinates
    return np.concatenate([A, t[:, None]], axis=1)


def template_matrix(landmarks: np.ndarray, size: int, template: LandmarkTemplate | None = None) -> np.ndarray:
    """The similarity from a face's 68 ``landmarks`` onto ``template`` (default CelebA-128) at ``size`` px."""
    tpl = template or celeba_template()
    return fit_similarity(group_points(landmarks, tpl.fit_groups), group_points(tpl.scaled(size), tpl.fit_groups))


def _gaussian_blur(rgb: np.ndarray, radius: float) -> np.ndarray:
    from PIL import Image, ImageFilter

    return np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(radius)))


def warp_image(rgb: np.ndarray, M: np.ndarray, size: int | tuple[int, int], *, fill: str = "reflect") -> np.ndarray:
    """Resample ``rgb`` (H, W, 3) uint8 through ``M`` (photo -> output) into a ``size`` px image.

    Bicubic; shrinking by 2x or more is box-filtered first (no aliasing on
    big photos).  ``fill``: what lies outside the photo - ``'reflect'`` (a
    mirror image fading into a blur, as FFHQ's crops) or ``'black'``.
    """
    from PIL import Image

    out_w, out_h = (size, size) if isinstance(size, int) else size
    H, W = rgb.shape[:2]
    Minv = invert_matrix(M)
    corners = apply_matrix(Minv, np.array([[-0.5, -0.5], [out_w - 0.5, -0.5], [-0.5, out_h - 0.5],
                                           [out_w - 0.5, out_h - 0.5]]))
    scale = matrix_scale(M)
    margin = 4.0 / max(scale, 1e-6) + 4
    x0, y0 = np.floor(corners.min(0) - margin).astype(int)
    x1, y1 = np.ceil(corners.max(0) + margin).astype(int)
    # Work on the photo's part under the crop (plus a margin), never the whole of a huge photo.
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
    if cx1 <= cx0 or cy1 <= cy0:
        raise PhotoError("the crop lies entirely outside the photo")
    img = rgb[cy0:cy1, cx0:cx1]
    M = _compose(M, np.array([[1.0, 0, cx0], [0, 1.0, cy0]]))  # crop-local -> output
    k = int(math.floor(1.0 / scale + 1e-6)) if scale < 0.5 else 1  # (1e-6: an exact 1/8 must give 8)
    if k >= 2:
        pil = Image.fromarray(np.ascontiguousarray(img)).reduce(k)
        img = np.asarray(pil)
        # reduced pixel i covers original pixels k*i .. k*i + k - 1: centre k*i + (k - 1)/2
        M = _compose(M, np.array([[float(k), 0, (k - 1) / 2], [0, float(k), (k - 1) / 2]]))
    h, w = img.shape[:2]
    Minv = invert_matrix(M)
    corners = apply_matrix(Minv, np.array([[-0.5, -0.5], [out_w - 0.5, -0.5], [-0.5, out_h - 0.5],
                                           [out_w - 0.5, out_h - 0.5]]))
    pad_l = int(max(0, math.ceil(-corners[:, 0].min() + 3)))
    pad_t = int(max(0, math.ceil(-corners[:, 1].min() + 3)))
    pad_r = int(max(0, math.ceil(corners[:, 0].max() - (w - 1) + 3)))
    pad_b = int(max(0, math.ceil(corners[:, 1].max() - (h - 1) + 3)))
    if any((pad_l, pad_t, pad_r, pad_b)):
        if fill == "reflect":
            padded = np.pad(img, ((pad_t, pad_b), (pad_l, pad_r), (0, 0)), mode="reflect")
            # Fade the mirror image into a blur with the distance from the photo (FFHQ does the same).
            yy, xx = np.mgrid[0:padded.shape[0], 0:padded.shape[1]].astype(np.float32)
            dx = np.maximum(pad_l - xx, xx - (pad_l + w - 1)).clip(0)
            dy = np.maximum(pad_t - yy, yy - (pad_t + h - 1)).clip(0)
            ramp = max(4.0, 0.1 * max(h, w))
            a = np.clip(np.maximum(dx, dy) / ramp, 0, 1)[..., None]
            blur = _gaussian_blur(padded, max(1.0, 0.02 * max(h, w)))
            img = np.clip(np.rint(padded * (1 - a) + blur * a), 0, 255).astype(np.uint8)
        elif fill == "black":
            img = np.pad(img, ((pad_t, pad_b), (pad_l, pad_r), (0, 0)), mode="constant")
        else:
            raise ValueError(f"fill must be 'reflect' or 'black', got {fill!r}")
        M = _compose(M, np.array([[1.0, 0, -pad_l], [0, 1.0, -pad_t]]))
        Minv = invert_matrix(M)
    # PIL's AFFINE takes output -> input in edge coordinates (pixel centres at +0.5).
    A, t = Minv[:, :2], Minv[:, 2]
    off = t + 0.5 - A @ np.array([0.5, 0.5])
    data = (A[0, 0], A[0, 1], off[0], A[1, 0], A[1, 1], off[1])
    pil = Image.fromarray(np.ascontiguousarray(img))
    out = pil.transform((out_w, out_h), Image.Transform.AFFINE, data=data, resample=Image.Resampling.BICUBIC)
    return np.asarray(out.convert("RGB"))


# ----------------------------------------------------------------------------
# Faces.


@dataclass
class Face:
    """One detected face: ``box`` ``[left, top, right, bottom]`` and ``landmarks`` ``(68, 2)`` in photo pixels."""

    box: tuple[float, float, float, float]
    landmarks: np.ndarray

    @property
    def area(self) -> float:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])

    @property
    def eye_distance(self) -> float:
        lm = self.landmarks
        return float(np.hypot(*(lm[list(RIGHT_EYE)].mean(0) - lm[list(LEFT_EYE)].mean(0))))


def detect_faces(rgb: np.ndarray) -> list[Face]:
    """All frontal faces dlib finds, largest first, each with its 68 landmarks (full-resolution pixels).

    Search: on a copy at most :data:`DETECT_MAX_SIDE` px long, without
    upsampling, then upsampled once (twice for photos under 400 px) when
    nothing was found.

    Raises:
        DragkitError: dlib is not installed (extra ``dragkit[faces]``).
    """
    from PIL import Image

    from ..dlibfaces import face_models

    fm = face_models()
    H, W = rgb.shape[:2]
    s = min(1.0, DETECT_MAX_SIDE / max(H, W))
    small = rgb if s == 1.0 else np.asarray(
        Image.fromarray(rgb).resize((max(1, round(W * s)), max(1, round(H * s))), Image.Resampling.BOX))
    sx, sy = W / small.shape[1], H / small.shape[0]
    ups = [0, 1] + ([2] if max(small.shape[:2]) < 400 else [])
    rects: list[Any] = []
    for up in ups:
        rects = fm.detect(small, up)
        if rects:
            break
    faces = []
    for r in rects:
        box = (r.left() * sx, r.top() * sy, (r.right() + 1) * sx - 1, (r.bottom() + 1) * sy - 1)
        lm = fm.landmarks(rgb, fm.rect(box))
        faces.append(Face(box=tuple(float(v) for v in box), landmarks=lm))
    faces.sort(key=lambda f: -f.area)
    return faces


@dataclass
class Alignment:
    """An aligned face crop and how it was made.

    Attributes:
        image: ``(size, size, 3)`` uint8 RGB crop.
        matrix: 2 x 3, photo pixel -> crop pixel.
        method: ``'celeba'`` or ``'ffhq'``.
        face: the face aligned (photo pixels).
        landmarks: its 68 landmarks mapped into the crop ``(68, 2)``.
        faces_found: how many faces the detector saw.
        upscale: crop pixels per photo pixel (> 1: the face was enlarged).
        fit_rms: RMS distance (crop px) of the fitted landmarks to the template (``'celeba'``; NaN for ``'ffhq'``).
        warnings: one sentence each.
    """

    image: np.ndarray
    matrix: np.ndarray
    method: str
    face: Face
    landmarks: np.ndarray
    faces_found: int
    upscale: float
    fit_rms: float
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """What a session records about the crop (photo -> crop matrix, the face box, warnings)."""
        return {
            "method": self.method,
            "matrix": [[float(v) for v in row] for row in self.matrix],
            "face_box": [float(v) for v in self.face.box],
            "faces_found": self.faces_found,
            "upscale": self.upscale,
            "fit_rms": None if math.isnan(self.fit_rms) else self.fit_rms,
            "warnings": list(self.warnings),
        }


def align_face(photo: Photo | np.ndarray, size: int, method: str = "celeba", *,
               template: LandmarkTemplate | None = None) -> Alignment:
    """Detect the face of ``photo`` and warp it onto the ``method`` crop at ``size`` px.

    Several faces: the largest is used (a warning says so).

    Raises:
        NoFaceError: no face found, or the face is too small for reliable landmarks.
        DragkitError: dlib is not installed.
        ValueError: unknown ``method``.
    """
    if method not in ALIGNMENTS:
        raise ValueError(f"method must be one of {ALIGNMENTS}, got {method!r}")
    rgb = photo.rgb if isinstance(photo, Photo) else np.asarray(photo)
    source = photo.source if isinstance(photo, Photo) else "the photo"
    faces = detect_faces(rgb)
    if not faces:
        raise NoFaceError(f"{source}: no face found (dlib's frontal face detector); "
                          "use a photo with one face seen from the front, at least about 40 px wide")
    face = faces[0]
    warns = []
    if len(faces) > 1:
        l, t, r, b = face.box
        warns.append(f"{len(faces)} faces found; aligned the largest ({r - l + 1:.0f}x{b - t + 1:.0f} px at "
                     f"[{l:.0f}, {t:.0f}]); crop the photo to choose another")
    al = align_landmarks(rgb, face, size, method, template=template, source=source)
    al.faces_found = len(faces)
    al.warnings = warns + al.warnings
    return al


def align_landmarks(rgb: np.ndarray, face: Face, size: int, method: str = "celeba", *,
                    template: LandmarkTemplate | None = None, source: str = "the photo") -> Alignment:
    """Warp ``rgb`` onto the ``method`` crop for a face whose 68 landmarks are known (no detection).

    Raises:
        NoFaceError: the face is too small for reliable landmarks.
        ValueError: unknown ``method`` or landmarks not ``(68, 2)``.
    """
    if method not in ALIGNMENTS:
        raise ValueError(f"method must be one of {ALIGNMENTS}, got {method!r}")
    if np.asarray(face.landmarks).shape != (68, 2):
        raise ValueError(f"landmarks must be (68, 2), got {np.asarray(face.landmarks).shape}")
    if face.eye_distance < MIN_EYE_DISTANCE:
        raise NoFaceError(f"{source}: the face is too small ({face.eye_distance:.0f} px between the eyes; "
                          f"at least {MIN_EYE_DISTANCE:.0f} px are needed for reliable landmarks)")
    warns = []
    tpl = None
    if method == "celeba":
        tpl = template or celeba_template()
        M = template_matrix(face.landmarks, size, tpl)
    else:
        M = ffhq_matrix(face.landmarks, size)
    up = matrix_scale(M)
    if up > SOFT_UPSCALE:
        warns.append(f"the face is small: the crop enlarges it {up:.1f}x and will look soft")
    image = warp_image(rgb, M, size)
    lm_crop = apply_matrix(M, face.landmarks)
    if tpl is not None:
        d = group_points(lm_crop, tpl.fit_groups) - group_points(tpl.scaled(size), tpl.fit_groups)
        fit_rms = float(np.sqrt((d**2).sum(1).mean()))
    else:
        fit_rms = math.nan
    return Alignment(image=image, matrix=M, method=method, face=face, landmarks=lm_crop,
                     faces_found=1, upscale=up, fit_rms=fit_rms, warnings=warns)


def alignment_for_model(G: Any, requested: str = "auto") -> tuple[str, str | None]:
    """The crop a model wants: ``(method, note)``.

    ``requested`` ``'celeba'``/``'ffhq'`` wins; ``'auto'`` reads the model's
    metadata: an ``alignment`` field, else ``data`` naming CelebA (models
    made by ``dragkit train`` on the shared zip) -> ``'celeba'``; anything
    else -> ``'ffhq'`` (the crop of nearly every public face checkpoint),
    with a note saying it was assumed.
    """
    if requested in ALIGNMENTS:
        return requested, None
    if requested != "auto":
        raise DragkitError(f"alignment must be auto, {' or '.join(ALIGNMENTS)}; got {requested!r}")
    meta = getattr(G, "dragkit_metadata", None) or {}
    a = meta.get("alignment")
    if a in ALIGNMENTS:
        return a, None
    if "celeba" in str(meta.get("data", "")).lower():
        return "celeba", None
    return "ffhq", "the model does not say how its faces were cropped; assumed FFHQ's crop (--alignment to choose)"


def landmark_indices(names: Sequence[str]) -> list[int]:
    """Landmark indices of named groups (``'jaw'``, ``'brows'``, ``'nose'``, ``'eyes'``, ``'mouth'``)."""
    groups = {"jaw": JAW, "brows": BROWS, "nose": NOSE, "eyes": EYES, "mouth": MOUTH}
    out: list[int] = []
    for n in names:
        out += list(groups[n])
    return out
