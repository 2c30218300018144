"""The PyTorch port of dlib's face-recognition ResNet against dlib itself, on real faces.

Faces are read at test time from the shared CelebA zip (held-out images,
never committed); the tests skip where dlib or the zip is missing.
"""
from __future__ import annotations

import io
import itertools
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

dlib = pytest.importorskip("dlib")

from dragkit.dlibfaces import face_models, models_dir  # noqa: E402
from dragkit.invert.dlib_dnn import DlibFormatError, read_face_recognition_weights  # noqa: E402
from dragkit.invert.facerec import chip_matrix, chip_of_uint8, load_face_recognition_net  # noqa: E402
from dragkit.nets.facerec import LAYERS, FaceRecResNet  # noqa: E402

ZIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "celeba128_train.zip"
needs_faces = pytest.mark.skipif(not ZIP.is_file(), reason="needs ../shared/data/celeba128_train.zip")


def held_out_faces(n: int) -> list[np.ndarray]:
    from PIL import Image

    with zipfile.ZipFile(ZIP) as z:
        return [np.asarray(Image.open(io.BytesIO(z.read(f"{i:05d}.webp"))).convert("RGB")) for i in range(19000, 19000 + n)]


def dlib_chip(img: np.ndarray, rect=None) -> np.ndarray:
    fm = face_models()
    r = rect if rect is not None else fm.largest(img)
    return dlib.get_face_chip(img, fm.landmarks5(img, r), size=150, padding=0.25)


def ours(chips: list[np.ndarray]) -> np.ndarray:
    net = load_face_recognition_net()
    x = torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        return net(x).double().numpy()


@needs_faces
def test_descriptors_match_dlib_on_real_face_chips():
    chips = [dlib_chip(img) for img in held_out_faces(6)]
    fm = face_models()
    ref = np.stack([np.asarray(fm.descriptor.compute_face_descriptor(c)) for c in chips])
    mine = ours(chips)
    # float32 rounding of a different summation order (measured: 4e-7 on these faces).
    assert np.abs(mine - ref).max() < 1e-5
    d_ref = [np.linalg.norm(ref[i] - ref[j]) for i, j in itertools.combinations(range(6), 2)]
    d_mine = [np.linalg.norm(mine[i] - mine[j]) for i, j in itertools.combinations(range(6), 2)]
    assert np.abs(np.array(d_ref) - np.array(d_mine)).max() < 1e-5


@needs_faces
def test_same_face_is_one_person_and_different_faces_are_not():
    faces = held_out_faces(8)
    fm = face_models()
    chips, mirrored = [], []
    for img in faces:
        r = fm.largest(img)
        chips.append(dlib_chip(img, r))
        w = img.shape[1]
        flip = np.ascontiguousarray(img[:, ::-1])
        mirrored.append(dlib_chip(flip, dlib.rectangle(w - 1 - r.right(), r.top(), w - 1 - r.left(), r.bottom())))
    a, b = ours(chips), ours(mirrored)
    same = np.linalg.norm(a - b, axis=1)
    diff = np.array([np.linalg.norm(a[i] - a[j]) for i, j in itertools.combinations(range(len(a)), 2)])
    # dlib's rule: < 0.6 is one person.  A mirrored photo stays one person; CelebA's held-out faces
    # are different people (measured: mirrored 0.14-0.56, different 0.72-1.0).
    assert (same < 0.6).all(), same
    assert (diff > 0.6).all(), diff.min()


@needs_faces
def test_differentiable_chip_of_a_generator_image_gives_dlibs_descriptor():
    # The chip cut by grid_sample (what the face loss uses) is close to dlib's own chip.
    img = held_out_faces(1)[0]
    fm = face_models()
    r = fm.largest(img)
    lm = fm.landmarks(img, r)
    ref = np.asarray(fm.descriptor.compute_face_descriptor(img, fm.landmarks68(img, r)))
    chip = chip_of_uint8(img, chip_matrix(lm, (img.shape[1], img.shape[0])))
    net = load_face_recognition_net()
    x = chip.clone().requires_grad_(True)
    d = net(x)
    assert float(np.linalg.norm(d[0].detach().double().numpy() - ref)) < 0.05  # bilinear vs dlib's sampling
    d.norm().backward()
    assert torch.isfinite(x.grad).all() and float(x.grad.abs().sum()) > 0


def test_the_file_is_read_whole_and_other_files_are_refused(tmp_path):
    path = models_dir() / "dlib_face_recognition_resnet_model_v1.dat"
    w = read_face_recognition_weights(path)
    assert w.size == 150 and len(w.params) == len(FaceRecResNet().ordered_params())
    assert sum(1 for p in w.params if p[0] == "con") == 29
    assert sum(1 for s in LAYERS if s[0] == "con") == 29
    cut = tmp_path / "truncated.dat"
    cut.write_bytes(path.read_bytes()[:1_000_000])
    with pytest.raises(DlibFormatError, match="past the end|end of file"):
        read_face_recognition_weights(cut)
    with pytest.raises(DlibFormatError):
        read_face_recognition_weights(models_dir() / "shape_predictor_5_face_landmarks.dat")
    extra = tmp_path / "extra.dat"
    extra.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(DlibFormatError, match="left after"):
        read_face_recognition_weights(extra)
