"""Face alignment with dlib on real faces, and every awkward photo's outcome.

Faces come from the shared CelebA zip (held-out images, read at test time,
never committed); the tests skip where dlib or the zip is missing.
"""
from __future__ import annotations

import io
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("dlib")

from dragkit.invert import NoFaceError, align_face, read_photo  # noqa: E402
from dragkit.invert.align import apply_matrix, invert_matrix, warp_image  # noqa: E402
from dragkit.invert.metrics import psnr_uint8  # noqa: E402

ZIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "celeba128_train.zip"
pytestmark = pytest.mark.skipif(not ZIP.is_file(), reason="needs ../shared/data/celeba128_train.zip")


def face(i: int = 19000) -> np.ndarray:
    with zipfile.ZipFile(ZIP) as z:
        return np.asarray(Image.open(io.BytesIO(z.read(f"{i:05d}.webp"))).convert("RGB"))


def similarity(scale: float, angle_deg: float, tx: float, ty: float) -> np.ndarray:
    a = math.radians(angle_deg)
    R = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return np.concatenate([R, [[tx], [ty]]], axis=1)


def in_photo(img: np.ndarray, S: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return warp_image(img, S, size, fill="reflect")


def test_a_moved_turned_and_enlarged_face_is_aligned_back_onto_the_training_crop():
    crop = face(19000)
    ref = align_face(crop, 128, "celeba")  # the crop itself: alignment moves it by its own residual only
    S = similarity(3.1, 14.0, 120.0, 40.0)
    photo = in_photo(crop, S, (600, 520))
    al = align_face(photo, 128, "celeba")
    # Expected: undo S, then the crop's own residual.  dlib's landmarks on the enlarged, turned copy
    # differ a little from those on the crop (measured: 2.4 px mean over this crop, 1.0 px over six
    # held-out faces; CelebA's own alignment differs from dlib's by 2.2 px, the template's
    # fit_groups_measured).
    expected = ref.matrix @ np.concatenate([invert_matrix(S), [[0, 0, 1]]])
    grid = np.stack(np.meshgrid(np.arange(0, 128, 8), np.arange(0, 128, 8)), -1).reshape(-1, 2).astype(float)
    photo_pts = apply_matrix(invert_matrix(expected), grid)
    err = np.linalg.norm(apply_matrix(al.matrix, photo_pts) - grid, axis=1)
    assert err.mean() < 3.0, err.mean()
    assert psnr_uint8(al.image[8:-8, 8:-8], ref.image[8:-8, 8:-8]) > 22
    assert al.faces_found == 1 and al.warnings == []
    assert al.upscale == pytest.approx(math.sqrt(abs(np.linalg.det(expected[:, :2]))), rel=0.06)  # measured 3 %


def test_the_training_crop_is_already_aligned():
    # Re-aligning held-out crops moves them by the alignment noise of CelebA itself (~2 px), not more.
    moves = []
    for i in range(19000, 19006):
        al = align_face(face(i), 128, "celeba")
        grid = np.stack(np.meshgrid(np.arange(0, 128, 8), np.arange(0, 128, 8)), -1).reshape(-1, 2).astype(float)
        moves.append(np.linalg.norm(apply_matrix(al.matrix, grid) - grid, axis=1).mean())
    assert np.mean(moves) < 4.0, moves


def test_ffhq_alignment_undoes_a_turn_of_the_photo():
    crop = face(19001)
    upright = align_face(in_photo(crop, similarity(4.0, 0.0, 100.0, 100.0), (712, 712)), 256, "ffhq")
    turned = align_face(in_photo(crop, similarity(4.0, 25.0, 300.0, 0.0), (800, 800)), 256, "ffhq")
    assert upright.method == "ffhq" and math.isnan(upright.fit_rms)
    assert psnr_uint8(turned.image[16:-16, 16:-16], upright.image[16:-16, 16:-16]) > 20
    # Its framing: the point between the eyes and a tenth of the way to the mouth is the crop's centre.
    lm = turned.landmarks
    eye_avg = (lm[36:42].mean(0) + lm[42:48].mean(0)) / 2
    centre = eye_avg + 0.1 * ((lm[48] + lm[54]) / 2 - eye_avg)
    assert np.abs(centre - 127.5).max() < 1e-6


def test_no_face_is_one_clear_error():
    rng = np.random.default_rng(0)
    for img in (np.full((300, 300, 3), 128, np.uint8), rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)):
        with pytest.raises(NoFaceError, match="no face found") as e:
            align_face(img, 128, "celeba")
        assert "\n" not in str(e.value)


