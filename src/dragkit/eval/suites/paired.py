"""``paired``: the paper's paired image reconstruction (Pan et al. 2023, Sec. 4.2).

Problem ``i``: ``w1`` = W+ codes of seed ``s1`` (psi 0.7).  **The
perturbation**: ``w2`` = ``w1`` with its first ``L`` codes (the ones a
default drag optimises, ``DragOptions().resolved(G).layers`` = ``min(6,
num_ws)``, so ``I2`` is reachable) moved a
fraction ``perturb`` (default 0.3) of the way towards those of another
sample ``s2`` (psi 0.7): ``w2[:L] = w1[:L] + perturb * (w_s2[:L] - w1[:L])``;
the other codes are unchanged.  ``I1 = G(w1)``, ``I2 = G(w2)``.

Optical flow ``I1 -> I2`` by OpenCV's DIS (``opencv-python-headless``,
preset *medium*), computed on both images up-sampled (bicubic) to at least
256 px and scaled back, forward and backward; pixels failing the
forward-backward check (``|f(p) + b(p + f(p))|^2 > 0.01 (|f|^2 + |b|^2) + 0.5``)
or whose target leaves the image are dropped, and ``pairs`` (32) of the
rest are drawn uniformly (seeded) as handle -> target = ``p -> p + f(p)``.
I1 is dragged for at most 100 steps (stop rule: 2 px above 5 points), and
the result R is compared with I2: ``MSE x 1e2`` (RGB in [0, 1], the paper's
unit) and SSIM (11 x 11 Gaussian window), next to the no-edit baseline
(I1 against I2).  LPIPS, the paper's second score, needs network weights
that are not available here.

Any generator: square or ``H x W`` StyleGAN2 (StyleGAN-Human's ``H x H/2``:
the flow, the pairs and the scores are per axis), StyleGAN3.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ...drag.options import DragOptions
from ...errors import DragkitError, SpecError
from .. import metrics as M
from ..engines import run_drag
from .common import DRAG_METRIC_DOCS, SuiteBase, aggregate_drag, record

NAME = "paired"


def _cv2():
    try:
        import cv2
    except ImportError:
        raise DragkitError("the paired suite needs OpenCV: pip install 'dragkit[eval]' (opencv-python-headless)") from None
    return cv2


def optical_flow(i1: np.ndarray, i2: np.ndarray, min_size: int = 256) -> np.ndarray:
    """Dense flow ``(H, W, 2)`` ``[dx, dy]`` px from ``i1`` to ``i2`` (``(H, W, 3)`` uint8), DIS medium.

    Both images are up-sampled by an integer factor to at least ``min_size``
    px first (DIS's 8-px patches need room), the flow is area-averaged back
    and divided by the factor.
    """
    cv2 = _cv2()
    h, w = i1.shape[:2]
    f = max(1, math.ceil(min_size / min(h, w)))
    g1 = cv2.cvtColor(np.ascontiguousarray(i1), cv2.COLOR_RGB2GRAY)
    g2 = cv2.cvtColor(np.ascontiguousarray(i2), cv2.COLOR_RGB2GRAY)
    if f > 1:
        g1 = cv2.resize(g1, (w * f, h * f), interpolation=cv2.INTER_CUBIC)
        g2 = cv2.resize(g2, (w * f, h * f), interpolation=cv2.INTER_CUBIC)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flow = dis.calc(g1, g2, None)
    if f > 1:
        flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_AREA) / f
    return flow.astype(np.float64)


def sample_pairs(fwd: np.ndarray, bwd: np.ndarray, count: int, rng: np.random.Generator) -> tuple[list, list, int]:
    """``count`` handle -> target pairs from a flow, forward-backward consistent, inside the image.

    Returns ``(handles, targets, valid_pixels)``; handles are integer pixels ``[x, y]``.
    """
    h, w = fwd.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    tx, ty = xs + fwd[..., 0], ys + fwd[..., 1]
    ix = np.clip(np.rint(tx), 0, w - 1).astype(int)
    iy = np.clip(np.rint(ty), 0, h - 1).astype(int)
    b = bwd[iy, ix]
    err = ((fwd + b) ** 2).sum(-1)
    ok = err <= 0.01 * ((fwd ** 2).sum(-1) + (b ** 2).sum(-1)) + 0.5
    ok &= (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    idx = np.flatnonzero(ok.reshape(-1))
    take = idx if len(idx) <= count else rng.choice(idx, size=count, replace=False)
    take = np.sort(take)
    handles = [[float(i % w), float(i // w)] for i in take]
    targets = [[float(tx.reshape(-1)[i]), float(ty.reshape(-1)[i])] for i in take]
    return handles, targets, int(len(idx))


def make_problem(G: Any, params: dict[str, Any], index: int) -> dict[str, Any]:
    """Problem ``index``: seeds, the perturbed codes' images and the sampled flow pairs."""
    from ...utils import tensor_to_uint8

    dev = next(G.parameters()).device
    s1 = int(params["first_seed"]) + 2 * int(index)
    s2 = s1 + 1
    w1 = G.ws_from_seed(s1, psi=params["psi"]).to(dev)
    wo = G.ws_from_seed(s2, psi=params["psi"]).to(dev)
    L = DragOptions().resolved(G).layers
    w2 = w1.clone()
    w2[:, :L] = w1[:, :L] + params["perturb"] * (wo[:, :L] - w1[:, :L])
    with torch.no_grad():
        i1 = tensor_to_uint8(G.synthesis(w1))
        i2 = tensor_to_uint8(G.synthesis(w2))
    fwd = optical_flow(i1, i2)
    bwd = optical_flow(i2, i1)
    rng = np.random.default_rng([int(params["first_seed"]), int(index)])
    handles, targets, valid = sample_pairs(fwd, bwd, params["pairs"], rng)
    if not handles:
        raise SpecError(f"paired suite: no consistent flow pixel in problem {index}")
    return {"seed": s1, "other_seed": s2, "perturb": params["perturb"], "layers": L, "handles": handles,
            "targets": targets, "valid_flow_pixels": valid,
            "flow_px": float(np.mean([math.dist(h, t) for h, t in zip(handles, targets)])),
            "_w1": w1, "_i1": i1, "_i2": i2}


class PairedSuite(SuiteBase):
    name = NAME
    default_model = "toy"
    default_max_steps = 100
    columns = [
        ("n", "edits", "d"), ("mse", "MSE x1e2", ".3f"), ("mse_noedit", "no edit MSE x1e2", ".3f"),
        ("ssim", "SSIM", ".3f"), ("ssim_noedit", "no edit SSIM", ".3f"), ("better", "MSE below no edit", ".0%"),
        ("flow_px", "flow px", ".2f"), ("reached", "reached", ".0%"), ("steps_mean", "steps", ".1f"),
    ]
    metric_docs = {
        "n": "edits",
        "mse": "mean over edits of MSE(result, I2) x 1e2, RGB in [0, 1]",
        "mse_noedit": "mean of MSE(I1, I2) x 1e2 (no edit)",
        "ssim": "mean SSIM(result, I2)", "ssim_noedit": "mean SSIM(I1, I2)",
        "better": "share of edits whose MSE is below their no-edit MSE",
        "flow_px": "mean length of the sampled flow vectors (px)",
        **DRAG_METRIC_DOCS,
    }
    paper = {
        "caption": "Paper, Table 2 (StyleGAN2 models of those data sets; MSE x 1e2 and LPIPS x 10; 32 flow pairs, "
                   "<= 100 steps; the paper does not state its perturbation)",
        "columns": ["Lion", "LSUN Cat", "Dog", "LSUN Car"],
        "rows": {"DragGAN (MSE)": [0.66, 1.04, 0.48, 1.67], "UserControllableLT (MSE)": [1.82, 1.25, 1.23, 1.98],
                 "DragGAN (LPIPS)": [0.72, 0.82, 0.44, 0.74], "UserControllableLT (LPIPS)": [1.14, 0.87, 0.92, 0.85]},
    }

    @staticmethod
    def params(args: Any) -> dict[str, Any]:
        if not (0 < args.perturb <= 1):
            raise SpecError(f"--perturb must be in (0, 1], got {args.perturb}")
        if args.pairs < 1:
            raise SpecError(f"--pairs must be >= 1, got {args.pairs}")
        return {"perturb": float(args.perturb), "pairs": int(args.pairs),
                "first_seed": int(args.first_seed if args.first_seed is not None else 5000), "psi": float(args.psi)}

    @staticmethod
    def setup(G: Any, params: dict[str, Any]) -> Any:
        _cv2()
        return None

    @staticmethod
    def run(G: Any, state: Any, params: dict[str, Any], index: int, condition: dict[str, Any], variant: Any,
            max_steps: int, images: bool) -> dict[str, Any]:
        from ...utils import tensor_to_uint8

        prob = make_problem(G, params, index)
        w1, i1, i2 = prob.pop("_w1"), prob.pop("_i1"), prob.pop("_i2")
        out = run_drag(G, w1, prob["handles"], prob["targets"], variant.drag_options(), max_steps=max_steps,
                       engine=variant.engine)
        r = tensor_to_uint8(out.image)
        f1, f2, fr = M.to_float_image(i1), M.to_float_image(i2), M.to_float_image(r)
        scores = {
            "mse": round(100 * M.mse(fr, f2), 6), "mse_noedit": round(100 * M.mse(f1, f2), 6),
            "ssim": round(M.ssim(fr, f2), 6), "ssim_noedit": round(M.ssim(f1, f2), 6),
        }
        return record(prob, scores, out, {"before": i1, "after": r, "target": i2} if images else None)

    @staticmethod
    def aggregate(results: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
        ms = [r["metrics"] for r in results]
        return aggregate_drag(results, {
            "mse": M.mean(m["mse"] for m in ms), "mse_noedit": M.mean(m["mse_noedit"] for m in ms),
            "ssim": M.mean(m["ssim"] for m in ms), "ssim_noedit": M.mean(m["ssim_noedit"] for m in ms),
            "better": M.share([m["mse"] < m["mse_noedit"] for m in ms]),
            "flow_px": M.mean(r["problem"]["flow_px"] for r in results),
        })

    @staticmethod
    def error_values(results: list[dict[str, Any]]) -> tuple[str, list[float]]:
        return "MSE x 1e2 (result vs I2)", [r["metrics"]["mse"] for r in results]

    @staticmethod
    def baseline_values(results: list[dict[str, Any]]) -> list[float]:
        return [r["metrics"]["mse_noedit"] for r in results]


SUITE = PairedSuite()
