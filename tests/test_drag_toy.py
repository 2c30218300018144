"""Ground truth: drags on the bundled ``toy`` model, scored by the toy world's oracle.

The toy world (``dragkit.train.toy``) shows a disk and a bar; its oracle
measures where each object is to a few hundredths of a pixel.  So "drag the
disk's centre to a target" has a right answer.  These tests need the
bundled ``toy`` model; if it is missing they FAIL (not skip): without it the
project has no ground truth for the drag engine.

Scenes are the model's own samples for seeds 0, 1, ... that the oracle reads
cleanly (the tuning script uses seeds from 1000 on, so defaults were not
chosen on these scenes).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dragkit.drag.session import DragSession

toy = pytest.importorskip("dragkit.train.toy")  # the world itself is part of dragkit; never skipped in practice

MAX_STEPS = 200


@pytest.fixture(scope="module")
def G(toy):
    """The bundled ``toy`` model (conftest's ``toy``; this module's ``toy`` name is the toy world)."""
    return toy


_SCENES: dict[int, list] = {}


def clean_scenes(G, count, first_seed=0, psi=0.7):
    """(seed, measurement) of the first ``count`` samples the oracle reads cleanly (cached)."""
    cached = _SCENES.get(id(G), [])
    if len(cached) >= count:
        return cached[:count]
    out = []
    for seed in range(first_seed, first_seed + 20 * count):
        with torch.no_grad():
            m = toy.measure(G.synthesis(G.ws_from_seed(seed, psi=psi)))
        if m.ok:
            out.append((seed, m))
            if len(out) == count:
                break
    _SCENES[id(G)] = out
    assert len(out) == count, f"only {len(out)} of the toy model's samples are clean toy scenes"
    return out


def feasible_target(rng, m, H, lo=6.0, hi=12.0):
    """A target 6-12 px from the disk centre where the disk still fits the world's rules."""
    disk, bar = m.disk, m.bar
    hx, hy = bar.half_extent
    for _ in range(200):
        ang = rng.uniform(0, 2 * math.pi)
        length = rng.uniform(lo, hi)
        tx = disk.center[0] + length * math.cos(ang)
        ty = disk.center[1] + length * math.sin(ang)
        margin = disk.size + 3 * H / 64
        inside = margin - 0.5 <= tx <= H - 0.5 - margin and margin - 0.5 <= ty <= H - 0.5 - margin
        dx = max(abs(tx - bar.center[0]) - hx, 0)
        dy = max(abs(ty - bar.center[1]) - hy, 0)
        if inside and math.hypot(dx, dy) >= disk.size + 4 * H / 64:
            return tx, ty
    return None


def drag(G, seed, points, mask=None, max_steps=MAX_STEPS):
    s = DragSession(G, seed=seed, psi=0.7)
    for h, t in points:
        s.add_point(handle=h, target=t)
    if mask is not None:
        s.set_mask(mask)
    last = None
    for last in s.run(max_steps=max_steps):
        pass
    return s, last


def test_disk_centre_dragged_in_ten_random_directions_lands_on_target(G):
    H = G.img_resolution
    rng = np.random.default_rng(2024)
    cases = []
    for seed, m in clean_scenes(G, 30):
        t = feasible_target(rng, m, H)
        if t is not None:
            cases.append((seed, m, t))
        if len(cases) == 10:
            break
    assert len(cases) == 10
    errors = []
    for seed, m, target in cases:
        s, last = drag(G, seed, [(m.disk.center, target)])
        after = toy.measure(s.image())
        err = math.dist(after.disk.center, target) if after.disk is not None else float("inf")
        errors.append(err)
    hits = sum(e <= 1.5 for e in errors)
    assert hits >= 9, f"oracle errors (px): {[round(e, 2) for e in errors]}"


def flexible_band(m, target, H, margin):
    """Mask: everything within ``disk radius + margin`` px of the segment from the disk's centre to ``target``."""
    (cx, cy), r = m.disk.center, m.disk.size
    ys, xs = np.mgrid[0:H, 0:H]
    px, py = xs - cx, ys - cy
    vx, vy = target[0] - cx, target[1] - cy
    u = np.clip((px * vx + py * vy) / (vx * vx + vy * vy), 0, 1)
    return np.hypot(px - u * vx, py - u * vy) <= r + margin


