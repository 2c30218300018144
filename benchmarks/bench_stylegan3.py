"""Seconds per drag step on a StyleGAN3-T of realistic widths (random weights), and what a window saves.

A StyleGAN3 drag reads the output of one synthesis layer (``feature_layer``,
default 5 on the 14-layer configs).  Without a mask dragkit's drag step
computes that layer on the handles' window only (``run_window``).  This
prints, per resolution, side by side in one run:

* ``step``: seconds of one :meth:`DragSession.step` as the engine runs it
  (one handle, no mask, the model's defaults), the mean of ``--steps``
  after one warm-up, and the same step computing the whole layer (the
  engine before the window);
* ``full f+b``: the synthesis work of a step - the input and layers
  ``0 .. feature_layer`` forward, and backward from a loss on the box the
  step reads (:func:`dragkit.drag.core.needed_feature_box`);
* ``window f+b``: the same through :meth:`SynthesisNetwork.run_window`,
  which computes every map only where the box depends on it, the ratio,
  and the largest difference of the box's features from the full run's;
* ``image``: the whole image, no gradient (what a step does not compute).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_stylegan3.py              # 256 and 512 px, 1 thread
    python benchmarks/bench_stylegan3.py --res 512 --steps 2 --threads 2
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402


def build(res: int):
    from dragkit.nets import StyleGAN3Generator

    torch.manual_seed(0)
    # NVIDIA's stylegan3-t configs: 512-d codes, 2 mapping layers, channel_base 32768 (FFHQ-U/AFHQ 256 and
    # 512 px), channel_max 512, 14 layers, 3x3 convs
    G = StyleGAN3Generator(512, 0, 512, res, 3, mapping_kwargs={"num_layers": 2},
                           channel_base=32768, channel_max=512)
    return G.eval().requires_grad_(False)


def timed(fn, repeat: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--res", default="256,512", help="resolutions (comma-separated)")
    ap.add_argument("--steps", type=int, default=2, help="timed drag steps and synthesis runs (after one warm-up)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from dragkit.drag.core import needed_feature_box
    from dragkit.drag.features import feature_source
    from dragkit.drag.session import DragOptions, DragSession

    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    print(f"torch {torch.__version__}, {args.threads} thread(s), load average {load:.1f} on {os.cpu_count()} CPUs",
          flush=True)
    for res in [int(r) for r in args.res.split(",")]:
        G = build(res)
        c = res / 2
        handle = (c - res / 16, c)
        steps = {}
        for windowed in (True, False):
            s = DragSession(G, seed=0, options=DragOptions())
            s._crop = windowed  # False: the whole layer every step (the engine before the window)
            s.add_point(handle, (c + res / 16, c))
            s.step()  # warm-up (and the drag's start: references, optimiser)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                s.step()
            steps[windowed] = (time.perf_counter() - t0) / args.steps
        opts = s.options.resolved(G)
        idx = opts.feature_layer
        src = feature_source(G, None, idx)
        lg = G.synthesis.layer_geometry(idx)
        ws0 = s.latent.detach()  # the whole-layer session's codes after its steps
        box = needed_feature_box(torch.tensor([handle], dtype=torch.float64), opts.r1, opts.r2, None,
                                 geometry=src.geometry)
        x0, y0, x1, y1 = box

        def full_fb() -> torch.Tensor:
            ws = ws0.clone().requires_grad_(True)
            f = G.synthesis.run(ws, feature_layers=[idx], return_image=False)[1][idx][:, :, y0:y1, x0:x1]
            f.square().mean().backward()
            return f.detach()

        def window_fb() -> torch.Tensor:
            ws = ws0.clone().requires_grad_(True)
            f = G.synthesis.run_window(ws, idx, box)
            f.square().mean().backward()
            return f.detach()

        t_full = timed(full_fb, args.steps)
        t_win = timed(window_fb, args.steps)
        diff = float((full_fb() - window_fb()).abs().max())
        with torch.no_grad():
            t_img = timed(lambda: G.synthesis(ws0), 1)
        plan = G.synthesis.window_plan(idx, box)
        sides = ", ".join(f"{b[2] - b[0]}" for b in plan)
        print(f"{res} px StyleGAN3-T, feature layer {idx} ({src.name}: {lg.size} x {lg.size}, {lg.channels} ch), "
              f"r1 {opts.r1:g} px, r2 {opts.r2} px, one handle: step {steps[True]:.2f} s windowed, "
              f"{steps[False]:.2f} s whole layer ({steps[False] / steps[True]:.1f}x); "
              f"synthesis f+b: full {t_full:.2f} s, window {t_win:.2f} s ({t_full / t_win:.1f}x less; box {box}, "
              f"window sides input..L{idx}: {sides}; max diff {diff:.1e}); whole image {t_img:.2f} s", flush=True)


if __name__ == "__main__":
    main()
