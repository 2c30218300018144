"""The bundled face model ``faces128``: the default, renders faces dlib finds, and drags a face.

At most a few seconds of face-model work (one generate, one short drag);
the model's figures (detection share, Frechet distance, speed) come from
``benchmarks/face_quality.py`` and are in docs/models/faces128.md.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from dragkit import DragSession, load_model
from dragkit.cli import main
from dragkit.models import ASSETS_DIR, default_model_name, list_models


def test_faces128_is_bundled_the_default_and_says_its_licence():
    assert default_model_name() == "faces128"
    info = {m.name: m for m in list_models()}["faces128"]
    assert info.source == "bundled" and info.resolution == 128
    assert (ASSETS_DIR / "faces128.safetensors").stat().st_size <= 20 * 2**20  # fp16 generator
    assert (ASSETS_DIR / "faces128.disc.safetensors").is_file()  # for --init-from faces128
    meta = json.loads((ASSETS_DIR / "faces128.json").read_text())["metadata"]
    assert "non-commercial" in meta["licence"] and meta["kimg"] > 52


def test_generate_defaults_to_a_face_that_dlib_finds(tmp_path, capsys):
    fm = pytest.importorskip("dragkit.dlibfaces").face_models()
    out = tmp_path / "face.png"
    assert main(["generate", "--seed", "0", "--out", str(out)]) == 0
    assert "model faces128" in capsys.readouterr().out
    img = np.asarray(Image.open(out).convert("RGB"))
    assert img.shape == (128, 128, 3)
    assert len(fm.detect(img)) == 1


def test_dragging_a_mouth_corner_moves_the_mouth_dlib_sees():
    fm = pytest.importorskip("dragkit.dlibfaces").face_models()
    G = load_model("faces128")
    s = DragSession(G, seed=0, psi=0.7)
    img = np.asarray(s.image())
    (rect,) = fm.detect(img)
    corner = fm.landmarks(img, rect)[54]  # right mouth corner
    s.add_point(handle=tuple(corner), target=(corner[0], corner[1] - 6))  # 6 px up
    last = None
    for last in s.run(max_steps=80):
        pass
    assert last is not None and last.distances[0] <= 2.0  # the tracked handle arrived
    after = np.asarray(s.image())
    found = fm.detect(after)
    assert len(found) == 1  # still a face
    moved = fm.landmarks(after, found[0])[54] - corner
    assert moved[1] <= -2 and abs(moved[0]) <= 2, moved  # dlib's corner went up, not sideways
