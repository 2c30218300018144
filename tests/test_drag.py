"""The drag engine on tiny random generators: maths, speed paths, session, CLI.

Ground truth on the trained ``toy`` model lives in ``test_drag_toy.py``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from dragkit.cli import main as dragkit_main
from dragkit.drag import (
    block_features,
    disk_offsets,
    mask_loss,
    motion_supervision_loss,
    needed_feature_box,
    sample_features,
    track_points,
)
from dragkit.drag.session import DragOptions, DragSession, PointPair, StepResult
from dragkit.errors import DragkitError, SpecError
from dragkit.nets import Generator
from support.generators import drag_generator as tiny_generator
from support.generators import on_device


@pytest.fixture(scope="module")
def G32() -> Generator:
    return tiny_generator(32)


# ----------------------------------------------------------------------------
# Sampling = the authors' resize-then-index


@pytest.mark.parametrize("R", [4, 8, 16, 32])
def test_sampling_integer_pixels_equals_resized_map(R):
    H = 32
    torch.manual_seed(R)
    feat = torch.randn(1, 5, R, R)
    full = F.interpolate(feat, (H, H), mode="bilinear", align_corners=False)[0]
    ys, xs = torch.meshgrid(torch.arange(H), torch.arange(H), indexing="ij")
    pts = torch.stack([xs, ys], dim=-1).double()  # [x, y]
    got = sample_features(feat, pts, H)  # (H, H, C)
    assert torch.allclose(got.permute(2, 0, 1), full, atol=1e-6)


def test_sampling_between_pixels_equals_grid_sample_on_resized_map():
    H, R = 32, 8
    torch.manual_seed(1)
    feat = torch.randn(1, 4, R, R)
    full = F.interpolate(feat, (H, H), mode="bilinear", align_corners=False)
    pts = torch.rand(50, 2, dtype=torch.float64) * (H - 1)
    grid = (pts / (H - 1) * 2 - 1).float()[None, None]  # (1, 1, N, 2) in [x, y]
    ref = F.grid_sample(full, grid, align_corners=True)[0, :, 0].t()
    assert torch.allclose(sample_features(feat, pts, H), ref, atol=1e-5)


def test_sampling_a_crop_needs_its_origin():
    H, R = 32, 16
    feat = torch.randn(1, 3, R, R)
    pts = torch.tensor([[10.0, 12.0], [13.5, 9.25]], dtype=torch.float64)
    crop = feat[:, :, 3:10, 4:9]
    assert torch.allclose(sample_features(crop, pts, H, feature_size=R, origin=(4, 3)),
                          sample_features(feat, pts, H), atol=1e-6)
    with pytest.raises(ValueError, match="outside the feature crop"):
        sample_features(crop, torch.tensor([[30.0, 30.0]]), H, feature_size=R, origin=(4, 3))


# ----------------------------------------------------------------------------
# Motion supervision


def authors_motion_loss(feat, handles, targets, r1, H, W=None):
    """The loss as the authors build it: resize the map to (H, W) (W defaults to H), disk by torch.where
    over the H x W grid, grid_sample in (W-1)/(H-1) grid units."""
    W = H if W is None else W
    fr = F.interpolate(feat, (H, W), mode="bilinear", align_corners=False)
    yy, xx = torch.meshgrid(torch.arange(H).float(), torch.arange(W).float(), indexing="ij")
    loss = 0
    for (px, py), (tx, ty) in zip(handles, targets):
        d = torch.tensor([tx - px, ty - py], dtype=torch.float32)
        if d.norm() <= 1:
            continue
        d = d / d.norm()
        ys, xs = torch.where(((xx - px) ** 2 + (yy - py) ** 2).sqrt() < r1)
        grid = torch.stack([(xs + d[0]) / (W - 1) * 2 - 1, (ys + d[1]) / (H - 1) * 2 - 1], dim=-1)[None, None]
        moved = F.grid_sample(fr, grid, align_corners=True)[:, :, 0]
        loss = loss + F.l1_loss(fr[:, :, ys, xs].detach(), moved)
    return loss


def test_motion_loss_and_gradient_match_the_authors_formulation():
    H, R = 32, 8
    torch.manual_seed(2)
    feat = torch.randn(1, 6, R, R, requires_grad=True)
    handles = torch.tensor([[10.0, 12.0], [20.0, 8.0], [15.0, 15.0]], dtype=torch.float64)
    targets = torch.tensor([[16.0, 14.0], [14.0, 20.0], [15.5, 15.0]], dtype=torch.float64)  # last: within 1 px
    ours = motion_supervision_loss(feat, handles, targets, 3.0, H)
    ref = authors_motion_loss(feat, handles.tolist(), targets.tolist(), 3.0, H)
    assert torch.allclose(ours, ref, rtol=1e-5)
    g1, = torch.autograd.grad(ours, feat)
    g2, = torch.autograd.grad(ref, feat)
    assert g1.abs().sum() > 0
    assert torch.allclose(g1, g2, atol=1e-6)


def test_sampling_gradcheck_and_stop_gradient_is_on_the_disk():
    H, R = 12, 6
    torch.manual_seed(3)
    feat = torch.randn(1, 2, R, R, dtype=torch.float64, requires_grad=True)
    pts = torch.tensor([[5.0, 6.0], [2.3, 9.7], [0.0, 11.0]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda f: sample_features(f, pts, H), (feat,))
    # Only F(q + d) carries gradient: its support lies on the far side of the
    # disk, so feature rows that only the disk's back edge reads get none.
    f32 = torch.randn(1, 3, 32, 32, requires_grad=True)
    loss = motion_supervision_loss(f32, torch.tensor([[10.0, 10.0]]), torch.tensor([[20.0, 10.0]]), 3.0, 32)
    g, = torch.autograd.grad(loss, f32)
    cols = g.abs().sum(dim=(0, 1, 2))
    assert cols[8] == 0 and cols[13] > 0  # q_x in 8..12, q_x + 1 in 9..13


def test_points_within_one_pixel_contribute_nothing():
    feat = torch.randn(1, 3, 8, 8, requires_grad=True)
    loss = motion_supervision_loss(feat, torch.tensor([[5.0, 5.0]]), torch.tensor([[5.5, 5.5]]), 3.0, 32)
    assert loss.item() == 0.0


def test_disk_is_strict_and_mask_term_only_with_both_values():
    assert disk_offsets(1.0).tolist() == [[0, 0]]
    assert len(disk_offsets(2.0)) == 9  # |o| < 2: the 3x3 block; (2, 0) is at distance 2, excluded
    assert len(disk_offsets(3.0)) == 25  # the 5x5 block (corner sqrt 8 < 3); (3, 0) excluded
    assert len(disk_offsets(3.2)) == 37  # now (3, 0), (3, +-1) and their rotations are in
    H, R = 16, 8
    f0 = torch.randn(1, 3, R, R)
    f = (f0 + 0.1 * torch.randn_like(f0)).requires_grad_(True)
    for m in (np.ones((H, H), bool), np.zeros((H, H), bool)):
        assert mask_loss(f, f0, torch.from_numpy(m), H).item() == 0.0
    m = np.zeros((H, H), bool)
    m[:, :8] = True
    fr = F.interpolate(f, (H, H), mode="bilinear", align_corners=False)
    f0r = F.interpolate(f0, (H, H), mode="bilinear", align_corners=False)
    fixed = torch.from_numpy(~m).float()
    ref = F.l1_loss(fr * fixed, f0r * fixed)
    ours = mask_loss(f, f0, torch.from_numpy(m), H)
    assert torch.allclose(ours, ref, rtol=1e-5)
    g1, = torch.autograd.grad(ours, f)
    g2, = torch.autograd.grad(ref, f)
    assert g1.abs().sum() > 0 and torch.allclose(g1, g2, atol=1e-7)


# ----------------------------------------------------------------------------
# Tracking


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_tracking_finds_the_reference_feature(norm):
    H = 32
    torch.manual_seed(4)
    feat = torch.randn(1, 8, H, H)  # R = H: every pixel its own feature
    refs = torch.stack([feat[0, :, 14, 19], feat[0, :, 2, 1]])  # at (x=19, y=14) and (x=1, y=2)
    handles = torch.tensor([[16.0, 16.0], [0.0, 0.0]], dtype=torch.float64)
    got = track_points(feat, handles, refs, 4, H, norm=norm)
    assert got.tolist() == [[19.0, 14.0], [1.0, 2.0]]
    # outside Omega2 (r2 = 2) the true match cannot be found, and the answer stays in the square
    far = track_points(feat, handles[:1], refs[:1], 2, H, norm=norm)
    assert (far - handles[:1]).abs().max() <= 2


# ----------------------------------------------------------------------------
# Features on a window = features of the full synthesis


@pytest.mark.parametrize("arch", ["skip", "resnet", "orig"])
def test_block_features_on_a_window_equal_the_full_synthesis(arch, device):
    G = tiny_generator(32, arch).to(device)
    ws = G.ws_from_seed(5, psi=0.7)
    for res in (8, 16, 32):
        _, feats = G.synthesis.run(ws, feature_blocks=[res], return_image=False)
        full = feats[res]
        mine, origin = block_features(G, ws, res)
        assert origin == (0, 0) and torch.allclose(mine, full, atol=1e-5)
        for box in [(0, 0, 3, 4), (2, 1, 6, 7), (res - 4, res - 3, res, res)]:
            crop, origin = block_features(G, ws, res, box)
            assert origin == box[:2]
            assert torch.allclose(crop, full[:, :, box[1]:box[3], box[0]:box[2]], atol=1e-5)


def test_block_features_on_random_windows_are_exact():
    import random

    rng = random.Random(0)
    for arch in ("skip", "resnet"):
        G = tiny_generator(32, arch, seed=1)
        ws = torch.randn(1, G.num_ws, G.w_dim)  # a W+ code with different rows
        for res in (16, 32):
            _, feats = G.synthesis.run(ws, feature_blocks=[res], return_image=False)
            full = feats[res]
            for _ in range(25):
                x0, y0 = rng.randrange(res - 1), rng.randrange(res - 1)
                x1, y1 = rng.randrange(x0 + 1, min(res, x0 + 7) + 1), rng.randrange(y0 + 1, min(res, y0 + 7) + 1)
                crop, _ = block_features(G, ws, res, (x0, y0, x1, y1))
                assert torch.allclose(crop, full[:, :, y0:y1, x0:x1], atol=1e-5), (arch, res, (x0, y0, x1, y1))


def test_windowed_step_gives_the_same_gradient_as_the_full_map(G32, device):
    G32 = on_device(G32, device)
    ws = G32.ws_from_seed(1, psi=0.7).requires_grad_(True)
    H, res = 32, 16
    h = torch.tensor([[12.0, 14.0]], dtype=torch.float64, device=device)
    t = torch.tensor([[20.0, 16.0]], dtype=torch.float64, device=device)
    box = needed_feature_box(h, 3.0, 6, H, res)
    assert (box[2] - box[0]) * (box[3] - box[1]) < res * res
    crop, origin = block_features(G32, ws, res, box)
    g1, = torch.autograd.grad(motion_supervision_loss(crop, h, t, 3.0, H, feature_size=res, origin=origin), ws)
    _, feats = G32.synthesis.run(ws, feature_blocks=[res], return_image=False)
    g2, = torch.autograd.grad(motion_supervision_loss(feats[res], h, t, 3.0, H), ws)
    assert g2.abs().max() > 0
    assert torch.allclose(g1, g2, atol=1e-6 * float(g2.abs().max()) + 1e-9)


# ----------------------------------------------------------------------------
# Session


def session(G, **opts) -> DragSession:
    return DragSession(G, seed=3, psi=0.7, options=DragOptions(**opts))


def test_step_run_and_results(G32, device):
    s = session(on_device(G32, device))
    s.add_point(handle=(12, 14), target=(19, 15))
    results = list(s.run(max_steps=15))
    assert all(isinstance(r, StepResult) for r in results)
    assert [r.done for r in results] == [False] * (len(results) - 1) + [True]
    last = results[-1]
    assert last.step == len(results) - 1 or last.reached
    assert isinstance(last.points[0], PointPair)
    assert last.distances[0] == pytest.approx(math.dist(last.points[0].handle, (19, 15)))
    assert last.distances[0] < 7  # the random model's content moved towards the target
    assert not torch.equal(s.latent, s.w0)
    assert s.can_undo and not s.can_redo


def test_windowed_and_full_map_sessions_follow_the_same_path(G32):
    runs = []
    for crop in (True, False):
        s = session(G32, tracking="l2")
        s._crop = crop
        s.add_point(handle=(10, 10), target=(18, 14))
        s.add_point(handle=(22, 24), target=(20, 17))
        runs.append(([r.points for r in s.run(max_steps=10)], s.latent))
    assert runs[0][0] == runs[1][0]
    assert torch.allclose(runs[0][1], runs[1][1], atol=1e-5)


def test_handle_at_its_target_takes_zero_steps_and_changes_nothing(G32):
    s = session(G32)
    before = np.asarray(s.image())
    s.add_point(handle=(12, 12), target=(12.5, 12))
    results = list(s.run(max_steps=50))
    assert len(results) == 1 and results[0].step == 0 and results[0].done and results[0].reached
    assert torch.equal(s.latent, s.w0)
    assert np.array_equal(np.asarray(s.image()), before)
    assert not s.can_undo


def test_only_the_first_layers_move_and_w_space_shares_one_code(G32):
    s = session(G32, layers=3)
    s.add_point(handle=(12, 14), target=(20, 15))
    list(s.run(max_steps=5))
    assert torch.equal(s.latent[:, 3:], s.w0[:, 3:])
    assert not torch.equal(s.latent[:, :3], s.w0[:, :3])
    s = session(G32, space="w", layers=4)
    s.add_point(handle=(12, 14), target=(20, 15))
    list(s.run(max_steps=5))
    lat = s.latent
    assert torch.equal(lat[:, 0], lat[:, 3]) and not torch.equal(lat[:, 0], s.w0[:, 0])
    assert torch.equal(lat[:, 4:], s.w0[:, 4:])


def test_unset_options_resolve_to_the_measured_small_model_defaults_and_the_papers_above():
    class Fake:
        def __init__(self, H):
            self.img_resolution, self.num_ws = H, 2 * int(math.log2(H)) - 2
            self.synthesis = type("S", (), {"block_resolutions": [2 ** k for k in range(2, int(math.log2(H)) + 1)]})()

    small, large = DragOptions().resolved(Fake(32)), DragOptions().resolved(Fake(512))
    assert (small.r1, small.r2, small.lambda_mask, small.feature_block) == (8.0, 6, 5.0, 16)
    assert (large.r1, large.r2, large.lambda_mask, large.feature_block) == (3.0, 12, 20.0, 128)
    # b64 from 128 px (measured on faces128, docs/drag.md); H / 4 again at 256 px and above
    assert [DragOptions().resolved(Fake(H)).feature_block for H in (64, 128, 256, 1024)] == [16, 64, 64, 256]
    assert DragOptions(lambda_mask=20.0).resolved(Fake(32)).lambda_mask == 20.0
    assert DragOptions(lambda_mask=0.0).resolved(Fake(32)).lambda_mask == 0.0
    with pytest.raises(SpecError, match="lambda_mask"):
        DragOptions(lambda_mask=-1.0).validate()


def test_mask_keeps_the_fixed_region(G32, device):
    G32 = on_device(G32, device)

    def drag(mask):
        s = session(G32, lambda_mask=50.0)
        s.add_point(handle=(8, 8), target=(14, 10))
        if mask is not None:
            s.set_mask(mask)
        list(s.run(max_steps=12))
        return s.image_tensor(), s

    img0 = G32.synthesis(G32.ws_from_seed(3, psi=0.7))
    m = np.zeros((32, 32), bool)
    m[:18, :20] = True  # flexible around the handle
    free, _ = drag(None)
    kept, s = drag(m)
    assert s.mask is not None and s.mask.sum() == m.sum()
    outside = torch.from_numpy(~m).to(device)
    change_free = (free - img0).abs()[0].mean(0)[outside].mean()
    change_kept = (kept - img0).abs()[0].mean(0)[outside].mean()
    assert change_kept < 0.5 * change_free


def test_undo_redo_whole_drags_and_point_edits_end_a_drag(G32):
    s = session(G32)
    s.add_point(handle=(12, 14), target=(20, 15))
    lat0, pts0 = s.latent, s.points
    list(s.run(max_steps=4))
    lat1, pts1 = s.latent, s.points
    for _ in range(3):
        s.step()  # a step sequence is a drag too ...
    s.add_point(handle=(5, 5), target=(5, 9))  # ... ended by the next non-step action
    lat2 = s.latent
    assert not torch.equal(lat1, lat2)
    assert s.undo() and torch.equal(s.latent, lat1) and s.points == pts1
    assert s.undo() and torch.equal(s.latent, lat0) and s.points == pts0
    assert not s.undo() and not s.can_undo and s.can_redo
    assert s.redo() and torch.equal(s.latent, lat1)
    assert s.redo() and torch.equal(s.latent, lat2)
    assert not s.redo()


def test_save_load_undo_redo_reproduce_latents_and_images(G32, tmp_path):
    s = session(G32)
    s.add_point(handle=(12, 14), target=(20, 15))
    m = np.zeros((32, 32), bool)
    m[4:30, 2:28] = True
    s.set_mask(m)
    list(s.run(max_steps=4))
    s.add_point(handle=(25, 5), target=(25, 10))
    list(s.run(max_steps=3))
    path = s.save(tmp_path / "edit.dragkit.json")
    t = DragSession.load(path, G32)
    assert torch.equal(t.latent, s.latent) and torch.equal(t.w0, s.w0)
    assert t.points == s.points and np.array_equal(t.mask, s.mask)
    assert t.options == s.options
    assert np.array_equal(np.asarray(t.image()), np.asarray(s.image()))
    for a in (s, t):
        assert a.undo()
    assert torch.equal(t.latent, s.latent) and t.points == s.points
    for a in (s, t):
        assert a.undo() and a.redo() and a.redo()
    assert torch.equal(t.latent, s.latent)
    assert np.array_equal(np.asarray(t.image()), np.asarray(s.image()))
    # continuing after a load follows the same path as continuing without one
    ra = [r.points for r in s.run(max_steps=3)]
    rb = [r.points for r in t.run(max_steps=3)]
    assert ra == rb and torch.equal(s.latent, t.latent)


def test_get_state_is_json_and_set_state_restores(G32):
    s = session(G32)
    s.add_point(handle=(12, 14), target=(20, 15))
    state = json.loads(json.dumps(s.get_state()))
    list(s.run(max_steps=3))
    assert not torch.equal(s.latent, s.w0)
    s.set_state(state)
    assert torch.equal(s.latent, s.w0) and s.points == [PointPair((12.0, 14.0), (20.0, 15.0))]
    other = tiny_generator(64)
    with pytest.raises(DragkitError, match="64 px|32 px"):
        DragSession(other).set_state(state)


def test_bad_points_masks_and_options_are_clear_errors(G32):
    s = session(G32)
    with pytest.raises(SpecError, match="outside"):
        s.add_point(handle=(40, 3), target=(5, 5))
    with pytest.raises(SpecError, match="finite"):
        s.add_point(handle=(float("nan"), 3), target=(5, 5))
    with pytest.raises(SpecError, match="32x32"):
        s.set_mask(np.ones((16, 16), bool))
    with pytest.raises(SpecError, match="at least one point"):
        s.step()
    with pytest.raises(SpecError, match="feature_block"):
        session(G32, feature_block=12)
    with pytest.raises(SpecError, match="space"):
        DragOptions(space="z").validate()
    with pytest.raises(SpecError, match="unknown option"):
        DragOptions.from_dict({"lr": 0.01, "radius": 3})


# ----------------------------------------------------------------------------
# CLI


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    from dragkit.formats import save_native

    d = tmp_path_factory.mktemp("model")
    save_native(tiny_generator(32), d / "tiny")
    return d / "tiny.safetensors"


def write_spec(folder: Path, spec: dict) -> Path:
    p = folder / "edit.json"
    p.write_text(json.dumps(spec))
    return p


def test_cli_drag_writes_image_report_video_and_annotation(model_file, tmp_path, capsys):
    Image.fromarray(np.where(np.arange(32)[None, :] < 24, 255, 0).astype(np.uint8).repeat(32, 0)).save(
        tmp_path / "mask.png")
    spec = write_spec(tmp_path, {"model": str(model_file), "seed": 3, "psi": 0.7,
                                 "points": [{"handle": [12, 14], "target": [18, 15]}],
                                 "mask": "mask.png", "max_steps": 6, "options": {"lr": 0.004, "r1": 3}})
    out, rep, vid = tmp_path / "out.png", tmp_path / "report.json", tmp_path / "p.gif"
    rc = dragkit_main(["drag", "--spec", str(spec), "--out", str(out), "--report", str(rep), "--video", str(vid)])
    assert rc == 0
    report = json.loads(rep.read_text())
    for k in ("steps", "final_points", "distances", "reached", "seconds", "seconds_per_step"):
        assert k in report
    assert 0 < report["steps"] <= 6 and len(report["final_points"]) == 1
    plain = np.asarray(Image.open(out))
    assert plain.shape == (32, 32, 3)
    with Image.open(vid) as v:
        assert v.n_frames == report["steps"] + 1  # the start and one frame per step
    out2 = tmp_path / "annotated.png"
    assert dragkit_main(["drag", "--spec", str(spec), "--out", str(out2), "--annotate"]) == 0
    ann = np.asarray(Image.open(out2))
    diff = np.abs(ann.astype(int) - plain.astype(int)).sum(2) > 0
    assert 0 < diff.sum() < 0.5 * diff.size  # marks drawn, the image still there
    y, x = 15, 18
    assert ann[y, x, 2] > 200  # the target marker is blue


def test_cli_drag_mp4_video(model_file, tmp_path):
    spec = write_spec(tmp_path, {"model": str(model_file), "points": [{"handle": [12, 14], "target": [16, 14]}],
                                 "max_steps": 3})
    vid = tmp_path / "p.mp4"
    assert dragkit_main(["drag", "--spec", str(spec), "--out", str(tmp_path / "o.png"), "--video", str(vid)]) == 0
    import imageio.v2 as imageio

    with imageio.get_reader(vid) as r:
        frames = [f for f in r]
    assert len(frames) >= 3 and frames[0].shape[:2] == (32, 32)


BAD_SPECS = {
    "unknown key": ({"pointz": []}, "unknown key"),
    "unknown option": ({"options": {"r3": 1}}, "unknown option"),
    "point outside": ({"points": [{"handle": [40, 3], "target": [4, 4]}]}, "outside the 32x32 (width x height) image"),
    "NaN": ("NaN", "NaN"),
    "mask size": ({"mask": "small.png"}, "16x16"),
    "no points": ({"points": []}, "points"),
    "point key": ({"points": [{"handle": [1, 1], "target": [2, 2], "weight": 1}]}, "unknown key"),
    "latent and seed": ({"latent": "w.npy"}, "either latent or seed"),
    "latent shape": ({"latent": "bad.npy", "seed": None}, "shape"),
    "bad option value": ({"options": {"space": "z"}}, "space"),
    "feature block": ({"options": {"feature_block": 12}}, "feature_block"),
    "max_steps": ({"max_steps": -1}, "max_steps"),
    "bad json": ("{", "invalid JSON"),
}


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_cli_malformed_specs_give_one_error_and_no_output(case, model_file, tmp_path, capsys):
    change, needle = BAD_SPECS[case]
    Image.new("L", (16, 16), 255).save(tmp_path / "small.png")
    np.save(tmp_path / "bad.npy", np.zeros((3, 7), np.float32))
    spec = {"model": str(model_file), "seed": 1, "points": [{"handle": [10, 10], "target": [14, 10]}]}
    p = tmp_path / "edit.json"
    if change == "NaN":
        p.write_text(json.dumps(spec).replace('"seed": 1', '"psi": NaN'))
    elif change == "{":
        p.write_text("{")
    else:
        spec.update(change)
        if spec.get("seed", 0) is None:
            del spec["seed"]
        p.write_text(json.dumps(spec))
    out, rep = tmp_path / "out.png", tmp_path / "r.json"
    rc = dragkit_main(["drag", "--spec", str(p), "--out", str(out), "--report", str(rep)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert len(err) == 1 and err[0].startswith("dragkit: error: ") and needle in err[0], err
    assert not out.exists() and not rep.exists()
    assert sorted(f.name for f in tmp_path.iterdir()) == ["bad.npy", "edit.json", "small.png"]


def test_cli_rejects_bad_output_names_before_computing(model_file, tmp_path, capsys):
    spec = write_spec(tmp_path, {"model": str(model_file), "points": [{"handle": [10, 10], "target": [14, 10]}]})
    assert dragkit_main(["drag", "--spec", str(spec), "--out", str(tmp_path / "o.bmp")]) == 1
    assert dragkit_main(["drag", "--spec", str(spec), "--out", str(tmp_path / "o.png"),
                         "--video", str(tmp_path / "v.avi")]) == 1
    err = capsys.readouterr().err
    assert "extension" in err and not (tmp_path / "o.png").exists()


def test_cli_as_a_user_runs_it(model_file, tmp_path):
    import os
    import subprocess
    import sys

    spec = write_spec(tmp_path, {"model": str(model_file), "seed": 2,
                                 "points": [{"handle": [10, 10], "target": [13, 10]}], "max_steps": 2})
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    ok = subprocess.run([sys.executable, "-m", "dragkit.cli", "drag", "--spec", str(spec), "--out",
                         str(tmp_path / "o.png")], capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "o.png").exists() and "steps" in ok.stdout
    bad = json.loads(spec.read_text())
    bad["points"][0]["handle"] = [10, 99]
    spec.write_text(json.dumps(bad))
    proc = subprocess.run([sys.executable, "-m", "dragkit.cli", "drag", "--spec", str(spec), "--out",
                           str(tmp_path / "o2.png")], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "outside" in proc.stderr
    assert not (tmp_path / "o2.png").exists()


# ----------------------------------------------------------------------------
# H x W images and StyleGAN3 layer geometry: the same functions, exact against
# the authors' construction generalised to a non-square resize.

from dragkit.drag.core import FeatureGeometry  # noqa: E402


def resized(feat, H, W):
    return F.interpolate(feat, (H, W), mode="bilinear", align_corners=False)


@pytest.mark.parametrize("H,W,h,w", [(32, 16, 8, 4), (32, 16, 16, 8), (32, 16, 32, 16), (24, 40, 5, 9), (16, 32, 3, 3)])
def test_hw_sampling_integer_pixels_equals_resized_map(H, W, h, w):
    torch.manual_seed(H + W + h)
    feat = torch.randn(1, 5, h, w)
    full = resized(feat, H, W)[0]
    ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    pts = torch.stack([xs, ys], dim=-1).double()  # (H, W, 2) [x, y]
    got = sample_features(feat, pts, (H, W))  # (H, W, C)
    assert torch.allclose(got.permute(2, 0, 1), full, atol=1e-6)


def test_hw_sampling_between_pixels_equals_grid_sample_on_resized_map():
    H, W, h, w = 32, 16, 8, 4
    torch.manual_seed(11)
    feat = torch.randn(1, 4, h, w)
    full = resized(feat, H, W)
    pts = torch.rand(60, 2, dtype=torch.float64) * torch.tensor([W - 1, H - 1])
    grid = torch.stack([pts[:, 0] / (W - 1), pts[:, 1] / (H - 1)], dim=1).mul(2).sub(1).float()[None, None]
    ref = F.grid_sample(full, grid, align_corners=True)[0, :, 0].t()
    assert torch.allclose(sample_features(feat, pts, (H, W)), ref, atol=1e-5)


def test_hw_motion_loss_and_gradient_match_the_authors_formulation():
    H, W, h, w = 32, 16, 8, 4
    torch.manual_seed(12)
    feat = torch.randn(1, 6, h, w, requires_grad=True)
    # the second handle's disk reaches past the right edge (x = 15) and the bottom one past y = 31
    handles = torch.tensor([[6.0, 12.0], [14.0, 28.0], [8.0, 20.0]], dtype=torch.float64)
    targets = torch.tensor([[10.0, 20.0], [9.0, 25.0], [8.5, 20.0]], dtype=torch.float64)
    ours = motion_supervision_loss(feat, handles, targets, 3.0, (H, W))
    ref = authors_motion_loss(feat, handles.tolist(), targets.tolist(), 3.0, H, W)
    assert torch.allclose(ours, ref, rtol=1e-5)
    g1, = torch.autograd.grad(ours, feat)
    g2, = torch.autograd.grad(ref, feat)
    assert g1.abs().sum() > 0 and torch.allclose(g1, g2, atol=1e-6)


def test_hw_mask_term_matches_l1_over_the_resized_maps():
    H, W, h, w = 32, 16, 8, 4
    torch.manual_seed(13)
    f0 = torch.randn(1, 3, h, w)
    f = (f0 + 0.1 * torch.randn_like(f0)).requires_grad_(True)
    m = np.zeros((H, W), bool)
    m[4:20, 2:9] = True
    fixed = torch.from_numpy(~m).float()
    ref = F.l1_loss(resized(f, H, W) * fixed, resized(f0, H, W) * fixed)  # mean over C * H * W
    ours = mask_loss(f, f0, torch.from_numpy(m), (H, W))
    assert torch.allclose(ours, ref, rtol=1e-5)
    g1, = torch.autograd.grad(ours, f)
    g2, = torch.autograd.grad(ref, f)
    assert g1.abs().sum() > 0 and torch.allclose(g1, g2, atol=1e-7)
    with pytest.raises(ValueError, match=r"mask must be \(32, 16\)"):
        mask_loss(f, f0, torch.from_numpy(m.T.copy()), (H, W))


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_hw_tracking_finds_the_reference_feature_up_to_the_right_and_bottom_edges(norm):
    H, W = 32, 16
    torch.manual_seed(14)
    feat = torch.randn(1, 8, H, W)  # one feature per pixel
    refs = torch.stack([feat[0, :, 30, 15], feat[0, :, 2, 13]])  # at (x=15, y=30), (x=13, y=2)
    handles = torch.tensor([[13.0, 28.0], [15.0, 0.0]], dtype=torch.float64)
    got = track_points(feat, handles, refs, 4, (H, W), norm=norm)
    assert got.tolist() == [[15.0, 30.0], [13.0, 2.0]]
    assert (got[:, 0] <= W - 1).all() and (got[:, 1] <= H - 1).all()


def test_hw_crop_from_needed_box_gives_the_same_loss_gradient_and_tracking():
    H, W, h, w = 64, 32, 16, 8
    torch.manual_seed(15)
    feat = torch.randn(1, 4, h, w, requires_grad=True)
    handles = torch.tensor([[28.0, 50.0]], dtype=torch.float64)
    targets = torch.tensor([[20.0, 44.0]], dtype=torch.float64)
    fx0, fy0, fx1, fy1 = needed_feature_box(handles, 3.0, 4, (H, W), (h, w))
    assert 0 < (fx1 - fx0) * (fy1 - fy0) < h * w and fx1 <= w and fy1 <= h
    crop = feat[:, :, fy0:fy1, fx0:fx1]
    kw = dict(feature_size=(h, w), origin=(fx0, fy0))
    a = motion_supervision_loss(crop, handles, targets, 3.0, (H, W), **kw)
    b = motion_supervision_loss(feat, handles, targets, 3.0, (H, W))
    assert torch.allclose(a, b)
    ga, = torch.autograd.grad(a, feat)
    gb, = torch.autograd.grad(b, feat)
    assert torch.allclose(ga, gb)
    refs = sample_features(feat.detach(), targets, (H, W))
    assert torch.equal(track_points(crop.detach(), handles, refs, 4, (H, W), **kw),
                       track_points(feat.detach(), handles, refs, 4, (H, W)))


def test_an_int_feature_size_on_a_non_square_image_is_refused():
    with pytest.raises(ValueError, match=r"\(height, width\)"):
        sample_features(torch.randn(1, 2, 8, 4), torch.zeros(1, 2), (32, 16), feature_size=8)


# -- StyleGAN3: a map with a margin, placed by offset and scale ----------------


def _sg3(seed: int = 0):
    from dragkit.nets import StyleGAN3Generator

    torch.manual_seed(seed)
    return StyleGAN3Generator(8, 0, 8, 32, 3, channel_base=512, channel_max=16, num_layers=6).eval().requires_grad_(False)


def test_embedded_geometry_is_the_stylegan3_layer_geometry():
    G = _sg3()
    for i in range(G.synthesis.num_layers + 1):
        lg = G.synthesis.layer_geometry(i)
        geom = FeatureGeometry.embedded(32, lg.size, lg.sampling_rate)
        p = torch.arange(32, dtype=torch.float64)
        expect = torch.as_tensor(lg.image_to_layer(p), dtype=torch.float64).clamp(0, lg.size - 1)
        assert torch.allclose(geom.to_map_x(p), expect) and torch.allclose(geom.to_map_y(p), expect)
    lg = G.synthesis.layer_geometry(2)
    assert lg.size > lg.sampling_rate  # a layer with a margin: the test above is not only the resize


def test_sampling_a_stylegan3_layer_reads_the_point_under_the_pixel():
    """At pixel p the feature is the bilinear sample of the layer at u = (p + 0.5) s / H - 0.5 + (S - s) / 2."""
    G = _sg3(1)
    ws = G.ws_from_seed(2, psi=0.7)
    _, feats = G.synthesis.run(ws, feature_layers=[2], return_image=False)
    feat = feats[2]
    lg = G.synthesis.layer_geometry(2)
    geom = FeatureGeometry.embedded(32, lg.size, lg.sampling_rate)
    pts = torch.rand(40, 2, dtype=torch.float64) * 31
    u = torch.as_tensor(lg.image_to_layer(pts.round()), dtype=torch.float64)  # integer pixels: one bilinear sample
    grid = (u / (lg.size - 1) * 2 - 1).float()[None, None]  # [x, y] in map units
    ref = F.grid_sample(feat, grid, align_corners=True)[0, :, 0].t()
    got = sample_features(feat, pts.round(), 32, geometry=geom)
    assert torch.allclose(got, ref, atol=1e-5)
    # the paper's resize of the whole map reads other places (the margin is stretched over the image)
    assert not torch.allclose(sample_features(feat, pts.round(), 32), ref, atol=1e-3)
    # a crop from needed_feature_box gives the same loss with the geometry
    h = torch.tensor([[6.0, 25.0]], dtype=torch.float64)
    t = torch.tensor([[12.0, 20.0]], dtype=torch.float64)
    fx0, fy0, fx1, fy1 = needed_feature_box(h, 3.0, 4, 32, geometry=geom)
    crop = feat[:, :, fy0:fy1, fx0:fx1]
    assert (fx1 - fx0) < lg.size and (fy1 - fy0) < lg.size
    assert torch.allclose(motion_supervision_loss(crop, h, t, 3.0, 32, geometry=geom, origin=(fx0, fy0)),
                          motion_supervision_loss(feat, h, t, 3.0, 32, geometry=geom))


def _core_drag(G, ws, feature, geom, handle, target, steps, r1=3.0, r2=4, lr=0.01):
    """DragGAN's loop from the core functions alone: track, then one Adam step on the first 6 codes."""
    k = 6
    w = ws[:, :k].clone().requires_grad_(True)
    held = ws[:, k:]
    opt = torch.optim.Adam([w], lr=lr)
    p = torch.tensor([handle], dtype=torch.float64)
    t = torch.tensor([target], dtype=torch.float64)
    refs = sample_features(feature(torch.cat([w, held], 1)).detach(), p, None, geometry=geom)
    path = [p[0].tolist()]
    for step in range(steps):
        feat = feature(torch.cat([w, held], 1))
        if step:
            p = track_points(feat.detach(), p, refs, r2, None, geometry=geom)
            path.append(p[0].tolist())
        loss = motion_supervision_loss(feat, p, t, r1, None, geometry=geom)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return path


