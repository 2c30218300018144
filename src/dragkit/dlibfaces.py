"""dlib's face detector, 68-point landmarks and 128-d face descriptors (optional extra ``dragkit[faces]``).

Used to judge face models (``benchmarks/face_quality.py``), to score the
landmark experiment of ``dragkit eval`` and to align photos for inversion.
The model files come from the ``face_recognition_models`` package, found by
its file path: that package's own ``__init__`` imports ``pkg_resources``,
which recent setuptools no longer ship, so it is never imported.  Nothing is
downloaded.

Images are ``(H, W, 3)`` uint8 RGB NumPy arrays; points are ``[x, y]``
pixels.
"""
from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import DragkitError

__all__ = ["FaceModels", "face_models", "models_dir", "frechet_distance", "FACES_EXTRA_HINT"]

FACES_EXTRA_HINT = "install the optional face tools: pip install 'dragkit[faces]' (dlib-bin, face-recognition-models)"

_FILES = {
    "landmarks68": "shape_predictor_68_face_landmarks.dat",
    "landmarks5": "shape_predictor_5_face_landmarks.dat",
    "descriptor": "dlib_face_recognition_resnet_model_v1.dat",
}


def models_dir() -> Path:
    """The folder of ``face_recognition_models``' ``.dat`` files (without importing the package)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise DragkitError(f"dlib's face models are not installed; {FACES_EXTRA_HINT}")
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    missing = [f for f in _FILES.values() if not (folder / f).is_file()]
    if missing:
        raise DragkitError(f"{folder}: missing {missing[0]}; reinstall face-recognition-models")
    return folder


def _dlib() -> Any:
    try:
        import dlib
    except ImportError:
        raise DragkitError(f"dlib is not installed; {FACES_EXTRA_HINT}") from None
    return dlib


@dataclass
class FaceModels:
    """dlib's HOG frontal face detector, 68- and 5-point shape predictors and the face-recognition ResNet."""

    detector: Any
    landmarks68: Any
    landmarks5: Any
    descriptor: Any

    def detect(self, img: np.ndarray, upsample: int = 0) -> list[Any]:
        """Face rectangles (``dlib.rectangle``) found in ``img`` (H, W, 3) uint8."""
        return list(self.detector(_rgb(img), upsample))

    def largest(self, img: np.ndarray, upsample: int = 1) -> Any | None:
        """The largest face rectangle :meth:`detect` finds (upsampled once by default), or None."""
        rects = self.detect(img, upsample)
        return max(rects, key=lambda r: r.area()) if rects else None

    def landmarks(self, img: np.ndarray, rect: Any | None = None) -> np.ndarray:
        """The 68 landmarks ``(68, 2)`` float ``[x, y]`` of the face in ``rect`` (default: the whole image)."""
        img = _rgb(img)
        shape = self.landmarks68(img, rect if rect is not None else self.whole(img))
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)

    def descriptor_of(self, img: np.ndarray, rect: Any) -> np.ndarray:
        """The 128-d face descriptor of the face in ``rect`` (aligned by the 5-point predictor)."""
        img = _rgb(img)
        shape = self.landmarks5(img, rect)
        return np.asarray(self.descriptor.compute_face_descriptor(img, shape), dtype=np.float64)

    @staticmethod
    def whole(img: np.ndarray) -> Any:
        dlib = _dlib()
        return dlib.rectangle(0, 0, img.shape[1] - 1, img.shape[0] - 1)

    @staticmethod
    def rect(box: Sequence[float]) -> Any:
        """``[left, top, right, bottom]`` -> ``dlib.rectangle``."""
        dlib = _dlib()
        left, top, right, bottom = (int(round(v)) for v in box)
        return dlib.rectangle(left, top, right, bottom)


@functools.lru_cache(maxsize=1)
def face_models() -> FaceModels:
    """Load dlib's models once per process (about 130 MB of files; a second or two)."""
    dlib = _dlib()
    folder = models_dir()
    return FaceModels(
        detector=dlib.get_frontal_face_detector(),
        landmarks68=dlib.shape_predictor(str(folder / _FILES["landmarks68"])),
        landmarks5=dlib.shape_predictor(str(folder / _FILES["landmarks5"])),
        descriptor=dlib.face_recognition_model_v1(str(folder / _FILES["descriptor"])),
    )


def _rgb(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise DragkitError(f"expected an (H, W, 3) uint8 RGB image, got {img.dtype} {list(img.shape)}")
    return np.ascontiguousarray(img)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two sets of feature vectors ``(N, D)``.

    ``|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))``, the FID formula,
    with the matrix square root taken through symmetric eigendecompositions
    (``Tr (S_a S_b)^(1/2) = Tr (S_a^(1/2) S_b S_a^(1/2))^(1/2)``), so NumPy alone suffices.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"need two (N, D) sets with N >= 2, got {a.shape} and {b.shape}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    vals, vecs = np.linalg.eigh(s_a)
    root_a = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
    cross = np.linalg.eigvalsh(root_a @ s_b @ root_a)
    tr_root = np.sqrt(np.clip(cross, 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * tr_root)
