"""Generator speed on the CPU: full synthesis vs. synthesis stopped after b128.

A drag step only needs the feature map of one block (b128 in the paper's
512 px setting), so ``SynthesisNetwork.run(..., feature_blocks=[128],
return_image=False)`` stops there.  This prints, for a 128 px and a 512 px
generator with NVIDIA's standard channel layouts (channel_base 16384 /
32768, channel_max 512, 8 mapping layers, random weights), the median time
of a full synthesis (image) and of the early-stopped feature run, measured
side by side in one process, and their ratio.  Forward only, batch 1,
``torch.no_grad()``, fp32.

    python benchmarks/bench_generator.py [--repeats 5] [--threads N] [--grad]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from dragkit.nets import Generator

CONFIGS = [
    ("128px (channel_base 16384)", 128, 16384),
    ("512px (channel_base 32768)", 512, 32768),
]


def timed(fn, repeats: int) -> float:
    fn()  # warm-up (allocator, one-off kernels)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--grad", action="store_true", help="also time forward+backward to ws (what a drag step does)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, CPU, {torch.get_num_threads()} threads, load average {load:.1f} at start")
    print(f"{'config':<28} {'mode':<10} {'full (s)':>9} {'to b128 (s)':>12} {'ratio':>7}")
    for name, res, base in CONFIGS:
        torch.manual_seed(0)
        G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=res,
                      mapping_kwargs={"num_layers": 8},
                      synthesis_kwargs={"channel_base": base, "channel_max": 512}).eval().requires_grad_(False)
        ws = G.ws_from_seed(0, psi=0.7)

        def full() -> None:
            with torch.no_grad():
                G.synthesis.run(ws, noise_mode="const")

        def feat() -> None:
            with torch.no_grad():
                G.synthesis.run(ws, noise_mode="const", feature_blocks=[128], return_image=False)

        t_full, t_feat = timed(full, args.repeats), timed(feat, args.repeats)
        print(f"{name:<28} {'forward':<10} {t_full:>9.3f} {t_feat:>12.3f} {t_full / t_feat:>7.2f}", flush=True)
        if args.grad:
            def full_g() -> None:
                w = ws.clone().requires_grad_(True)
                img, _ = G.synthesis.run(w, noise_mode="const")
                img.square().mean().backward()

            def feat_g() -> None:
                w = ws.clone().requires_grad_(True)
                _, f = G.synthesis.run(w, noise_mode="const", feature_blocks=[128], return_image=False)
                f[128].square().mean().backward()

            t_full, t_feat = timed(full_g, args.repeats), timed(feat_g, args.repeats)
            print(f"{name:<28} {'fwd+bwd':<10} {t_full:>9.3f} {t_feat:>12.3f} {t_full / t_feat:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