def test_a_drag_on_a_non_square_generator_moves_the_handle_toward_the_target():
    from dragkit.nets import Generator

    torch.manual_seed(0)
    G = Generator(32, 0, 32, 32, 3, mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=512, channel_max=32, square=False)).eval().requires_grad_(False)
    ws = G.ws_from_seed(4, psi=0.7)
    res = 16
    geom = FeatureGeometry.resized((G.img_height, G.img_width), G.synthesis.block_size(res))
    assert (geom.image_height, geom.image_width, geom.map_height, geom.map_width) == (32, 16, 16, 8)

    def feature(ws):
        return G.synthesis.run(ws, feature_blocks=[res], return_image=False)[1][res]

    path = _core_drag(G, ws, feature, geom, (8.0, 12.0), (8.0, 20.0), steps=25)
    d0 = math.dist(path[0], (8, 20))
    assert all(0 <= x <= 15 and 0 <= y <= 31 for x, y in path)
    assert math.dist(path[-1], (8, 20)) < d0 - 2, path


def test_a_drag_on_a_stylegan3_layer_moves_the_handle_toward_the_target():
    G = _sg3(3)
    ws = G.ws_from_seed(1, psi=0.7)
    lg = G.synthesis.layer_geometry(3)
    geom = FeatureGeometry.embedded(32, lg.size, lg.sampling_rate)

    def feature(ws):
        return G.synthesis.run(ws, feature_layers=[3], return_image=False)[1][3]

    path = _core_drag(G, ws, feature, geom, (12.0, 16.0), (20.0, 16.0), steps=25)
    d0 = math.dist(path[0], (20, 16))
    assert math.dist(path[-1], (20, 16)) < d0 - 2, path


