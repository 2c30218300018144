"""dlib face tools (extra dragkit[faces]): models found by file path, detection, descriptors, Frechet distance."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dragkit.dlibfaces import face_models, frechet_distance, models_dir
from dragkit.errors import DragkitError

CELEBA = Path(__file__).resolve().parents[2] / "shared" / "data" / "celeba128_train.zip"


def test_frechet_distance_of_gaussians_matches_the_closed_form() -> None:
    rng = np.random.default_rng(0)
    sa, sb = np.array([1.0, 2.0, 0.5]), np.array([1.5, 1.0, 0.5])
    mu = np.array([0.3, -0.2, 1.0])
    a = rng.standard_normal((200_000, 3)) * sa
    b = rng.standard_normal((200_000, 3)) * sb + mu
    expected = (mu**2).sum() + ((sa - sb) ** 2).sum()  # diagonal covariances
    assert frechet_distance(a, b) == pytest.approx(expected, abs=0.02)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError):
        frechet_distance(a[:, :2], b)


def test_models_are_found_without_importing_the_package(monkeypatch) -> None:
    folder = models_dir()
    assert (folder / "shape_predictor_68_face_landmarks.dat").is_file()
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DragkitError, match=r"dragkit\[faces\]"):
        models_dir()


@pytest.mark.skipif(not CELEBA.is_file(), reason="needs ../shared/data/celeba128_train.zip beside the checkout")
def test_a_real_face_is_detected_with_landmarks_and_a_descriptor() -> None:
    from PIL import Image

    with zipfile.ZipFile(CELEBA) as z:
        imgs = [np.asarray(Image.open(io.BytesIO(z.read(f"{i:05d}.webp"))).convert("RGB")) for i in (19000, 19001)]
    fm = face_models()
    rects = fm.detect(imgs[0])
    assert len(rects) == 1
    pts = fm.landmarks(imgs[0], rects[0])
    assert pts.shape == (68, 2) and ((pts[36:48] >= 0) & (pts[36:48] < 128)).all()  # the eyes lie inside the crop
    # the eyes (landmarks 36-47) lie above the mouth (48-67)
    assert pts[36:48, 1].mean() < pts[48:68, 1].mean()
    d0 = fm.descriptor_of(imgs[0], rects[0])
    assert d0.shape == (128,) and abs(np.linalg.norm(d0) - 1) < 0.5
    d1 = fm.descriptor_of(imgs[1], fm.detect(imgs[1])[0])
    assert 0 < np.linalg.norm(d0 - d1) < 2
    with pytest.raises(DragkitError, match="uint8"):
        fm.detect(imgs[0].astype(np.float32))
