"""Dragging on every model family end to end: StyleGAN-Human's non-square (H x H/2) StyleGAN2 and StyleGAN3.

Tiny generators made by dragkit's own networks (random weights) go through
the same paths a user takes: :class:`DragSession`, session files,
``dragkit drag`` (image, report, video), the server's mask and warm-up
helpers and ``dragkit models``.  Points are ``[x, y]`` pixels of the
``H x W`` image everywhere; a point or mask that does not fit is one clear
error that changes nothing.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dragkit.cli import main as dragkit_main
from dragkit.drag.core import sample_features
from dragkit.drag.features import feature_source, source_features
from dragkit.drag.session import DragOptions, DragSession
from dragkit.errors import DragkitError, ImageError, SpecError
from dragkit.nets import Generator


def square(seed: int = 0) -> Generator:
    """A 32 x 32 StyleGAN2 with the same codes as :func:`human` (8 x 32)."""
    torch.manual_seed(seed)
    return Generator(32, 0, 32, 32, 3, mapping_kwargs=dict(num_layers=2),
                     synthesis_kwargs=dict(channel_base=512, channel_max=32)).eval().requires_grad_(False)


G3_TORGB = "L6_32_3"


def _drag(G, handle, target, steps=80, seed=1, **opts):
    s = DragSession(G, seed=seed, options=DragOptions(lr=0.02, **opts))
    src = feature_source(G, s.options.feature_block, s.options.feature_layer)
    f0, _ = source_features(G, s.latent, src)
    ref = sample_features(f0, torch.tensor([handle], dtype=torch.float64), None, geometry=src.geometry)[0]
    s.add_point(handle, target)
    results = list(s.run(max_steps=steps))
    return s, src, ref, results


def _feature_distance(G, s, src, ref, point) -> float:
    f, _ = source_features(G, s.latent, src)
    v = sample_features(f, torch.tensor([point], dtype=torch.float64), None, geometry=src.geometry)[0]
    return float((v - ref).abs().sum())


@pytest.mark.parametrize("which,handle,target", [
    ("human", (8.0, 12.0), (8.0, 20.0)),  # down the tall image
    ("human", (4.0, 16.0), (11.0, 16.0)),  # across the narrow one
    ("stylegan3", (12.0, 16.0), (20.0, 16.0)),
    ("stylegan3", (12.0, 10.0), (14.0, 18.0)),
])
def test_a_handle_reaches_its_target(which, handle, target, GH, G3):
    """The tracked handle ends within the stop distance; the handle's feature moved with it (not left behind)."""
    G = GH if which == "human" else G3
    s, src, ref, results = _drag(G, handle, target)
    H, W = s.image_size
    assert (H, W) == ((32, 16) if which == "human" else (32, 32))
    last = results[-1]
    assert last.done and last.reached, [r.points[0].handle for r in results]
    assert math.dist(last.points[0].handle, target) <= 1.0
    for r in results:  # every tracked position stays in the W x H image
        x, y = r.points[0].handle
        assert 0 <= x <= W - 1 and 0 <= y <= H - 1
    # the reference feature now sits at the tracked handle more than at the place it started from
    assert _feature_distance(G, s, src, ref, last.points[0].handle) < _feature_distance(G, s, src, ref, handle)
    assert s.image_tensor().shape == (1, 3, H, W)


def test_stylegan3_drags_on_a_layer_placed_by_its_sampling_rate_and_margin(G3):
    opts = DragOptions().resolved(G3)
    assert opts.feature_block is None and opts.feature_layer == 2  # round(5 * 6 / 14), as 5 of the usual 14
    src = feature_source(G3)
    lg = G3.synthesis.layer_geometry(2)
    assert (src.name, lg.size, lg.sampling_rate, lg.margin) == ("L2_52_16", 52, 32, 10.0)
    g = src.geometry
    assert (g.map_height, g.map_width, g.scale_x, g.offset_x, g.offset_y) == (52, 52, 32 / 32, 10.0, 10.0)
    # image pixel x reads map column (x + 0.5) * s / W - 0.5 + margin: the image sits inside the margin
    assert g.to_map_x(torch.tensor([0.0, 31.0])).tolist() == [10.0, 41.0]
    assert DragOptions(feature_layer=4).resolved(G3).feature_layer == 4