@pytest.mark.parametrize("H,W,h,w", [(32, 32, 8, 8), (24, 24, 8, 8), (16, 16, 16, 16), (32, 16, 16, 4),
                                     (30, 30, 8, 8), (20, 24, 8, 6)])
@pytest.mark.parametrize("chunk", [4_000_000, 100])
def test_mask_term_every_resize_and_chunking_matches_l1_over_the_resized_maps(monkeypatch, H, W, h, w, chunk):
    """Integer factors (1-4, also different per axis) take the phase path, others the gather;
    both equal F.l1_loss on the resized maps, also when the rows come in many small chunks and
    when whole rows are flexible (skipped)."""
    import dragkit.drag.core as core

    monkeypatch.setattr(core, "_CHUNK_VALUES", chunk)
    torch.manual_seed(H * 100 + W + h)
    f0 = torch.randn(1, 5, h, w, dtype=torch.float64)
    f = (f0 + 0.3 * torch.randn_like(f0)).requires_grad_(True)
    m = np.zeros((H, W), bool)
    m[H // 4: H // 2, :] = True  # whole flexible rows
    m[H // 2:, W // 3: 2 * W // 3] = True
    fixed = torch.from_numpy(~m).double()
    ref = F.l1_loss(resized(f, H, W) * fixed, resized(f0, H, W) * fixed)
    ours = mask_loss(f, f0, torch.from_numpy(m), (H, W))
    assert abs(ours.item() - ref.item()) <= 1e-12 * ref.item()
    g1, = torch.autograd.grad(ours, f)
    g2, = torch.autograd.grad(ref, f)
    assert g1.abs().sum() > 0 and torch.allclose(g1, g2, rtol=0, atol=1e-15)
    assert (core._integer_factors(core.FeatureGeometry.resized((H, W), (h, w))) is not None) == (H % h == 0 == W % w)
