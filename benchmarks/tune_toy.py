"""Choose the drag defaults for small models by measurement on the toy world.

Each configuration drags the disk of ``--drags`` toy scenes (the model's own
samples, seeds ``--first-seed``... that the oracle reads cleanly; seeds kept
apart from the tests' 0..99) by 6-12 px in a seeded random direction that
keeps the disk inside the world's limits, then asks the oracle
(:func:`dragkit.train.toy.measure`) where the disk and the bar ended up.

Printed per configuration: success rate (oracle disk centre within 1.5 px of
the target), mean and worst final error over the drags the oracle could
still read, how many it could not ("lost": the object broke up or
vanished), the median distance the bar (which nobody dragged) moved,
median steps, milliseconds per step, and the share of final images the
oracle reads as clean scenes.  The sweep varies one
setting at a time around a base configuration.

Usage::

    python benchmarks/tune_toy.py                      # bundled toy model
    python benchmarks/tune_toy.py --checkpoint runs/toy/checkpoint.pt   # a training snapshot (read only)
    python benchmarks/tune_toy.py --only lr --drags 30
    python benchmarks/tune_toy.py --base lr=0.008,r1=4    # sweep around another base
    python benchmarks/tune_toy.py --only r1=5:6:8,lr       # chosen values of r1, all of lr
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

import numpy as np
import torch

from dragkit.drag.session import DragOptions, DragSession
from dragkit.train.toy import measure

BASE = dict(feature_block=16, r1=8.0, r2=6, lr=0.004, tracking="l1", layers=6, space="w+", stop_distance=1.0,
            lambda_mask=5.0)
SWEEP = {
    "feature_block": [8, 16, 32, 64],
    "r1": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0],
    "r2": [3, 4, 6, 9, 12],
    "lr": [0.001, 0.002, 0.004, 0.008, 0.016, 0.032],
    "tracking": ["l1", "l2"],
    "layers": [2, 3, 4, 6, 8],
    "space": ["w+", "w"],
    "stop_distance": [0.75, 1.0, 1.5],
    "lambda_mask": [1.0, 2.0, 5.0, 10.0, 20.0],
}


def load_generator(args):
    if args.checkpoint:
        from dragkit.nets import Generator
        from dragkit.train.checkpoint import load_checkpoint

        ck = load_checkpoint(args.checkpoint)
        G = Generator(**ck["G_init_kwargs"])
        G.load_state_dict(ck["G_ema"])
        print(f"G_ema of {args.checkpoint} at {ck['cur_nimg'] / 1000:.0f} kimg")
    else:
        from dragkit import load_model

        G = load_model(args.model)
    G.eval()
    for p in G.parameters():
        p.requires_grad_(False)
    return G


def _two_blobs(m):
    """Proxy reading for an under-trained model: exactly two blobs, (dragged, other) by area."""
    if len(m.objects) != 2:
        return None
    a, b = sorted(m.objects, key=lambda o: -o.area)
    return a, b


def drag_problems(G, count: int, first_seed: int, psi: float = 0.7, rng_seed: int = 1234, proxy: bool = False,
                  mask_margin: float | None = None):
    """``count`` (seed, disk centre, target, bar centre, colours, disk radius) with a clean oracle reading.

    ``proxy``: accept any scene with exactly two blobs (shapes need not be
    clean); the larger blob plays the disk, the other the bar.
    ``mask_margin``: only targets whose flexible band (:func:`flexible_band`)
    keeps 1 px clear of the bar's box.
    """
    H = G.img_resolution
    ys, xs = np.mgrid[0:H, 0:H]
    rng = np.random.default_rng(rng_seed)
    out = []
    seed = first_seed
    while len(out) < count and seed < first_seed + 50 * count:
        with torch.no_grad():
            img = G.synthesis(G.ws_from_seed(seed, psi=psi))
        m = measure(img)
        seed += 1
        if proxy:
            pair = _two_blobs(m)
            if pair is None:
                continue
            disk, sq = pair
        elif not m.ok:
            continue
        else:
            disk, sq = m.disk, m.bar
        hx, hy = sq.half_extent
        for _ in range(100):
            ang = rng.uniform(0, 2 * math.pi)
            length = rng.uniform(6, 12)
            tx = disk.center[0] + length * math.cos(ang)
            ty = disk.center[1] + length * math.sin(ang)
            margin = disk.size + 3 * H / 64
            inside = margin - 0.5 <= tx <= H - 0.5 - margin and margin - 0.5 <= ty <= H - 0.5 - margin
            dx = max(abs(tx - sq.center[0]) - hx, 0)
            dy = max(abs(ty - sq.center[1]) - hy, 0)
            if inside and mask_margin is not None:
                band = flexible_band(H, disk.center, disk.size, (tx, ty), mask_margin)
                box = (np.abs(xs - sq.center[0]) <= hx + 1) & (np.abs(ys - sq.center[1]) <= hy + 1)
                inside = not (band & box).any()
            if inside and math.hypot(dx, dy) >= disk.size + 4 * H / 64:
                out.append((seed - 1, disk.center, (tx, ty), sq.center, disk.color, sq.color, disk.size))
                break
    return out


def _by_colour(m, colour):
    if not m.objects:
        return None
    return min(m.objects, key=lambda o: sum((a - b) ** 2 for a, b in zip(o.color, colour)))


def flexible_band(H: int, centre, radius: float, target, margin: float) -> np.ndarray:
    """Mask: the pixels within ``radius + margin`` of the segment from ``centre`` to ``target``."""
    (cx, cy) = centre
    ys, xs = np.mgrid[0:H, 0:H]
    px, py = xs - cx, ys - cy
    vx, vy = target[0] - cx, target[1] - cy
    u = np.clip((px * vx + py * vy) / max(vx * vx + vy * vy, 1e-12), 0, 1)
    return np.hypot(px - u * vx, py - u * vy) <= radius + margin


def evaluate(G, problems, opts: DragOptions, max_steps: int, proxy: bool = False, mask_margin: float | None = None):
    errs, moved_sq, steps, secs, ok_reads, swapped = [], [], [], [], 0, 0
    for seed, centre, target, sq0, col_a, col_b, radius in problems:
        s = DragSession(G, seed=seed, psi=0.7, options=opts)
        s.add_point(handle=centre, target=target)
        if mask_margin is not None:
            s.set_mask(flexible_band(G.img_resolution, centre, radius, target, mask_margin))
        t0 = time.perf_counter()
        last = None
        for last in s.run(max_steps=max_steps):
            pass
        dt = time.perf_counter() - t0
        m = measure(s.image())
        steps.append(last.step)
        secs.append(dt / max(last.step, 1))
        if proxy:
            a, b = _by_colour(m, col_a), _by_colour(m, col_b)
            if a is None or b is None or a is b:
                errs.append(float("inf"))
                moved_sq.append(float("inf"))
                continue
            ok_reads += len(m.objects) == 2
            errs.append(math.dist(a.center, target))
            moved_sq.append(math.dist(b.center, sq0))
            continue
        if m.disk is None or m.bar is None:
            errs.append(float("inf"))
            moved_sq.append(float("inf"))
            continue
        ok_reads += m.ok
        # the generator exchanged the shapes: the object that went to the target is now the bar
        swapped += math.dist(m.bar.center, target) < math.dist(m.disk.center, target)
        errs.append(math.dist(m.disk.center, target))
        moved_sq.append(math.dist(m.bar.center, sq0))
    finite = [e for e in errs if math.isfinite(e)]
    sq_finite = [e for e in moved_sq if math.isfinite(e)]
    return {
        "success": sum(e <= 1.5 for e in errs) / len(errs),
        "mean_err": statistics.mean(finite) if finite else float("inf"),
        "worst_err": max(finite) if finite else float("inf"),
        "lost": len(errs) - len(finite),
        "bar_moved": statistics.median(sq_finite) if sq_finite else float("inf"),
        "steps": statistics.median(steps),
        "sec_per_step": statistics.median(secs),
        "clean": ok_reads / len(errs),
        "swapped": swapped,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="toy")
    p.add_argument("--checkpoint", default=None, help="use G_ema of a training checkpoint instead")
    p.add_argument("--drags", type=int, default=20)
    p.add_argument("--first-seed", type=int, default=1000)
    p.add_argument("--max-steps", type=int, default=200)
    p.add_argument("--only", default=None, help="comma list of settings to sweep (default all)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--base", default=None, help="override base settings, e.g. lr=0.008,r1=4")
    p.add_argument("--mask", type=float, default=None, metavar="MARGIN",
                   help="set a mask flexible only within disk radius + MARGIN px of the path from the disk "
                        "to its target (drags whose bar reaches into that band are left out)")
    p.add_argument("--proxy", action="store_true",
                   help="for an under-trained model: score blob centroids (two blobs, matched by colour) "
                        "instead of requiring clean disk/bar readings")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    base = dict(BASE)
    for item in filter(None, (args.base or "").split(",")):
        key, _, value = item.partition("=")
        if key not in BASE:
            p.error(f"--base: unknown setting {key!r} (one of {', '.join(BASE)})")
        base[key] = type(BASE[key])(value)
    G = load_generator(args)
    problems = drag_problems(G, args.drags, args.first_seed, proxy=args.proxy, mask_margin=args.mask)
    if not problems:
        print("the oracle cannot read any of this model's samples (is it trained?)")
        return 1
    what = "the larger blob (proxy: two-blob scenes, centroids matched by colour)" if args.proxy else "the disk"
    print(f"{len(problems)} drags of {what} by 6-12 px; scenes from seeds {args.first_seed}+; "
          f"max {args.max_steps} steps; success = oracle error <= 1.5 px; {G.img_resolution} px model"
          + (f"; mask flexible within disk radius + {args.mask:g} px of the path" if args.mask is not None else ""))
    print(f"{'setting':22} {'success':>8} {'mean err':>9} {'worst':>7} {'lost':>5} {'bar moved':>10} "
          f"{'steps':>6} {'ms/step':>8} {'clean':>6} {'swapped':>8}")
    sweep = SWEEP
    if args.only:
        sweep = {}
        for item in args.only.split(","):
            name, _, values = item.partition("=")
            if name not in SWEEP:
                p.error(f"--only: unknown setting {name!r} (one of {', '.join(SWEEP)})")
            sweep[name] = [type(BASE[name])(v) for v in values.split(":")] if values else SWEEP[name]
    done = {}
    for name, values in sweep.items():
        for v in values:
            if name == "feature_block" and v not in G.synthesis.block_resolutions:
                continue
            cfg = dict(base, **{name: v})
            key = tuple(sorted(cfg.items()))
            label = f"{name}={v}" + (" (base)" if v == base[name] else "")
            if key not in done:
                done[key] = evaluate(G, problems, DragOptions(**cfg), args.max_steps, proxy=args.proxy,
                                     mask_margin=args.mask)
            r = done[key]
            print(f"{label:22} {r['success']:8.0%} {r['mean_err']:9.2f} {r['worst_err']:7.2f} {r['lost']:5d} "
                  f"{r['bar_moved']:10.2f} {r['steps']:6.0f} {1000 * r['sec_per_step']:8.1f} {r['clean']:6.0%} {r['swapped']:8d}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
