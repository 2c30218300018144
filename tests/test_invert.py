"""Inversion without dlib: geometry of the alignment, projection on the toy model, photo errors, the CLI and the edit files.

The dlib-dependent parts (face detection, the face-recognition ResNet)
are in test_invert_align.py and test_invert_facerec.py.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dragkit import DragSession, load_model
from dragkit.invert import (
    InversionCancelled, InvertConfig, LossWeights, PhotoError, ProjectConfig, invert_photo, load_inversion,
    project, read_photo, save_inversion,
)
from dragkit.invert.align import (
    Face, align_landmarks, apply_matrix, celeba_template, ffhq_matrix, fit_similarity, invert_matrix, warp_image,
)
from dragkit.invert.metrics import ms_ssim, psnr_uint8, ssim, ssim_uint8
from dragkit.models import ASSETS_DIR
from dragkit.utils import tensor_to_uint8

# Fast settings that still reproduce a toy image (measured: 36-41 dB on six seeds).
TOY_FAST = dict(w_steps=30, wplus_steps=40, lr_w=0.1, lr_wplus=0.05)


def similarity(scale: float, angle_deg: float, tx: float, ty: float) -> np.ndarray:
    a = math.radians(angle_deg)
    R = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return np.concatenate([R, [[tx], [ty]]], axis=1)


# ----------------------------------------------------------------------------
# Geometry.


def test_fit_similarity_recovers_a_known_similarity_exactly():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (20, 2))
    M = similarity(1.7, 23.0, -12.0, 40.0)
    got = fit_similarity(src, apply_matrix(M, src))
    assert np.abs(got - M).max() < 1e-9
    # A mirror image is not a similarity: the fit stays a rotation (det > 0).
    mirrored = src * [-1, 1]
    assert np.linalg.det(fit_similarity(src, mirrored)[:, :2]) > 0


def pattern(size: int = 96) -> np.ndarray:
    """A smooth colour pattern with a few sharp marks (so misplacement shows)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.stack([0.5 + 0.5 * np.sin(6 * xx + 2 * yy), 0.5 + 0.5 * np.cos(5 * yy - xx), xx * yy], -1)
    img = (img * 255).astype(np.uint8)
    img[20:24, 30:34] = [255, 0, 0]
    img[60:63, 50:53] = [0, 0, 255]
    return img


def test_warp_by_a_known_similarity_and_back_recovers_the_image():
    img = pattern(96)
    M = similarity(1.6, 17.0, 60.0, 30.0)  # into a 260 px canvas, rotated and enlarged
    big = warp_image(img, M, 260, fill="black")
    back = warp_image(big, invert_matrix(M), 96, fill="black")
    # Away from the border (where black came in), the round trip is close to the original.
    assert psnr_uint8(back[8:-8, 8:-8], img[8:-8, 8:-8]) > 30
    # A whole-pixel shift is exact.
    shift = warp_image(img, np.array([[1.0, 0, -5], [0, 1.0, -7]]), (80, 80), fill="black")
    assert np.array_equal(shift, img[7:87, 5:85])


def test_a_big_shrink_is_anti_aliased():
    # Fine stripes shrunk 8x average to grey instead of aliasing into coarse stripes.
    stripes = np.zeros((800, 800, 3), np.uint8)
    stripes[:, ::2] = 255
    small = warp_image(stripes, np.array([[1 / 8, 0, 0], [0, 1 / 8, 0]]), 100)
    assert np.abs(small[5:-5, 5:-5].astype(int) - 127).max() < 12


def test_alignment_of_a_synthetic_face_with_known_landmarks_recovers_the_crop():
    # A "face": the template's own landmark positions drawn as marks on the pattern, i.e. a crop in
    # perfect alignment; placed into a photo by a known similarity S, alignment must undo S.
    tpl = celeba_template()
    crop = pattern(128)
    for x, y in tpl.points:
        crop[int(round(y)) - 1:int(round(y)) + 2, int(round(x)) - 1:int(round(x)) + 2] = [255, 255, 0]
    S = similarity(2.5, -12.0, 150.0, 120.0)
    photo = warp_image(crop, S, 520, fill="black")
    face = Face(box=(0.0, 0.0, 519.0, 519.0), landmarks=apply_matrix(S, tpl.points))
    al = align_landmarks(photo, face, 128, "celeba")
    assert np.abs(al.matrix - invert_matrix(S)).max() < 1e-9
    assert al.fit_rms < 1e-6 and al.upscale == pytest.approx(1 / 2.5)
    assert psnr_uint8(al.image[4:-4, 4:-4], crop[4:-4, 4:-4]) > 28
    # The same crop at 256 px (a bigger model of the same framing) is the same picture, twice the size.
    al256 = align_landmarks(photo, face, 256, "celeba")
    down = np.asarray(Image.fromarray(al256.image).reduce(2))
    assert psnr_uint8(down[4:-4, 4:-4], al.image[4:-4, 4:-4]) > 28