def test_several_faces_align_the_largest_with_a_warning():
    big = np.asarray(Image.fromarray(face(19002)).resize((256, 256), Image.Resampling.LANCZOS))
    small = face(19003)
    photo = np.full((300, 450, 3), 100, np.uint8)
    photo[20:276, 10:266] = big
    photo[100:228, 300:428] = small
    al = align_face(photo, 128, "celeba")
    assert al.faces_found == 2 and any("2 faces found" in w for w in al.warnings)
    assert al.face.box[0] < 266  # the big one, on the left
    assert psnr_uint8(al.image[8:-8, 8:-8], align_face(face(19002), 128, "celeba").image[8:-8, 8:-8]) > 20


def test_a_tiny_face_is_refused_and_a_small_one_warned_about():
    crop = face(19004)
    small = in_photo(crop, similarity(0.45, 0.0, 150.0, 150.0), (360, 360))  # ~60 px face, eyes ~14 px apart
    al = align_face(small, 128, "celeba")
    assert any("enlarges it" in w for w in al.warnings) and al.upscale > 2
    tiny = np.full((400, 400, 3), 120, np.uint8)
    t = np.asarray(Image.fromarray(crop).resize((28, 28), Image.Resampling.LANCZOS))
    tiny[200:228, 200:228] = t
    with pytest.raises(NoFaceError):
        align_face(tiny, 128, "celeba")


def test_huge_grayscale_and_rotated_photos():
    crop = face(19005)
    S = similarity(24.0, -8.0, 1500.0, 1200.0)  # a 3000 px face in a 5000 x 4000 photo (20 MP)
    huge = warp_image(crop, S, (5000, 4000), fill="reflect")
    al = align_face(huge, 128, "celeba")
    ref = align_face(crop, 128, "celeba")
    assert psnr_uint8(al.image[8:-8, 8:-8], ref.image[8:-8, 8:-8]) > 22
    gray = np.asarray(Image.fromarray(crop).convert("L").resize((256, 256)))
    buf = io.BytesIO()
    Image.fromarray(gray).save(buf, "PNG")
    p = read_photo(buf.getvalue())
    assert p.grayscale and align_face(p, 128, "celeba").image.shape == (128, 128, 3)
    # A portrait stored sideways with an EXIF orientation: the face is found the right way up.
    side = Image.fromarray(np.asarray(Image.fromarray(crop).resize((256, 256)))).transpose(Image.Transpose.ROTATE_90)
    exif = side.getexif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    side.save(buf, "JPEG", exif=exif.tobytes(), quality=95)
    p = read_photo(buf.getvalue())
    assert p.exif_rotated
    al = align_face(p, 128, "celeba")
    assert psnr_uint8(al.image[8:-8, 8:-8], ref.image[8:-8, 8:-8]) > 20


def test_cli_align_without_a_face_writes_nothing(tmp_path, capsys):
    import os

    from dragkit.cli import main

    Image.fromarray(np.full((200, 200, 3), 90, np.uint8)).save(tmp_path / "wall.png")
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        rc = main(["invert", "--model", "toy", "--image", "wall.png", "--out", "e.dragkit.json", "--align",
                   "--alignment", "celeba"])
    finally:
        os.chdir(old)
    err = capsys.readouterr().err
    assert rc == 1 and "no face found" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wall.png"]