@pytest.mark.parametrize("method", ["draggan", "freedrag"])
def test_stylegan3_windowed_and_whole_layer_drags_follow_the_same_path(G3, method):
    """Without a mask a StyleGAN3 step computes the layer on the handles' window only
    (``run_window``): the same tracked points and codes as the whole layer."""
    runs, boxes = [], []
    for crop in (True, False):
        s = DragSession(G3, seed=1, options=DragOptions(lr=0.02, method=method, feature_layer=4))
        s._crop = crop
        s.add_point(handle=(10, 12), target=(16, 14))
        s.add_point(handle=(22, 20), target=(20, 15))
        seen = []
        real = s._features
        s._features = lambda ws, d, box: (seen.append(box), real(ws, d, box))[1]
        runs.append(([[(round(p.handle[0], 4), round(p.handle[1], 4)) for p in r.points] for r in s.run(max_steps=8)],
                     s.latent))
        boxes.append(seen)
    assert runs[0][0] == runs[1][0]
    assert torch.allclose(runs[0][1], runs[1][1], atol=1e-5)
    size = G3.synthesis.layer_geometry(4).size
    assert all(b is None for b in boxes[1])
    windows = [b for b in boxes[0] if b is not None]
    assert windows and all((b[2] - b[0]) * (b[3] - b[1]) < size * size for b in windows)


@pytest.mark.parametrize("model,options,message", [
    ("stylegan3", {"feature_block": 16}, "feature_block is for StyleGAN2 models; .* use feature_layer \\(0..5\\)"),
    ("stylegan3", {"feature_layer": 6}, "feature_layer must be between 0 and 5"),
    ("human", {"feature_layer": 3}, "feature_layer is for StyleGAN3 models"),
    ("human", {"feature_block": 64}, r"feature_block must be one of \[4, 8, 16, 32\]"),
])
def test_a_feature_option_for_the_other_family_is_one_clear_error(model, options, message, GH, G3):
    G = G3 if model == "stylegan3" else GH
    with pytest.raises(SpecError, match=message):
        DragSession(G, options=DragOptions(**options))


def test_a_point_outside_the_w_x_h_image_is_one_clear_error_and_changes_nothing(GH):
    s = DragSession(GH, seed=0)
    s.add_point((15, 31), (0, 0))  # the far corner of a 16 wide, 32 high image
    for bad in [(16, 5), (3, 32), (-1, 4)]:
        with pytest.raises(SpecError) as e:
            s.add_point((4, 4), bad)
        assert str(e.value) == f"target [{bad[0]}, {bad[1]}] lies outside the 16x32 (width x height) " \
                               "image (x 0..15, y 0..31)"
        with pytest.raises(SpecError, match="outside the 16x32"):
            s.move_point(0, handle=bad)
    assert [(p.handle, p.target) for p in s.points] == [((15.0, 31.0), (0.0, 0.0))]


def test_masks_are_h_x_w(GH):
    s = DragSession(GH, seed=0)
    with pytest.raises(SpecError, match=r"mask must be 16x32 \(width x height, the image size\), got 32x32"):
        s.set_mask(np.ones((32, 32), bool))
    with pytest.raises(SpecError, match="got 32x16"):  # transposed: 32 wide, 16 high
        s.set_mask(np.ones((16, 32), bool))
    assert s.mask is None
    m = np.zeros((32, 16), bool)
    m[:, :8] = True
    s.set_mask(m)
    assert s.mask.shape == (32, 16)