def test_masked_drags_in_ten_directions_land_and_keep_the_bar_still(G):
    """The mask is flexible only in a band around the disk's path: the disk arrives, the bar stays put."""
    H = G.img_resolution
    rng = np.random.default_rng(7)
    ys, xs = np.mgrid[0:H, 0:H]
    results = []
    for seed, m in clean_scenes(G, 40):
        target = feasible_target(rng, m, H)
        if target is None:
            continue
        # The band is 5 px wider than the disk: the motion-supervision disk
        # (r1 = H / 4 = 8 px here) must fit in the flexible region, or the
        # mask term holds the disk back.  The bar, with a 1 px margin, must
        # lie wholly outside it: the mask is flexible *only* around the disk.
        mask = flexible_band(m, target, H, 5.0)
        (bx, by), (hx, hy) = m.bar.center, m.bar.half_extent
        bar = (np.abs(xs - bx) <= hx + 1) & (np.abs(ys - by) <= hy + 1)
        if (mask & bar).any():
            continue
        s, last = drag(G, seed, [(m.disk.center, target)], mask=mask)
        after = toy.measure(s.image())
        assert after.bar is not None and after.disk is not None, (seed, after.problems)
        results.append((seed, math.dist(after.disk.center, target), math.dist(after.bar.center, m.bar.center)))
        if len(results) == 10:
            break
    assert len(results) == 10, "not enough clean scenes with the bar clear of the flexible band"
    assert all(moved < 0.5 for _, _, moved in results), f"(seed, disk error, bar moved): {results}"
    assert sum(err <= 1.5 for _, err, _ in results) >= 9, f"(seed, disk error, bar moved): {results}"


def test_two_handles_on_two_objects_both_arrive(G):
    H = G.img_resolution
    rng = np.random.default_rng(11)
    for seed, m in clean_scenes(G, 20):
        t1 = feasible_target(rng, m, H, 5.0, 7.0)
        if t1 is None:
            continue
        # move the bar in a direction that keeps it clear of the disk's new place and the border
        bar = m.bar
        hx, hy = bar.half_extent
        best = None
        for _ in range(100):
            ang = rng.uniform(0, 2 * math.pi)
            tx, ty = bar.center[0] + 6 * math.cos(ang), bar.center[1] + 6 * math.sin(ang)
            mx, my = hx + 3 * H / 64, hy + 3 * H / 64
            dx = max(abs(t1[0] - tx) - hx, 0)
            dy = max(abs(t1[1] - ty) - hy, 0)
            if mx - 0.5 <= tx <= H - 0.5 - mx and my - 0.5 <= ty <= H - 0.5 - my and \
                    math.hypot(dx, dy) >= m.disk.size + 5 * H / 64:
                best = (tx, ty)
                break
        if best is not None:
            break
    assert best is not None
    s, last = drag(G, seed, [(m.disk.center, t1), (bar.center, best)])
    after = toy.measure(s.image())
    assert after.disk is not None and after.bar is not None, after.problems
    e_disk = math.dist(after.disk.center, t1)
    e_bar = math.dist(after.bar.center, best)
    assert e_disk <= 2.0 and e_bar <= 2.0, (e_disk, e_bar, last)


def some_object(G, seed=0):
    """Centre of the largest object the oracle sees in sample ``seed`` (image centre if none).

    The exactness tests below need a point on an object, not a clean scene.
    """
    with torch.no_grad():
        m = toy.measure(G.synthesis(G.ws_from_seed(seed, psi=0.7)))
    if m.objects:
        return max(m.objects, key=lambda o: o.area).center
    c = (G.img_resolution - 1) / 2
    return (c, c)


def test_handle_already_at_target_takes_no_step_and_leaves_the_image(G):
    seed, c = 0, some_object(G)
    s = DragSession(G, seed=seed, psi=0.7)
    before = np.asarray(s.image())
    s.add_point(handle=c, target=c)
    results = list(s.run(max_steps=50))
    assert len(results) == 1 and results[0].step == 0 and results[0].reached
    assert np.array_equal(np.asarray(s.image()), before)


def test_save_load_undo_redo_are_exact_on_the_toy_model(G, tmp_path):
    seed, c = 1, some_object(G, 1)
    H = G.img_resolution
    s = DragSession(G, seed=seed, psi=0.7)
    s.add_point(handle=c, target=(min(c[0] + 4, H - 1), c[1]))
    list(s.run(max_steps=10))
    s.add_point(handle=(H / 4, H / 4), target=(H / 4, H / 4 + 3))
    list(s.run(max_steps=10))
    after = (s.latent, np.asarray(s.image()))
    t = DragSession.load(s.save(tmp_path / "toy.dragkit.json"), G)
    assert torch.equal(t.latent, after[0]) and np.array_equal(np.asarray(t.image()), after[1])
    assert t.undo() and t.undo() and torch.equal(t.latent, s.w0)
    assert np.array_equal(np.asarray(t.image()), np.asarray(DragSession(G, seed=seed, psi=0.7).image()))
    assert t.redo() and t.redo()
    assert torch.equal(t.latent, after[0]) and np.array_equal(np.asarray(t.image()), after[1])