def test_ffhq_crop_follows_the_recipe():
    tpl = celeba_template()
    lm = tpl.scaled(1024)
    M = ffhq_matrix(lm, 1024)
    eye_l, eye_r = lm[36:42].mean(0), lm[42:48].mean(0)
    mouth = (lm[48] + lm[54]) / 2
    eye_avg = (eye_l + eye_r) / 2
    centre = eye_avg + 0.1 * (mouth - eye_avg)
    # The quad's centre lands in the middle of the crop; its side is 2 * max(2 |e2e|, 1.8 |e2m|).
    assert np.allclose(apply_matrix(M, centre[None])[0], [511.5, 511.5], atol=1e-9)
    side = 2 * max(2 * np.hypot(*(eye_r - eye_l)), 1.8 * np.hypot(*(mouth - eye_avg)))
    assert math.sqrt(abs(np.linalg.det(M[:, :2]))) == pytest.approx(1024 / side)
    # Rotating the face rotates the crop with it: the crop of the rotated landmarks is the same.
    R = similarity(1.3, 30.0, 200.0, -50.0)
    M2 = ffhq_matrix(apply_matrix(R, lm), 1024)
    assert np.abs(apply_matrix(M2, apply_matrix(R, lm)) - apply_matrix(M, lm)).max() < 1e-6


def test_the_template_was_measured_not_guessed():
    tpl = celeba_template()
    info = tpl.info
    assert info["images"] >= 2000 and info["made_by"] == "python -m dragkit.invert.template"
    # The fitted groups are the ones the held-out measurement found best.
    best = min(info["fit_groups_measured"], key=lambda k: info["fit_groups_measured"][k]["mean_px"])
    assert best == info["fit_groups_name"]
    # Eyes above the mouth, left eye left of the right one, all inside the crop.
    p = tpl.points
    assert p[36:42, 1].mean() < p[48:68, 1].mean() and p[36:42, 0].mean() < p[42:48, 0].mean()
    assert (p >= 0).all() and (p <= 127).all()


# ----------------------------------------------------------------------------
# Metrics.