@pytest.mark.parametrize("which", ["human", "stylegan3"])
def test_the_mask_term_holds_the_fixed_region(which, GH, G3):
    """A mask drag changes the fixed region less than the same drag without a mask (the term runs on the H x W grid)."""
    G = GH if which == "human" else G3
    H, W = (32, 16) if which == "human" else (32, 32)
    handle, target = ((8, 8), (8, 14)) if which == "human" else ((8, 8), (14, 10))
    m = np.zeros((H, W), bool)
    m[:18, :] = True  # flexible: the top, around the drag; fixed: the bottom rows
    img0 = G.synthesis(G.ws_from_seed(3, psi=0.7), noise_mode="const")
    change = {}
    for use in (False, True):
        s = DragSession(G, seed=3, options=DragOptions(lr=0.02, lambda_mask=50.0))
        s.add_point(handle, target)
        if use:
            s.set_mask(m)
        list(s.run(max_steps=10))
        change[use] = float((s.image_tensor() - img0)[..., 18:, :].abs().mean())
    assert change[False] > 1e-3 and change[True] < 0.3 * change[False], change


def test_session_files_record_h_and_w(GH, tmp_path):
    s = DragSession(GH, seed=2)
    s.add_point((3, 25), (10, 28))
    m = np.zeros((32, 16), bool)
    m[20:, :] = True
    s.set_mask(m)
    list(s.run(max_steps=2))
    path = s.save(tmp_path / "h.json")
    state = json.loads(path.read_text())
    assert (state["model"]["img_resolution"], state["model"]["img_width"]) == (32, 16)
    back = DragSession.load(path, GH)
    assert [(p.handle, p.target) for p in back.points] == [(p.handle, p.target) for p in s.points]
    assert np.array_equal(back.mask, m) and torch.equal(back.latent, s.latent)
    assert back.undo() and back.points[0].handle == (3.0, 25.0)
    # the same H and codes, but square: refused, by one message
    with pytest.raises(DragkitError, match=r"made for a 32x16 px model .* this one is 32x32 px"):
        DragSession.load(path, square())
    # a file written before non-square models (no img_width) is square
    del state["model"]["img_width"]
    with pytest.raises(DragkitError, match="made for a 32x32 px model"):
        DragSession.from_bytes(json.dumps(state).encode(), GH)
    sq = DragSession(square(), seed=2)
    sq.add_point((20, 20), (25, 20))
    old = sq.get_state()
    del old["model"]["img_width"]
    assert DragSession.from_bytes(json.dumps(old).encode(), square()).points[0].target == (25.0, 20.0)


# ----------------------------------------------------------------------------
# The CLI, as a user runs it on files.


@pytest.fixture(scope="module")
def model_files(tmp_path_factory, GH, G3):
    from dragkit.formats import save_native

    d = tmp_path_factory.mktemp("models")
    save_native(GH, d / "human")
    save_native(G3, d / "sg3")
    return {"human": d / "human.safetensors", "stylegan3": d / "sg3.safetensors"}


def _spec(folder: Path, spec: dict) -> Path:
    p = folder / "edit.json"
    p.write_text(json.dumps(spec))
    return p


@pytest.mark.parametrize("which,handle,target,options", [
    ("human", [8, 12], [8, 20], {"lr": 0.02}),
    ("stylegan3", [12, 16], [20, 16], {"lr": 0.02, "feature_layer": 2}),
])
def test_cli_drag_writes_an_h_x_w_image_report_and_video(which, handle, target, options, model_files, tmp_path):
    H, W = (32, 16) if which == "human" else (32, 32)
    Image.fromarray(np.full((H, W), 255, np.uint8)).save(tmp_path / "mask.png")
    spec = _spec(tmp_path, {"model": str(model_files[which]), "seed": 1, "points": [{"handle": handle, "target": target}],
                            "mask": "mask.png", "max_steps": 80, "options": options})
    out, rep, vid = tmp_path / "out.png", tmp_path / "r.json", tmp_path / "v.gif"
    assert dragkit_main(["drag", "--spec", str(spec), "--out", str(out), "--report", str(rep), "--video", str(vid),
                         "--annotate"]) == 0
    report = json.loads(rep.read_text())
    assert (report["height"], report["width"], report["resolution"]) == (H, W, H)
    assert report["reached"] and math.dist(report["final_points"][0], target) <= 1.0
    assert report["options"]["feature_layer"] == (2 if which == "stylegan3" else None)
    with Image.open(out) as im:
        assert im.size == (W, H)
    with Image.open(vid) as v:
        assert v.size == (W, H) and v.n_frames == report["steps"] + 1


