"""``toy``: ground truth on the toy world, scored by its oracle (:func:`dragkit.train.toy.measure`).

Problem ``i`` (deterministic from ``first_seed`` and ``i``): a sample of the
model (psi 0.7) that the oracle reads as a clean disk-and-bar scene, and a
*feasible* drag of ``handles[i % len(handles)]`` handles:

* 1 handle: the disk's centre;
* 2 handles: the disk's centre and the bar's centre;
* 3 handles: the disk's centre, a second point of the disk (half its radius
  from the centre, random side) moved by the same displacement, and the
  bar's centre.

Each dragged object moves 6-12 px (at 32 px; scaled with the resolution) in
a seeded random direction such that the final scene still obeys the world's
rules (inside the margin, clear of the other object), as in the ground-truth
tests (``tests/test_drag_toy.py``).  With the mask, the flexible region is a
band around each dragged object's path: the pixels within ``mask_margin`` px
of the object swept from its start to its target (a capsule of radius
``radius + margin`` for the disk, a swept box for the bar); for one handle
the band keeps 1 px clear of the bar, which is then a *masked object* whose
motion is scored.  Every problem is dragged with and without the mask (the
same drag), by every variant.

Scores, from the oracle's reading of the final image: the error of each
dragged object (distance of its measured centre to where its centre was
sent), the drag's error = the largest of them; ``lost`` when the oracle no
longer finds a dragged object; ``swapped`` when the object nearest the
disk's target is the bar (the generator exchanged the shapes, see
docs/drag.md); the motion of the object nobody dragged; the mean pixel
change (0-255) outside the flexible region.  *Identity* (:func:`identity`):
whether each dragged object is still itself after the drag - the object the
oracle finds nearest its target has the same shape and the same colour
(within :data:`COLOR_TOLERANCE`) as the object had before - and how far its
colour moved.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ...drag.options import image_size
from ...errors import SpecError
from .. import metrics as M
from ..engines import run_drag
from .common import DRAG_METRIC_DOCS, SuiteBase, aggregate_drag, record

NAME = "toy"
#: Largest change of a dragged object's colour (RGB in [0, 1], Euclidean) that keeps its identity.
#: The world draws colours with saturation 0.65-1 and value 0.8-1 (``dragkit.train.toy``), so two
#: objects' colours are usually far further apart; the oracle's own colour noise is ~0.01.
COLOR_TOLERANCE = 0.15


def identity(before: Any, after: Any, shape: str, target) -> tuple[bool, float | None]:
    """Did the dragged object keep its identity?  ``(kept, colour change)``.

    Args:
        before, after: the oracle's readings (:class:`dragkit.train.toy.ToyMeasurement`) of the
            images before and after the drag.
        shape: ``'disk'`` or ``'bar'``: the dragged object.
        target: ``(x, y)`` where its centre was sent.

    The object after the drag is the one the oracle measured (any blob, plausible or not) nearest
    ``target``; the identity is kept when it is a plausible object of the same ``shape`` whose colour
    is within :data:`COLOR_TOLERANCE` of the object's colour before.  The colour change is None when
    nothing was found.
    """
    old = before.get(shape)
    if old is None or not after.objects:
        return False, None
    new = min(after.objects, key=lambda o: math.dist(o.center, target))
    change = float(np.linalg.norm(np.asarray(new.color) - np.asarray(old.color)))
    return bool(new.shape == shape and new.plausible and change <= COLOR_TOLERANCE), change


def scene_seed(first_seed: int, index: int, attempt: int) -> int:
    """The model seed of problem ``index``'s ``attempt``-th candidate scene (blocks of 1000 per problem)."""
    return int(first_seed) + 1000 * int(index) + int(attempt)


