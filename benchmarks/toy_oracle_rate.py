"""How often the toy-world oracle finds both objects, with plausible shapes, in `toy` model samples.

    python benchmarks/toy_oracle_rate.py                 # bundled `toy`, seeds 0..255, psi 1 and 0.7
    python benchmarks/toy_oracle_rate.py --model runs/toy/toy --count 256 --psi 1
    python benchmarks/toy_oracle_rate.py --checkpoint runs/toy/checkpoint.pt   # G_ema of a training snapshot

Prints the hit rate (both objects found and plausible, nothing else of
note), the reasons for the misses, and the same figure on freshly drawn
toy-world images as a reference (should be 100 %).  Samples are
``G(z(seed), psi, noise_mode='const')`` with NVIDIA's per-seed latents.
"""
from __future__ import annotations

import argparse
import collections
import sys
import time

import numpy as np
import torch

from dragkit.models import load_model
from dragkit.train.toy import measure, toy_image


def sample_rate(G, seeds, psi: float) -> tuple[float, collections.Counter, list[float]]:
    fails: collections.Counter = collections.Counter()
    fits = []
    hits = 0
    for seed in seeds:
        ws = G.ws_from_seed(seed, psi=psi)
        with torch.no_grad():
            img = G.synthesis(ws, noise_mode="const")
        m = measure(img[0])
        hits += m.ok
        for p in m.problems:
            fails[p.split(" at (")[0].split(" (fit")[0]] += 1
        fits += [o.fit for o in m.objects]
    return hits / len(seeds), fails, fits


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="toy")
    p.add_argument("--checkpoint", default=None, help="use G_ema of a training checkpoint instead (read only)")
    p.add_argument("--count", type=int, default=256)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--psi", default="1,0.7", help="comma-separated truncation values")
    args = p.parse_args()
    torch.set_grad_enabled(False)
    if args.checkpoint:
        from dragkit.nets import Generator
        from dragkit.train.checkpoint import load_checkpoint

        ck = load_checkpoint(args.checkpoint)
        G = Generator(**ck["G_init_kwargs"]).eval()
        G.load_state_dict(ck["G_ema"])
        name = f"G_ema of {args.checkpoint} at {ck['cur_nimg'] / 1000:.1f} kimg"
    else:
        G = load_model(args.model)
        name = f"model {args.model}"
    seeds = range(args.first_seed, args.first_seed + args.count)
    print(f"{name}: {G.img_resolution} px, seeds {seeds.start}..{seeds.stop - 1}")
    for psi in (float(s) for s in args.psi.split(",")):
        t0 = time.time()
        rate, fails, fits = sample_rate(G, seeds, psi)
        print(f"psi {psi:g}: oracle hit rate {rate * 100:.1f} % ({round(rate * args.count)}/{args.count}); "
              f"median shape fit {np.median(fits):.3f}; {time.time() - t0:.1f} s")
        for reason, n in fails.most_common(6):
            print(f"    {n:4d} x {reason}")
    ok = sum(measure(toy_image(99, i, G.img_resolution)[0]).ok for i in range(args.count))
    print(f"reference: drawn toy images {ok / args.count * 100:.1f} % ({ok}/{args.count})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