@pytest.mark.parametrize("case,message", [
    ("point", "points[0].target [16, 3] lies outside the 16x32 (width x height) image (x 0..15, y 0..31)"),
    ("mask", "must be 16x32 pixels, got 32x32"),
    ("transposed mask", "must be 16x32 pixels, got 32x16"),
])
def test_cli_a_point_or_mask_that_does_not_fit_is_one_line_and_writes_nothing(case, message, model_files, tmp_path,
                                                                               capsys):
    spec = {"model": str(model_files["human"]), "points": [{"handle": [4, 3], "target": [10, 3]}], "max_steps": 3}
    if case == "point":
        spec["points"][0]["target"] = [16, 3]
    else:
        shape = (32, 32) if case == "mask" else (16, 32)
        Image.fromarray(np.full(shape, 255, np.uint8)).save(tmp_path / "m.png")
        spec["mask"] = "m.png"
    out, rep = tmp_path / "o.png", tmp_path / "r.json"
    capsys.readouterr()
    assert dragkit_main(["drag", "--spec", str(_spec(tmp_path, spec)), "--out", str(out), "--report", str(rep)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("dragkit: error: ") and message in err, err
    assert not out.exists() and not rep.exists()


def test_models_lists_h_x_w(model_files, tmp_path, monkeypatch, capsys):
    import shutil

    for p in model_files.values():
        for suffix in (".safetensors", ".json"):
            shutil.copy(p.with_suffix(suffix), tmp_path / p.with_suffix(suffix).name)
    monkeypatch.setenv("DRAGKIT_HOME", str(tmp_path))
    capsys.readouterr()
    assert dragkit_main(["models"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows["human"][2] == "32x16" and rows["sg3"][2] == "32"
    assert dragkit_main(["models", "--info", str(model_files["human"])]) == 0
    assert "32 x 16 (H x W)" in capsys.readouterr().out
    assert dragkit_main(["models", "--info", str(model_files["stylegan3"])]) == 0
    layers = {line.split()[1]: line for line in capsys.readouterr().out.splitlines() if line.startswith("    ")}
    assert "(default for dragging)" in layers["L2_52_16"] and "margin 10" in layers["L2_52_16"]
    assert "ToRGB" in layers[G3_TORGB] and "default" not in layers[G3_TORGB]


# ----------------------------------------------------------------------------
# The server's two touch points (kept minimal: the app is being restructured).


def test_server_mask_png_is_checked_against_h_x_w(GH):
    import io

    from dragkit.server.engine import Edit, png_to_mask

    edit = Edit.new(GH, "human", seed=0, psi=0.7)
    assert edit.image_size == (32, 16)

    def png(h, w):
        buf = io.BytesIO()
        a = np.zeros((h, w), np.uint8)
        a[:, : w // 2] = 255
        Image.fromarray(a).save(buf, format="PNG")
        return buf.getvalue()

    m = png_to_mask(png(32, 16), edit.image_size)
    assert m.shape == (32, 16) and m[:, :8].all() and not m[:, 8:].any()
    for h, w in [(32, 32), (16, 32)]:
        with pytest.raises(ImageError, match=f"must be 16x32 pixels, got {w}x{h}"):
            png_to_mask(png(h, w), edit.image_size)
    edit.set_mask(m)
    assert edit.mask().shape == (32, 16)


def test_server_warm_up_drags_inside_a_non_square_image(GH, G3, caplog):
    from dragkit.server.engine import warm_up

    with caplog.at_level(logging.WARNING, logger="dragkit.server"):
        warm_up(GH)
        warm_up(G3)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
