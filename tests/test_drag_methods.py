"""Drag methods and DragGAN's tracking variants (issue 19): options, exactness against references
written out here, the line search's guarantees, and ground truth on the toy world."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dragkit.drag import freedrag as fd
from dragkit.drag.core import (
    FeatureGeometry,
    confident_templates,
    disk_offsets,
    motion_supervision_loss,
    reference_patch,
    track_points,
)
from dragkit.drag.features import feature_source, source_features
from dragkit.drag.options import METHODS, OPTION_NAMES, option_limits
from dragkit.drag.session import DragOptions, DragSession
from dragkit.drag.spec import parse_spec
from dragkit.errors import SpecError
from support.generators import drag_generator

METHOD_OPTIONS = {
    "draggan": {},
    "freedrag": {"method": "freedrag"},
    "draggan+subpixel": {"subpixel": True},
    "draggan+confidence": {"confidence": 0.9},
    "draggan+supervise_original": {"supervise_original": True},
}


@pytest.fixture(scope="module")
def G32():
    return drag_generator(32)


def resized(feat, H):
    return F.interpolate(feat, (H, H), mode="bilinear", align_corners=False)


def grid_at(fr, pts, H):
    """Values of the resized map ``fr`` at fractional pixels ``pts`` ``(M, 2)``: ``(M, C)`` (authors' grid_sample)."""
    g = (torch.as_tensor(pts, dtype=torch.float32) / (H - 1) * 2 - 1)[None, None]
    return F.grid_sample(fr, g, align_corners=True)[0, :, 0].t()


# ----------------------------------------------------------------------------
# Options: declared once, carried everywhere


def test_method_and_flags_are_options_with_one_clear_error_each(G32):
    for name in ("method", "subpixel", "confidence", "supervise_original", "freedrag_loss", "freedrag_step"):
        assert name in OPTION_NAMES
    lim = option_limits(G32)
    assert lim["method"].to_json()["choices"] == list(METHODS) == ["draggan", "freedrag"]
    assert lim["subpixel"].to_json() == {"kind": "bool", "optional": False, "choices": [False, True]}
    assert lim["freedrag_step"].hi == 16  # half the 32 px image
    for bad, msg in [({"method": "dragdiffusion"}, "method must be one of draggan, freedrag"),
                     ({"subpixel": 1}, "subpixel must be true or false"),
                     ({"confidence": 1.5}, "confidence must be between 0 and 1"),
                     ({"freedrag_step": 40.0}, "at most 16")]:
        with pytest.raises(SpecError, match=msg):
            DragOptions().replace(bad, G32)
    r = DragOptions(method="freedrag").resolved(G32)
    assert r.freedrag_step == 3 * 32 / r.feature_block and r.freedrag_loss == 0.3  # the paper's l, relative


def test_spec_session_file_and_server_carry_the_method(G32, tmp_path):
    spec = parse_spec({"model": "x", "seed": 1, "points": [{"handle": [5, 5], "target": [9, 9]}],
                       "options": {"method": "freedrag", "freedrag_loss": 0.05}}, tmp_path)
    assert spec.options.method == "freedrag" and spec.options.freedrag_loss == 0.05
    s = DragSession(G32, seed=1, options=DragOptions(subpixel=True, confidence=0.8, method="freedrag"))
    s.add_point((10, 10), (14, 12))
    list(s.run(max_steps=3))
    t = DragSession.from_bytes(s.to_bytes(), G32)
    assert t.options == s.options and t.options.method == "freedrag" and t.options.subpixel is True
    state = json.loads(s.to_bytes())
    state["options"]["supervise_original"] = "yes"
    with pytest.raises(SpecError, match="supervise_original must be true or false"):
        t.set_state(state)
    assert t.options.method == "freedrag"  # unchanged
    from dragkit.server.engine import APP_OPTIONS

    assert {"method", "subpixel", "confidence", "supervise_original", "freedrag_loss", "freedrag_step"} <= set(
        APP_OPTIONS)


def test_eval_sweeps_take_methods_and_flags(G32):
    from dragkit.eval.variants import build_variants, parse_value

    assert parse_value("subpixel", "true") is True and parse_value("subpixel", "off") is False
    vs = build_variants(G32, sweeps=["method=freedrag", "subpixel=true"], base="confidence=0.9")
    assert [v.label for v in vs] == ["base", "method=freedrag", "subpixel=True"]
    assert vs[1].options["method"] == "freedrag" and vs[1].options["confidence"] == 0.9
    with pytest.raises(SpecError, match="true/false"):
        parse_value("subpixel", "maybe")


# ----------------------------------------------------------------------------
# DragGAN's variants against references written out here


def test_supervision_with_the_original_patch_matches_its_reference():
    """GoodDrag's loss: |F0(round(p0) + o) - F(round(p) + o + d)|, the disk of the *original* handle."""
    H, R = 32, 8
    torch.manual_seed(5)
    feat0 = torch.randn(1, 6, R, R)
    feat = (feat0 + 0.3 * torch.randn_like(feat0)).requires_grad_(True)
    p0 = torch.tensor([[10.0, 12.0], [20.0, 9.0]], dtype=torch.float64)
    p = torch.tensor([[12.0, 13.0], [19.0, 12.0]], dtype=torch.float64)
    t = torch.tensor([[18.0, 16.0], [15.0, 20.0]], dtype=torch.float64)
    ref = reference_patch(feat0, p0, 3.0, H)
    ours = motion_supervision_loss(feat, p, t, 3.0, H, reference=ref)
    fr, fr0 = resized(feat, H), resized(feat0, H)
    offs = disk_offsets(3.0).double()
    want = 0
    for i in range(2):
        d = (t[i] - p[i]) / (t[i] - p[i]).norm()
        q0 = p0[i].round() + offs
        q = p[i].round() + offs
        want = want + F.l1_loss(grid_at(fr0, q0, H), grid_at(fr, q + d, H))
    assert torch.allclose(ours, want, rtol=1e-5)
    g1, = torch.autograd.grad(ours, feat)
    g2, = torch.autograd.grad(want, feat)
    assert torch.allclose(g1, g2, atol=1e-6)
    # without the reference it is DragGAN's loss, which differs here
    assert not torch.allclose(motion_supervision_loss(feat, p, t, 3.0, H), ours)


@pytest.mark.parametrize("x0, y0", [(13.3, 17.8), (20.5, 9.0), (11.0, 11.25)])
def test_subpixel_tracking_finds_a_fractional_minimum_exactly(x0, y0):
    """Features [x, y] per pixel: the squared L2 distance is a paraboloid whose minimum is (x0, y0)."""
    H = 32
    ys, xs = torch.meshgrid(torch.arange(H).float(), torch.arange(H).float(), indexing="ij")
    feat = torch.stack([xs, ys])[None]  # R = H: the resize is the identity
    refs = torch.tensor([[x0, y0]])
    start = torch.tensor([[15.0, 14.0]], dtype=torch.float64)
    got = track_points(feat, start, refs, 6, H, norm="l2", subpixel=True)
    assert got[0].tolist() == pytest.approx([x0, y0], abs=1e-5)
    plain = track_points(feat, start, refs, 6, H, norm="l2")
    assert plain[0].tolist() == [round(x0 + 1e-9), round(y0)] or (plain[0] - torch.tensor([x0, y0])).abs().max() <= 0.5


def test_confidence_keeps_good_matches_and_falls_back_to_the_original():
    orig = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    matched = torch.tensor([[0.9, 0.1, 0.0], [1.0, 0.2, 0.0]])  # cos 0.994 and 0.196
    tmpl, ok = confident_templates(matched, orig, 0.9)
    assert ok.tolist() == [True, False]
    assert torch.equal(tmpl[0], matched[0]) and torch.equal(tmpl[1], orig[1])


def test_confidence_one_is_draggans_tracking_and_lower_thresholds_change_the_path(G32):
    paths = {}
    for c in (None, 1.0, 0.0):
        s = DragSession(G32, seed=2, options=DragOptions(confidence=c))
        s.add_point((10, 12), (17, 15))
        paths[c] = ([r.points for r in s.run(max_steps=12)], s.latent)
    assert paths[1.0][0] == paths[None][0] and torch.equal(paths[1.0][1], paths[None][1])
    assert not torch.equal(paths[0.0][1], paths[None][1])


# ----------------------------------------------------------------------------
# FreeDrag: its functions, its line search, one step against a reference


def test_template_decay_is_the_papers_sigmoid():
    lam = fd.template_decay(torch.tensor([0.2 * 0.3, 0.8 * 0.3, 0.0]), 0.3)
    assert lam[0].item() == pytest.approx(0.5) and lam[1].item() == pytest.approx(0.1)
    assert lam[2].item() == pytest.approx(1 / (1 + 9 ** (-1 / 3)))


def _line_case(seed):
    torch.manual_seed(seed)
    H = 32
    feat = torch.randn(1, 4, 16, 16)
    geom = FeatureGeometry.resized(H, 16)
    cur = torch.rand(3, 2, dtype=torch.float64) * 28 + 2
    tgt = torch.rand(3, 2, dtype=torch.float64) * 28 + 2
    tmpl = torch.randn(3, 9, 4)
    return H, feat, geom, cur, tgt, tmpl


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("branch", ["forward", "stay", "back"])
def test_line_search_stays_on_the_line_and_never_passes_the_target(seed, branch):
    H, feat, geom, cur, tgt, tmpl = _line_case(seed)
    l, d_max = 0.3, 4.0 + seed
    le = {"forward": 0.1, "stay": 0.2, "back": 0.5}[branch]
    ini = {"forward": 0.0, "stay": 0.3, "back": 0.4}[branch]
    n = cur.shape[0]
    new = fd.line_search(feat, cur, tgt, tmpl, expected=l, d_max=d_max, loss_ini=torch.full((n,), ini),
                         loss_end=torch.full((n,), le), active=torch.tensor([True, True, False]), geometry=geom)
    assert torch.equal(new[2], cur[2])  # an arrived point stays
    for i in range(2):
        u = tgt[i] - cur[i]
        remain = float(u.norm())
        s = float((new[i] - cur[i]) @ u) / remain ** 2  # position along the line, 0 = current, 1 = target
        off = float(((new[i] - cur[i]) - s * u).norm())
        assert s <= 1 + 1e-9, "past the target"
        assert off < 1e-6, "off the handle-target line"
        assert (new[i] >= 0).all() and new[i][0] <= H - 1 and new[i][1] <= H - 1
        if branch == "forward":
            assert 0 < s and (new[i] - cur[i]).norm() <= d_max + 1e-9
        elif branch == "stay":
            assert torch.equal(new[i], cur[i])
        else:  # backtracked by at most d_max, then at most 2 d_max forward
            assert (new[i] - cur[i]).norm() <= 2 * d_max + 1e-6
    # a target closer than d_max: the last candidate is the target itself, never beyond
    close = cur + 0.4 * (tgt - cur) / (tgt - cur).norm(dim=1, keepdim=True)
    new = fd.line_search(feat, cur, close, tmpl, expected=l, d_max=d_max, loss_ini=torch.zeros(n),
                         loss_end=torch.zeros(n), active=torch.ones(n, dtype=torch.bool), geometry=geom)
    assert ((new - cur).norm(dim=1) <= 0.4 + 1e-9).all()


def test_line_search_picks_the_candidate_whose_distance_is_nearest_the_expected_loss():
    """Reference written out: 10 candidates, patch distance by grid_sample on the resized map."""
    H, feat, geom, cur, tgt, tmpl = _line_case(11)
    tmpl = fd.patch_features(feat, cur, geometry=geom)  # templates from the current points
    l, d_max = 0.5, 5.0
    n = cur.shape[0]
    got = fd.line_search(feat, cur, tgt, tmpl, expected=l, d_max=d_max, loss_ini=torch.zeros(n),
                         loss_end=torch.zeros(n), active=torch.ones(n, dtype=torch.bool), geometry=geom)
    fr = resized(feat, H)
    offs = torch.tensor([[dx, dy] for dy in (-3.0, 0.0, 3.0) for dx in (-3.0, 0.0, 3.0)], dtype=torch.float64)
    for i in range(n):
        end = cur[i] + min(d_max / float((tgt[i] - cur[i]).norm()), 1.0) * (tgt[i] - cur[i])
        cands = [cur[i] + k / 10 * (end - cur[i]) for k in range(1, 11)]
        dists = []
        for c in cands:
            pts = (c + offs).clamp(0, H - 1)
            dists.append(float((grid_at(fr, pts, H) - tmpl[i]).abs().mean()))
        best = min(range(10), key=lambda k: abs(dists[k] - l))
        assert got[i].tolist() == pytest.approx(cands[best].tolist(), abs=1e-6)


def test_one_freedrag_step_is_exact_against_its_reference(G32):
    """First step: template = F0's patch at the handle, line search, one Adam step on the mean L1."""
    H = 32
    handle, target = (11.0, 13.0), (20.0, 17.0)
    opts = DragOptions(method="freedrag", freedrag_loss=0.5)
    s = DragSession(G32, seed=4, options=opts)
    s.add_point(handle, target)
    r = s.step()
    o = opts.resolved(G32)
    src = feature_source(G32, o.feature_block)
    ws0 = G32.ws_from_seed(4, psi=0.7)
    k = o.layers
    w = ws0[:, :k].clone().requires_grad_(True)
    offs = torch.tensor([[dx, dy] for dy in (-3.0, 0.0, 3.0) for dx in (-3.0, 0.0, 3.0)], dtype=torch.float64)
    with torch.no_grad():
        f0map = source_features(G32, ws0, src)[0]
        f0 = resized(f0map, H)
    l_abs = o.freedrag_loss * float(f0map.abs().mean())  # l relative to the map's mean |F0|
    h = torch.tensor(handle, dtype=torch.float64)
    t = torch.tensor(target, dtype=torch.float64)
    tmpl = grid_at(f0, h + offs, H)
    end = h + min(o.freedrag_step / float((t - h).norm()), 1.0) * (t - h)
    cands = [h + j / 10 * (end - h) for j in range(1, 11)]
    dists = [float((grid_at(f0, c + offs, H) - tmpl).abs().mean()) for c in cands]
    p = cands[min(range(10), key=lambda j: abs(dists[j] - l_abs))]
    assert p.tolist() != cands[min(range(10), key=lambda j: abs(dists[j] - o.freedrag_loss))].tolist()
    assert list(s.points[0].handle) == pytest.approx(p.tolist(), abs=1e-6)
    assert r.points[0].handle == s.points[0].handle and r.step == 1
    feat = resized(source_features(G32, torch.cat([w, ws0[:, k:]], 1), src)[0], H)
    loss = (grid_at(feat, p + offs, H) - tmpl).abs().mean()
    opt = torch.optim.Adam([w], lr=o.lr)
    loss.backward()
    opt.step()
    assert torch.allclose(s.latent[:, :k], w.detach(), atol=1e-6)
    assert torch.equal(s.latent[:, k:], ws0[:, k:])


def test_freedrag_handles_are_its_localised_points_and_a_drag_can_be_undone(G32):
    s = DragSession(G32, seed=4, options=DragOptions(method="freedrag"))
    s.add_point((11, 13), (20, 17))
    results = list(s.run(max_steps=40))
    assert results[-1].done
    # never past the target: every localised point lies on the segment from the handle
    u = np.array([9.0, 4.0])
    for r in results:
        v = np.array(r.points[0].handle) - np.array([11.0, 13.0])
        assert v @ u / (u @ u) <= 1 + 1e-9
    assert s.undo() and torch.equal(s.latent, s.w0)


# ----------------------------------------------------------------------------
# Every method moves a handle to its target: tiny model and the toy world's ground truth


@pytest.mark.parametrize("name", list(METHOD_OPTIONS))
def test_each_method_moves_its_handle_towards_the_target_on_a_tiny_model(G32, name):
    """A random tiny model has no objects and no ground truth (that is the toy world's test below),
    and its features barely follow a drag; every method must still bring its handle closer to the
    target, changing only the optimised codes."""
    s = DragSession(G32, seed=3, options=DragOptions(**METHOD_OPTIONS[name]))
    h, t = (12.0, 14.0), (19.0, 15.0)
    s.add_point(h, t)
    last = None
    for last in s.run(max_steps=100):
        pass
    assert last.done and last.distances[0] < math.dist(h, t) - 1, (name, last.points)
    k = s.options.layers
    assert not torch.equal(s.latent[:, :k], s.w0[:, :k]) and torch.equal(s.latent[:, k:], s.w0[:, k:])


@pytest.mark.parametrize("name", list(METHOD_OPTIONS))
def test_each_method_drags_the_toy_disk_onto_its_target(toy, name):
    """Ground truth (the toy world's oracle): of 4 disk drags, at least 3 within 1.5 px and none
    beyond 3 px.  FreeDrag and the supervision with the original patch also keep the disk's shape
    and colour (DragGAN's plain supervision recolours the disk in most drags on this model: its
    identity share is a measured figure, docs/RESULTS.md, not a promise)."""
    from dragkit.eval.suites.toy import identity
    from dragkit.train.toy import measure

    from test_drag_toy import clean_scenes, feasible_target

    H = toy.img_resolution
    rng = np.random.default_rng(19)
    errors, kept = [], []
    for seed, m in clean_scenes(toy, 12)[:6]:
        target = feasible_target(rng, m, H)
        if target is None:
            continue
        s = DragSession(toy, seed=seed, options=DragOptions(**METHOD_OPTIONS[name]))
        s.add_point(m.disk.center, target)
        for _ in s.run(max_steps=200):
            pass
        after = measure(s.image())
        errors.append(math.dist(after.disk.center, target) if after.disk is not None else math.inf)
        kept.append(identity(m, after, "disk", target)[0])
        if len(errors) == 4:
            break
    assert len(errors) == 4
    assert sum(e <= 1.5 for e in errors) >= 3 and max(errors) <= 3.0, (name, [round(e, 2) for e in errors])
    if name in ("freedrag", "draggan+supervise_original"):
        assert sum(kept) >= 3, (name, kept)


def test_the_web_app_takes_the_method_from_the_options_message(model_home, sessions_dir):
    """The server derives its options from drag/options.py: no server change is needed for a method."""
    from test_server import close_tab, create_app, open_tab, serving

    with serving(create_app("tiny", sessions_dir=sessions_dir)) as client:
        tab = open_tab(client)
        lim = tab.state["option_limits"]
        assert lim["method"]["choices"] == ["draggan", "freedrag"] and lim["subpixel"]["kind"] == "bool"
        st = tab.do(type="options", options={"method": "freedrag", "freedrag_step": 4})
        assert st["options"]["method"] == "freedrag" and st["options_resolved"]["freedrag_step"] == 4
        err = tab.error(type="options", options={"method": "magic"})
        assert "method must be one of draggan, freedrag" in err["message"]
        tab.do(type="add_point", handle=[8, 8], target=[14, 10])
        frames, done, st = tab.drag(max_steps=6)
        assert frames and st["options"]["method"] == "freedrag"
        close_tab(tab)