def flexible_band(H: int, centre, half: tuple[float, float], target, margin: float, round_shape: bool) -> np.ndarray:
    """``(H, H)`` bool: pixels within ``margin`` of an object swept from ``centre`` to ``target``.

    ``round_shape``: a disk of radius ``half[0]`` (a capsule); else an
    axis-aligned box of half sizes ``half`` (a swept box).
    """
    ys, xs = np.mgrid[0:H, 0:H].astype(np.float64)
    (cx, cy), (tx, ty) = centre, target
    if round_shape:
        px, py = xs - cx, ys - cy
        vx, vy = tx - cx, ty - cy
        u = np.clip((px * vx + py * vy) / max(vx * vx + vy * vy, 1e-12), 0, 1)
        return np.hypot(px - u * vx, py - u * vy) <= half[0] + margin
    out = np.zeros((H, H), dtype=bool)
    n = max(2, int(math.ceil(math.hypot(tx - cx, ty - cy) / 0.25)) + 1)
    for u in np.linspace(0.0, 1.0, n):
        x, y = cx + u * (tx - cx), cy + u * (ty - cy)
        out |= (np.abs(xs - x) <= half[0] + margin) & (np.abs(ys - y) <= half[1] + margin)
    return out


def _inside(c, half, H: float) -> bool:
    m = 3 * H / 64
    return (half[0] + m - 0.5 <= c[0] <= H - 0.5 - half[0] - m) and (half[1] + m - 0.5 <= c[1] <= H - 0.5 - half[1] - m)


def _clear(disk_c, radius: float, bar_c, bar_half, H: float) -> bool:
    dx = max(abs(disk_c[0] - bar_c[0]) - bar_half[0], 0.0)
    dy = max(abs(disk_c[1] - bar_c[1]) - bar_half[1], 0.0)
    return math.hypot(dx, dy) >= radius + 4 * H / 64


def make_problem(G: Any, params: dict[str, Any], index: int) -> dict[str, Any]:
    """Problem ``index`` (see the module docstring). Raises ``SpecError`` if no sample of the model is a clean scene."""
    from ...train.toy import measure

    H = int(G.img_resolution)
    counts = params["handles"]
    k = counts[index % len(counts)]
    scale = H / 32.0
    lo, hi = 6.0 * scale, 12.0 * scale
    margin = params["mask_margin"] * scale
    ys, xs = np.mgrid[0:H, 0:H]
    for attempt in range(params["max_attempts"]):
        seed = scene_seed(params["first_seed"], index, attempt)
        with torch.no_grad():
            m = measure(G.synthesis(G.ws_from_seed(seed, psi=params["psi"]).to(next(G.parameters()).device)))
        if not m.ok:
            continue
        disk, bar = m.disk, m.bar
        rng = np.random.default_rng([int(params["first_seed"]), int(index), int(attempt)])
        dh = (disk.size, disk.size)
        bh = bar.half_extent
        for _ in range(100):
            a, length = rng.uniform(0, 2 * math.pi), rng.uniform(lo, hi)
            td = (disk.center[0] + length * math.cos(a), disk.center[1] + length * math.sin(a))
            if k >= 2:
                a2, l2 = rng.uniform(0, 2 * math.pi), rng.uniform(lo, hi)
                tb = (bar.center[0] + l2 * math.cos(a2), bar.center[1] + l2 * math.sin(a2))
            else:
                tb = bar.center
            if not (_inside(td, dh, H) and _inside(tb, bh, H) and _clear(td, disk.size, tb, bh, H)):
                continue
            band = flexible_band(H, disk.center, dh, td, margin, True)
            if k == 1:
                box = (np.abs(xs - bar.center[0]) <= bh[0] + 1) & (np.abs(ys - bar.center[1]) <= bh[1] + 1)
                if (band & box).any():
                    continue
            else:
                band = band | flexible_band(H, bar.center, bh, tb, margin, False)
            handles = [disk.center]
            targets = [td]
            if k == 3:
                a3 = rng.uniform(0, 2 * math.pi)
                off = (0.5 * disk.size * math.cos(a3), 0.5 * disk.size * math.sin(a3))
                handles.append((disk.center[0] + off[0], disk.center[1] + off[1]))
                targets.append((td[0] + off[0], td[1] + off[1]))
            if k >= 2:
                handles.append(bar.center)
                targets.append(tb)
            return {
                "seed": seed, "handles": [list(map(float, h)) for h in handles],
                "targets": [list(map(float, t)) for t in targets],
                "disk": {"center": list(disk.center), "size": disk.size, "target": list(td)},
                "bar": {"center": list(bar.center), "size": bar.size, "target": list(tb), "moved": k >= 2},
                "mask_pixels": int(band.sum()), "_mask": band,
            }
    raise SpecError(f"toy suite: none of {params['max_attempts']} samples of this model for problem {index} is a "
                    "clean disk-and-bar scene with a feasible drag (is it the toy model, and trained?)")


