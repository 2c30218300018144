"""The mouth-corner benchmark's instruments (``benchmarks/drag_on_photos.py``, issue 15): the RGB patch shift
finds a known displacement of image content, a face dlib misses on the enlarged image is read in the box
found at the image's own size (upsampled once, or as it is), and ``dlib_corner_response.py``'s known warp moves
the corner by exactly the shift asked."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "drag_on_photos.py"


def _script(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def bench():
    return _script(SCRIPT)


def _blob_image(cx: float, cy: float) -> np.ndarray:
    """A 128 px image: a smooth background and one dark elongated blob (a 'mouth corner') centred at (cx, cy)."""
    yy, xx = np.mgrid[0:128, 0:128].astype(np.float64)
    base = 150 + 40 * np.sin(xx / 9.0) * np.cos(yy / 13.0)
    blob = np.exp(-(((xx - cx) / 4.0) ** 2 + ((yy - cy) / 2.0) ** 2))
    img = np.clip(base[..., None] * np.array([1.0, 0.8, 0.7]) - 90 * blob[..., None], 0, 255)
    return img.astype(np.uint8)


@pytest.mark.parametrize("shift", [(4.0, 0.0), (-3.0, 1.0), (0.0, 0.0)])
def test_patch_shift_reads_the_known_move_of_a_feature(bench, shift):
    before = _blob_image(60.0, 70.0)
    after = before.copy()
    moved = _blob_image(60.0 + shift[0], 70.0 + shift[1])
    # only the blob's neighbourhood moves (as in a drag), the rest of the image stays
    after[55:85, 40:80] = moved[55:85, 40:80]
    got = bench.patch_shift(before, after, (60.0, 70.0))
    assert np.allclose(got, shift, atol=0.5), got


def test_patch_shift_is_zero_on_an_unchanged_image_near_the_border(bench):
    img = _blob_image(3.0, 125.0)
    assert np.allclose(bench.patch_shift(img, img, (3.0, 125.0)), 0.0)


def test_a_face_missed_on_the_enlarged_image_is_read_in_the_box_found_at_its_own_size(bench, monkeypatch):
    pytest.importorskip("dlib")
    import dragkit.dlibfaces as dl

    fm = dl.face_models()
    calls = []

    def largest(img, upsample=1):  # the detector finds the face at 128 px only
        calls.append(img.shape[0])
        return fm.rect([20, 20, 107, 110]) if img.shape[0] == 128 else None

    monkeypatch.setattr(fm, "largest", largest)
    img = _blob_image(60.0, 70.0)
    box = bench.face_box(img, 4)
    assert calls == [512, 128]
    assert (box.left(), box.top(), box.right(), box.bottom()) == (80, 80, 431, 443)
    assert bench.face_box(img, 1) is not None and calls[-1] == 128


def test_a_face_found_only_without_upsampling_is_still_read(bench, monkeypatch):
    """Face 19019: dlib finds it at 128 px only when the detector does not upsample the image first."""
    pytest.importorskip("dlib")
    import dragkit.dlibfaces as dl

    fm = dl.face_models()
    calls = []

    def largest(img, upsample=1):
        calls.append((img.shape[0], upsample))
        return fm.rect([20, 20, 107, 110]) if (img.shape[0], upsample) == (128, 0) else None

    monkeypatch.setattr(fm, "largest", largest)
    box = bench.face_box(_blob_image(60.0, 70.0), 4)
    assert calls == [(512, 1), (128, 1), (128, 0)]
    assert (box.left(), box.top(), box.right(), box.bottom()) == (80, 80, 431, 443)


@pytest.fixture(scope="module")
def response():
    return _script(SCRIPT.parent / "dlib_corner_response.py")


def test_the_known_warp_moves_the_corner_by_the_shift_and_leaves_the_far_image(bench, response):
    img = _blob_image(60.0, 70.0)
    warped = response.warp_corner(img, (60.0, 70.0), (6.0, 0.0), sigma=8.0)
    # the blob's centre (the darkest point's centroid) moved 6 px; rows 50+ px away are untouched
    def centre(a):
        dark = (a.astype(float).sum(-1) < np.percentile(a.astype(float).sum(-1), 0.5))
        ys, xs = np.nonzero(dark)
        return np.array([xs.mean(), ys.mean()])
    assert np.allclose(centre(warped) - centre(img), (6.0, 0.0), atol=0.6)
    assert np.abs(warped[:20].astype(int) - img[:20].astype(int)).max() <= 1
    assert np.allclose(bench.patch_shift(img, warped, (60.0, 70.0), radius=2), (6.0, 0.0), atol=0.5)
    with pytest.raises(ValueError, match="folds"):
        response.warp_corner(img, (60.0, 70.0), (6.0, 0.0), sigma=3.0)