def test_ssim_and_ms_ssim_behave():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 64, 64, generator=g) * 2 - 1
    assert float(ssim(x, x)) == pytest.approx(1.0, abs=1e-6)
    assert float(ms_ssim(x, x)) == pytest.approx(1.0, abs=1e-6)
    noisy = (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    noisier = (x + 0.6 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    assert 1 > float(ssim(x, noisy)) > float(ssim(x, noisier))
    assert 1 > float(ms_ssim(x, noisy)) > float(ms_ssim(x, noisier))
    y = noisy.clone().requires_grad_(True)
    (1 - ms_ssim(x, y)).sum().backward()
    assert torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0


# ----------------------------------------------------------------------------
# Projection on the toy model.


@pytest.mark.parametrize("seed", [100, 103])
def test_an_image_of_the_model_itself_inverts_to_30_db(toy, seed):
    with torch.no_grad():
        target = toy.synthesis(toy.ws_from_seed(seed, psi=0.7), noise_mode="const")
    r = project(toy, target, ProjectConfig(**TOY_FAST))
    rec = tensor_to_uint8(r.image)
    assert psnr_uint8(rec, tensor_to_uint8(target)) >= 30
    assert r.ws.shape == (1, toy.num_ws, toy.w_dim) and r.noise is None
    # The model was not touched.
    assert not any(p.requires_grad for p in toy.parameters())


def test_the_w_phase_alone_shares_one_code_and_cancel_stops(toy):
    with torch.no_grad():
        target = toy.synthesis(toy.ws_from_seed(1, psi=0.7))
    r = project(toy, target, ProjectConfig(w_steps=5, wplus_steps=0))
    assert torch.equal(r.ws, r.w[:, None].expand(-1, toy.num_ws, -1))
    calls = []
    with pytest.raises(InversionCancelled):
        project(toy, target, ProjectConfig(w_steps=50, wplus_steps=0), cancel=lambda: len(calls) >= 3,
                progress=calls.append)
    assert len(calls) == 3


def test_optimised_noise_maps_live_in_a_copy_and_are_regularised(toy):
    with torch.no_grad():
        target = toy.synthesis(toy.ws_from_seed(2, psi=0.7))
    before = {k: v.clone() for k, v in toy.named_buffers() if k.endswith("noise_const")}
    r = project(toy, target, ProjectConfig(w_steps=5, wplus_steps=5, optimize_noise=True))
    assert r.noise is not None and set(r.noise) == set(before)
    for k, v in toy.named_buffers():
        if k in before:
            assert torch.equal(v, before[k])
    for n in r.noise.values():  # renormalised after every step
        assert abs(float(n.mean())) < 1e-4 and float(n.std()) == pytest.approx(1.0, abs=0.05)


# ----------------------------------------------------------------------------
# Photos: every bad one gets one clear error.


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")  # uint16 arrays become mode I;16
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A valid little PNG whose header claims ``width`` x ``height`` (a decompression bomb's shape)."""
    data = png_bytes(np.zeros((4, 4, 3), np.uint8))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return data[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + data[33:]


def jpeg_bytes(arr: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("data, needle", [
    (b"", "empty"),
    (b"hello, this is not an image at all" * 10, "not a readable JPEG, PNG, WEBP, BMP or GIF image"),
    (b"\x00\x00\x00\x18ftypheic" + b"\x00" * 200, "not a readable"),  # HEIC: not supported
    ("truncated-png", "corrupt data"),
    ("truncated-jpeg", "not a readable"),  # (400 bytes: the header itself is cut)
    (png_claiming(100_000, 100_000), "at most 50,000,000 pixels"),
    (png_claiming(9000, 9000), "at most"),
    ("tiny", "at least"),
])
def test_bad_photos_are_one_clear_error(data, needle):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    if data == "truncated-png":
        data = png_bytes(noise)[:300]
    elif data == "truncated-jpeg":
        data = jpeg_bytes(noise)[:400]
    elif data == "tiny":
        data = png_bytes(noise[:8, :8])
    with pytest.raises(PhotoError) as e:
        read_photo(data)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_photo_files_missing_folders_and_oversized(tmp_path):
    with pytest.raises(PhotoError, match="no such file"):
        read_photo(tmp_path / "nope.jpg")
    with pytest.raises(PhotoError, match="not a file"):
        read_photo(tmp_path)
    big = tmp_path / "big.png"
    big.write_bytes(png_bytes(np.zeros((32, 32, 3), np.uint8)))
    with pytest.raises(PhotoError, match="too large"):
        read_photo(big, max_bytes=len(big.read_bytes()) - 1)


def test_photo_modes_become_rgb_with_a_clear_outcome():
    g = (np.arange(64 * 64).reshape(64, 64) % 251).astype(np.uint8)
    p = read_photo(png_bytes(g))  # L
    assert p.rgb.shape == (64, 64, 3) and p.grayscale and (p.rgb[..., 0] == g).all()
    p16 = read_photo(png_bytes(g.astype(np.uint16) * 257))
    assert p16.grayscale and np.abs(p16.rgb[..., 0].astype(int) - g).max() <= 1
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :32, 3] = 255  # left half opaque red, right half transparent
    p = read_photo(png_bytes(rgba))
    assert (p.rgb[:, :32] == [200, 0, 0]).all() and (p.rgb[:, 32:] == 255).all()
    assert any("transparent" in w for w in p.warnings)
    pal = Image.fromarray(np.stack([g, g // 2, 255 - g], -1)).convert("P")
    buf = io.BytesIO()
    pal.save(buf, "PNG")
    assert read_photo(buf.getvalue()).rgb.shape == (64, 64, 3)
    cmyk = Image.fromarray(np.stack([g, g, g], -1)).convert("CMYK")
    buf = io.BytesIO()
    cmyk.save(buf, "JPEG")
    assert read_photo(buf.getvalue()).rgb.shape == (64, 64, 3)


def test_exif_rotation_is_applied():
    arr = np.zeros((40, 80, 3), np.uint8)
    arr[:, :10] = 255  # a white band on the left of a landscape image
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif.tobytes(), quality=95)
    p = read_photo(buf.getvalue())
    assert p.exif_rotated and p.stored_size == (80, 40) and p.rgb.shape == (80, 40, 3)
    assert p.rgb[:10].mean() > 200 and p.rgb[-10:].mean() < 30  # the band is now on top


def test_photos_are_read_by_the_one_image_reader(monkeypatch):
    """read_photo decodes through dragkit.images.read_image: a bomb is refused before one pixel is decoded."""
    from PIL import ImageFile

    import dragkit.images

    calls, decoded = [], []
    real_read, real_load = dragkit.images.read_image, ImageFile.ImageFile.load

    def spy_read(*a, **kw):
        calls.append(kw.get("formats"))
        return real_read(*a, **kw)

    def spy_load(self):
        decoded.append(self.size)
        return real_load(self)

    monkeypatch.setattr(dragkit.images, "read_image", spy_read)
    monkeypatch.setattr(ImageFile.ImageFile, "load", spy_load)
    with pytest.raises(PhotoError, match="9000x9000 pixels"):
        read_photo(png_claiming(9000, 9000))
    assert decoded == [] and len(calls) == 1
    assert read_photo(png_bytes(np.zeros((20, 24, 3), np.uint8))).size == (24, 20)
    assert len(calls) == 2 and set(decoded) == {(24, 20)}


@pytest.mark.parametrize("fmt,warning", [("MPO", "first picture"), ("GIF", "first frame")],
                         ids=["multi-picture-jpeg", "animated-gif"])
def test_multi_frame_photo_uses_the_first_frame(fmt, warning):
    frames = [Image.fromarray(np.full((32, 32, 3), v, np.uint8)) for v in (10, 200)]
    buf = io.BytesIO()
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:])
    p = read_photo(buf.getvalue())
    assert p.rgb.mean() < 50 and any(warning in w for w in p.warnings)


# ----------------------------------------------------------------------------
# Pipeline, files, CLI.


def toy_config(**kw) -> InvertConfig:
    cfg = InvertConfig(projection=ProjectConfig(**{**TOY_FAST, **kw}))
    cfg.pti_config.steps = 10
    cfg.pti_config.lr = 1e-3
    return cfg


def toy_photo(G, seed: int = 100, size: int | None = None) -> np.ndarray:
    with torch.no_grad():
        img = tensor_to_uint8(G.synthesis(G.ws_from_seed(seed, psi=0.7)))
    if size:
        img = np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.LANCZOS))
    return img


def test_invert_photo_non_square_is_centre_cropped_and_pti_improves(toy):
    photo = toy_photo(toy, 100, 96)
    wide = np.concatenate([np.zeros((96, 16, 3), np.uint8), photo, np.zeros((96, 16, 3), np.uint8)], 1)
    inv = invert_photo(toy, wide, toy_config(), )
    assert any("centre-cropped" in w for w in inv.warnings)
    assert inv.target.shape == (32, 32, 3) and inv.psnr > 25 and not inv.tuned and inv.G is toy
    cfg = toy_config(w_steps=10, wplus_steps=10)
    cfg.pti = True
    inv2 = invert_photo(toy, wide, cfg)
    assert inv2.tuned and inv2.G is not toy
    assert inv2.psnr > inv2.psnr_projection + 1  # tuning reproduces the photo more closely
    assert np.array_equal(np.asarray(inv2.session().image()), inv2.reconstruction)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_saved_pti_edit_reopens_exactly_and_never_touches_the_model(toy, tmp_path):
    bundled = ASSETS_DIR / "toy.safetensors"
    before = sha(bundled)
    cfg = toy_config(w_steps=10, wplus_steps=10)
    cfg.pti = True
    inv = invert_photo(toy, toy_photo(toy, 101), cfg)
    paths = save_inversion(inv, tmp_path / "e.dragkit.json", model="toy")
    assert set(paths) == {"session", "latent", "photo", "reconstruction", "generator", "generator_config"}
    assert sha(bundled) == before
    s, block = load_inversion(paths["session"])
    assert np.array_equal(np.asarray(s.image()), inv.reconstruction)
    assert block["generator"] == "e.generator.safetensors" and block["base_model"] == "toy"
    assert np.array_equal(np.asarray(Image.open(paths["reconstruction"])), inv.reconstruction)
    assert np.load(paths["latent"]).shape == (1, toy.num_ws, toy.w_dim)
    # The tuned generator is a real model file: load_model reads it and renders the same image.
    Gt = load_model(paths["generator"])
    with torch.no_grad():
        assert np.array_equal(tensor_to_uint8(Gt.synthesis(torch.from_numpy(np.load(paths["latent"])))),
                              inv.reconstruction)
    # A replaced generator file is refused; a session pointing outside its folder is refused.
    data = bytearray(paths["generator"].read_bytes())
    data[-1] ^= 1
    paths["generator"].write_bytes(bytes(data))
    with pytest.raises(Exception, match="SHA-256"):
        load_inversion(paths["session"])
    state = json.loads(paths["session"].read_text())
    state["inversion"]["generator"] = "../../etc/model.safetensors"
    paths["session"].write_text(json.dumps(state))
    with pytest.raises(Exception, match="beside the session"):
        load_inversion(paths["session"])


def test_untuned_edit_is_a_plain_session_on_the_model(toy, tmp_path):
    inv = invert_photo(toy, toy_photo(toy, 102), toy_config(w_steps=5, wplus_steps=5))
    paths = save_inversion(inv, tmp_path / "plain.dragkit.json", model="toy")
    assert "generator" not in paths
    s = DragSession.load(paths["session"], toy)  # DragSession's own loader reads it unchanged
    assert np.array_equal(np.asarray(s.image()), inv.reconstruction)
    s.add_point(handle=(12, 14), target=(15, 14))
    r = list(s.run(max_steps=3))[-1]
    assert r.step == 3


def dragkit_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "dragkit.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300, cwd=cwd)


def test_cli_invert_writes_a_session_dragkit_drag_can_use(toy, tmp_path):
    Image.fromarray(toy_photo(toy, 100, 64)).save(tmp_path / "photo.png")
    proc = dragkit_cli("invert", "--model", "toy", "--image", "photo.png", "--out", "edit.dragkit.json",
                       "--w-steps", "20", "--wplus-steps", "20", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "PSNR" in proc.stdout
    assert DragSession.load(tmp_path / "edit.dragkit.json", toy).image().size == (32, 32)
    spec = {"model": "toy", "latent": "edit.latent.npy", "points": [{"handle": [12, 14], "target": [16, 14]}],
            "max_steps": 5}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    proc = dragkit_cli("drag", "--spec", "spec.json", "--out", "dragged.png", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "dragged.png").is_file()


def cli_in_process(args: list[str], cwd: Path, capsys) -> tuple[int, str, str]:
    from dragkit.cli import main

    old = os.getcwd()
    os.chdir(cwd)
    try:
        rc = main(args)
    finally:
        os.chdir(old)
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize("bad", ["not-an-image", "truncated", "huge", "missing"])
def test_cli_bad_photo_is_one_line_and_writes_nothing(tmp_path, capsys, bad):
    if bad == "not-an-image":
        (tmp_path / "photo.png").write_text("just text")
    elif bad == "truncated":
        (tmp_path / "photo.png").write_bytes(jpeg_bytes(np.full((64, 64, 3), 90, np.uint8))[:200])
    elif bad == "huge":
        (tmp_path / "photo.png").write_bytes(png_claiming(20_000, 20_000))
    rc, _, err = cli_in_process(["invert", "--model", "toy", "--image", "photo.png", "--out", "e.dragkit.json"],
                                tmp_path, capsys)
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dragkit: error: ") and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == (["photo.png"] if bad != "missing" else [])


def test_cli_bad_arguments_are_clear(tmp_path, capsys):
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "p.png")
    rc, _, err = cli_in_process(["invert", "--model", "toy", "--image", "p.png", "--out", "e.png"], tmp_path, capsys)
    assert rc == 1 and "NAME.dragkit.json" in err
    rc, _, err = cli_in_process(["invert", "--model", "toy", "--image", "p.png", "--out", "e.dragkit.json",
                                 "--loss", "pixel=1,vgg=2"], tmp_path, capsys)
    assert rc == 1 and "unknown loss term" in err
    rc, _, err = cli_in_process(["invert", "--model", "nosuchmodel", "--image", "p.png", "--out", "e.dragkit.json"],
                                tmp_path, capsys)
    assert rc == 1 and "unknown model" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.png"]


def test_loss_weights_parse():
    w = LossWeights.parse("pixel=1, msssim=0.25")
    assert w.pixel == 1 and w.msssim == 0.25 and w.disc == 0 and w.active() == ["pixel", "msssim"]
    with pytest.raises(Exception, match="NAME=NUMBER"):
        LossWeights.parse("pixel=lots")
    with pytest.raises(Exception, match=">= 0"):
        LossWeights.parse("pixel=-1")


def test_a_failed_save_leaves_the_older_edit_as_it_was(toy, tmp_path, monkeypatch):
    inv = invert_photo(toy, toy_photo(toy, 104), toy_config(w_steps=3, wplus_steps=3))
    first = save_inversion(inv, tmp_path / "e.dragkit.json", model="toy")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    inv.tuned = True  # now it has a generator to write, and writing it fails

    def broken(*a, **k):
        raise OSError(28, "No space left on device")

    import dragkit.formats

    monkeypatch.setattr(dragkit.formats, "save_native", broken)
    with pytest.raises(Exception, match="No space left"):
        save_inversion(inv, tmp_path / "e.dragkit.json", model="toy")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert set(before) == {p.name for p in first.values()}
