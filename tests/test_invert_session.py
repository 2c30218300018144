"""DragSession.from_image: a photo -> a session that drags it, whose tuned generator travels with its files."""
from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from dragkit import DragSession
from dragkit.errors import DragkitError
from dragkit.invert import InversionCancelled, InvertConfig, PhotoError, ProjectConfig, load_inversion
from dragkit.models import ASSETS_DIR
from dragkit.utils import tensor_to_uint8

FAST = dict(w_steps=10, wplus_steps=10, lr_w=0.1, lr_wplus=0.05)


def photo_bytes(G, seed: int) -> bytes:
    with torch.no_grad():
        img = tensor_to_uint8(G.synthesis(G.ws_from_seed(seed, psi=0.7)))
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    return buf.getvalue()


def pti_config() -> InvertConfig:
    cfg = InvertConfig(projection=ProjectConfig(**FAST), pti=True)
    cfg.pti_config.steps = 10
    cfg.pti_config.lr = 1e-3
    return cfg


def img(s: DragSession) -> np.ndarray:
    return np.asarray(s.image())


def test_from_image_drags_the_photo_and_reopens_with_its_tuned_generator(toy, tmp_path):
    bundled = ASSETS_DIR / "toy.safetensors"
    before = hashlib.sha256(bundled.read_bytes()).hexdigest()
    seen = []
    s = DragSession.from_image(toy, photo_bytes(toy, 105), config=pti_config(), model="toy",
                               progress=lambda p: seen.append(p.phase))
    inv = s.inversion_result
    assert s.G is not toy and inv.tuned and inv.psnr > inv.psnr_projection
    assert {"w", "w+", "pti"} <= set(seen)  # progress came from every stage
    assert np.array_equal(img(s), inv.reconstruction)  # the session starts on the reconstruction
    s.add_point(handle=(12, 14), target=(16, 14))
    list(s.run(max_steps=4))
    s.end_drag()
    dragged = img(s)
    assert not np.array_equal(dragged, inv.reconstruction)
    out = s.save(tmp_path / "e.dragkit.json")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["e.dragkit.json", "e.generator.json", "e.generator.safetensors", "e.latent.npy",
                     "e.photo.png", "e.recon.png"]
    assert hashlib.sha256(bundled.read_bytes()).hexdigest() == before  # the bundled model is never written
    # Reopen: the tuned generator from beside the session, the drag and its undo history intact.
    r, block = load_inversion(out)
    assert block["base_model"] == "toy" and block["generator"] == "e.generator.safetensors"
    assert np.array_equal(img(r), dragged)
    assert r.undo() and np.array_equal(img(r), inv.reconstruction)
    # Saved elsewhere, the reopened edit takes its generator and files along, and opens from there.
    out2 = r.save(tmp_path / "other" / "f.dragkit.json")
    assert (tmp_path / "other" / "f.generator.safetensors").is_file()
    r2, block2 = load_inversion(out2)
    assert np.array_equal(img(r2), inv.reconstruction) and r2.redo() and np.array_equal(img(r2), dragged)
    assert block2["psnr"] == pytest.approx(inv.psnr)
    assert (tmp_path / "other" / "f.photo.png").read_bytes() == (tmp_path / "e.photo.png").read_bytes()


def test_untuned_from_image_session_is_on_the_model_itself(toy, tmp_path):
    s = DragSession.from_image(toy, photo_bytes(toy, 106), config=InvertConfig(projection=ProjectConfig(**FAST)))
    assert s.G is toy and not s.inversion_result.tuned
    s.save(tmp_path / "p.dragkit.json")
    assert not (tmp_path / "p.generator.safetensors").exists()
    plain = DragSession.load(tmp_path / "p.dragkit.json", toy)  # DragSession's own loader reads it
    assert np.array_equal(img(plain), s.inversion_result.reconstruction)
    assert plain.get_state()["inversion"]["base_model"] == "toy"  # and keeps the edit's record


@pytest.mark.parametrize("photo, needle", [
    (b"GIF89a not really", "not a readable"),
    (b"", "empty"),
    ("missing", "no such file"),
])
def test_unusable_photos_are_one_clear_error(toy, tmp_path, photo, needle):
    if photo == "missing":
        photo = tmp_path / "nope.jpg"
    with pytest.raises(PhotoError) as e:
        DragSession.from_image(toy, photo)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_no_face_is_one_clear_error(toy):
    pytest.importorskip("dlib")
    noise = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    from dragkit.invert import NoFaceError

    with pytest.raises(NoFaceError, match="no face") as e:
        DragSession.from_image(toy, noise, align=True)
    assert "\n" not in str(e.value)


def test_cancel_stops_the_inversion(toy):
    with pytest.raises(InversionCancelled):
        DragSession.from_image(toy, photo_bytes(toy, 107), config=InvertConfig(projection=ProjectConfig(**FAST)),
                               cancel=lambda: True)


def test_a_hostile_inversion_block_is_refused_by_the_session_loader(toy, tmp_path):
    s = DragSession.from_image(toy, photo_bytes(toy, 108), config=InvertConfig(projection=ProjectConfig(**FAST)))
    p = s.save(tmp_path / "h.dragkit.json")
    state = json.loads(p.read_text())
    state["inversion"]["generator"] = "../../elsewhere/model.safetensors"
    p.write_text(json.dumps(state))
    with pytest.raises(DragkitError, match="beside the session") as e:
        DragSession.load(p, toy)
    assert "\n" not in str(e.value)