class ToySuite(SuiteBase):
    name = NAME
    default_model = "toy"
    default_max_steps = 200
    columns = [
        ("n", "drags", "d"), ("err_mean", "mean err px", ".2f"), ("err_median", "median err px", ".2f"),
        ("within_1px", "<= 1 px", ".0%"), ("within_1_5px", "<= 1.5 px", ".0%"), ("within_2px", "<= 2 px", ".0%"),
        ("identity", "identity kept", ".0%"), ("color_change", "colour change", ".3f"), ("swapped", "swapped", "d"),
        ("lost", "lost", "d"), ("err_mean_unswapped", "err px w/o swaps", ".2f"),
        ("still_moved", "undragged moved px", ".2f"), ("outside_change", "outside change", ".2f"),
        ("clean", "clean scene", ".0%"), ("reached", "reached", ".0%"), ("steps_mean", "steps", ".1f"),
        ("steps_to_arrive", "steps to arrive", ".1f"),
    ]
    timing_columns = [("seconds_to_arrive", "s to arrive", ".2f"), ("seconds_per_step", "ms/step", "ms")]
    metric_docs = {
        "n": "drags in the group",
        "err_mean": "mean over the drags the oracle could read of the drag error: the largest distance (px) of a "
                    "dragged object's measured centre to where its centre was sent",
        "err_median": "median of the same",
        "within_1px": "share of all drags with error <= 1 px (lost drags count as misses)",
        "within_1_5px": "share of all drags with error <= 1.5 px (the ground-truth tests' bar)",
        "within_2px": "share of all drags with error <= 2 px",
        "identity": "share of drags after which every dragged object is still itself: the object nearest its "
                    "target has its shape and its colour (within 0.15 RGB) from before the drag",
        "color_change": "mean change of the dragged objects' colour (RGB in [0, 1], Euclidean): before vs the object "
                        "nearest the target after",
        "swapped": "drags where the object nearest the disk's target is the bar (the model exchanged the shapes)",
        "lost": "drags after which the oracle no longer finds a dragged object",
        "err_mean_unswapped": "err_mean over readable drags that did not swap",
        "still_moved": "mean distance (px) the object nobody dragged moved (1-handle drags; masked object with the mask)",
        "outside_change": "mean absolute change (0-255) of the pixels outside the flexible region (mask on)",
        "clean": "share of final images the oracle reads as a clean scene of the world (one plausible disk, one "
                 "plausible bar, nothing else): the toy world's realism",
        "steps_to_arrive": "mean steps of the drags that reached",
        "seconds_to_arrive": "mean seconds of the drags that reached",
        **DRAG_METRIC_DOCS,
    }

    @staticmethod
    def params(args: Any) -> dict[str, Any]:
        counts = [int(x) for x in (args.handles or "1,2,3").split(",") if x.strip()]
        if not counts or any(c not in (1, 2, 3) for c in counts):
            raise SpecError(f"--handles for the toy suite: 1, 2 and/or 3, got {args.handles!r}")
        if not (args.mask_margin >= 0):
            raise SpecError(f"--mask-margin must be >= 0, got {args.mask_margin}")
        return {"handles": counts, "mask": args.mask, "mask_margin": float(args.mask_margin),
                "first_seed": int(args.first_seed if args.first_seed is not None else 1000), "psi": float(args.psi),
                "max_attempts": 50}

    @staticmethod
    def setup(G: Any, params: dict[str, Any]) -> Any:
        """Refuses a non-square model: the toy world and its oracle are square (``SpecError``)."""
        H, W = image_size(G)
        if H != W:
            raise SpecError(f"the toy suite needs a model of the (square) toy world; this one makes {W}x{H} "
                            "(width x height) images: use the paired suite")
        return None

    @staticmethod
    def jobs(params: dict[str, Any], n: int) -> list[tuple[int, dict[str, Any]]]:
        masks = {"both": [False, True], "on": [True], "off": [False]}[params["mask"]]
        counts = params["handles"]
        return [(i, {"handles": counts[i % len(counts)], "mask": m}) for m in masks for i in range(n)]

    @staticmethod
    def group(condition: dict[str, Any]) -> dict[str, Any]:
        return {"handles": condition["handles"], "mask": condition["mask"]}

    @staticmethod
    def run(G: Any, state: Any, params: dict[str, Any], index: int, condition: dict[str, Any], variant: Any,
            max_steps: int, images: bool) -> dict[str, Any]:
        from ...train.toy import measure
        from ...utils import tensor_to_uint8

        prob = make_problem(G, params, index)
        band = prob.pop("_mask")
        masked = bool(condition["mask"])
        dev = next(G.parameters()).device
        ws = G.ws_from_seed(prob["seed"], psi=params["psi"]).to(dev)
        with torch.no_grad():
            before_img = G.synthesis(ws)
        before = tensor_to_uint8(before_img)
        m0 = measure(before_img)
        out = run_drag(G, ws, prob["handles"], prob["targets"], variant.drag_options(),
                       mask=band if masked else None, max_steps=max_steps, engine=variant.engine)
        after = tensor_to_uint8(out.image)
        m = measure(out.image)
        td, tb = prob["disk"]["target"], prob["bar"]["target"]
        errs = []
        errs.append(math.dist(m.disk.center, td) if m.disk is not None else math.inf)
        if prob["bar"]["moved"]:
            errs.append(math.dist(m.bar.center, tb) if m.bar is not None else math.inf)
        err = max(errs)
        lost = not math.isfinite(err)
        swapped = bool(m.disk is not None and m.bar is not None
                       and math.dist(m.bar.center, td) < math.dist(m.disk.center, td))
        kept = [identity(m0, m, "disk", td)]
        if prob["bar"]["moved"]:
            kept.append(identity(m0, m, "bar", tb))
        changes = [c for _, c in kept if c is not None]
        still = None
        if not prob["bar"]["moved"] and m.bar is not None:
            still = math.dist(m.bar.center, prob["bar"]["center"])
        outside = None
        if masked:
            fixed = ~band
            outside = float(np.abs(after.astype(np.int16) - before.astype(np.int16))[fixed].mean())
        scores = {
            "err": None if lost else round(err, 6), "lost": lost, "swapped": swapped,
            "identity": all(k for k, _ in kept),
            "color_change": round(max(changes), 6) if changes else None,
            "still_moved": None if still is None else round(still, 6),
            "outside_change": None if outside is None else round(outside, 6),
            "clean": bool(m.ok),
        }
        return record(prob, scores, out, {"before": before, "after": after} if images else None)

    @staticmethod
    def aggregate(results: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
        ms = [r["metrics"] for r in results]
        errs = [m["err"] for m in ms]
        reached = [r for r in results if r["metrics"]["reached"]]
        return aggregate_drag(results, {
            "err_mean": M.mean(errs), "err_median": M.median(errs),
            "within_1px": M.share([e is not None and e <= 1.0 for e in errs]),
            "within_1_5px": M.share([e is not None and e <= 1.5 for e in errs]),
            "within_2px": M.share([e is not None and e <= 2.0 for e in errs]),
            "identity": M.share([bool(m.get("identity")) for m in ms]),
            "color_change": M.mean(m.get("color_change") for m in ms),
            "swapped": sum(m["swapped"] for m in ms), "lost": sum(m["lost"] for m in ms),
            "err_mean_unswapped": M.mean(m["err"] for m in ms if not m["swapped"]),
            "still_moved": M.mean(m["still_moved"] for m in ms),
            "outside_change": M.mean(m["outside_change"] for m in ms),
            "clean": M.share([m["clean"] for m in ms]),
            "steps_to_arrive": M.mean(r["metrics"]["steps"] for r in reached),
        }, {"seconds_to_arrive": M.mean(r["timing"]["seconds"] for r in reached)})

    @staticmethod
    def error_values(results: list[dict[str, Any]]) -> tuple[str, list[float]]:
        """What the error-distribution plot shows."""
        return "final oracle error (px)", [r["metrics"]["err"] for r in results if r["metrics"]["err"] is not None]

    @staticmethod
    def baseline_values(results: list[dict[str, Any]]) -> list[float]:
        """The same error with no edit: the length of each drag."""
        out = []
        for r in results:
            p = r["problem"]
            lengths = [math.dist(p["disk"]["center"], p["disk"]["target"])]
            if p["bar"]["moved"]:
                lengths.append(math.dist(p["bar"]["center"], p["bar"]["target"]))
            out.append(max(lengths))
        return out


SUITE = ToySuite()
