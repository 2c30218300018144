"""Training throughput (images/s) of `dragkit train`: precision and layout variants side by side.

Runs a few warm-up iterations (the first includes the lazy R1 pass), then
times full iterations (G main, D main; R1 every 16th and path length every
4th when enabled) on this machine, within a time budget per config and
variant.  Variants (``--variants``, comma-separated): ``fp32``, ``bf16``
(autocast of the main passes), ``fp32-cl`` / ``bf16-cl`` (channels_last),
``fp32-compile`` / ``bf16-compile`` (torch.compile of the main passes; the
compilation happens in the warm-up).  Ratios are against the first variant.

    python benchmarks/bench_train.py                      # CPU or CUDA, whichever is default
    python benchmarks/bench_train.py --device cpu --threads 2 --configs faces128 --variants fp32,bf16
    python benchmarks/bench_train.py --faces-data ../shared/data/celeba128_train.zip

Without the face zip, the face config trains on random 128 px images (the
throughput does not depend on the pictures).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dragkit.train.loop import Trainer, make_config

DEFAULT_FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "celeba128_train.zip"  # ../shared beside the checkout


def _random_faces(folder: Path, n: int = 64) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(folder / f"{i:05d}.png")
    return folder


def bench(name: str, cfg, device: str, iters: int, warmup: int, amp: bool, compile_: bool,
          seconds: float, channels_last: bool = False) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        t = Trainer(cfg, Path(tmp) / "run", device=device, amp=amp, compile=compile_, progress=False,
                    log=lambda _m: None, channels_last=channels_last)
        for _ in range(warmup):
            t.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        done = 0
        # At least 2 iterations, then stop at `iters` or when the time budget is spent.
        while done < 2 or (done < iters and time.perf_counter() - t0 < seconds):
            t.step()
            done += 1
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        iters = done
    ips = iters * cfg.batch / dt
    return {"config": name, "iters": iters, "batch": cfg.batch, "resolution": t.source.resolution, "images_per_s": ips,
            "sec_per_kimg": 1000 / ips, "G_params_M": sum(p.numel() for p in t.G.parameters()) / 1e6,
            "D_params_M": sum(p.numel() for p in t.D.parameters()) / 1e6}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--iters", type=int, default=16, help="timed iterations (a multiple of 16 covers R1 fairly)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--seconds", type=float, default=30.0, help="time budget per config (at least 2 iterations)")
    p.add_argument("--faces-data", default=str(DEFAULT_FACES))
    p.add_argument("--configs", default="toy,faces128")
    p.add_argument("--variants", default="fp32,bf16",
                   help="comma-separated: fp32, bf16, fp32-cl, bf16-cl, fp32-compile, bf16-compile")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from dragkit.utils import native_bf16

    print(f"device {args.device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"iters {args.iters} (+{args.warmup} warm-up), native bf16: {native_bf16(args.device)}, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs.split(","):
            if name == "toy":
                cfg = make_config("toy", seed=0)
            elif name == "faces128":
                data = args.faces_data if Path(args.faces_data).is_file() else str(_random_faces(Path(tmp)))
                cfg = make_config("faces128", data=data, seed=0)
            else:
                print(f"unknown config {name}", file=sys.stderr)
                return 2
            base = None
            for variant in args.variants.split(","):
                parts = variant.split("-")
                if parts[0] not in ("fp32", "bf16") or not set(parts[1:]) <= {"cl", "compile"}:
                    print(f"unknown variant {variant}", file=sys.stderr)
                    return 2
                r = bench(name, cfg, args.device, args.iters, args.warmup, parts[0] == "bf16", "compile" in parts,
                          args.seconds, channels_last="cl" in parts)
                base = base or r["images_per_s"]
                print(f"{r['config']:>9} {variant:>13}: {r['images_per_s']:8.2f} images/s  ({r['sec_per_kimg']:7.1f} s/kimg)"
                      f"  x{r['images_per_s'] / base:.2f}  {r['iters']} iters of batch {r['batch']}, {r['resolution']} px, "
                      f"G {r['G_params_M']:.2f} M, D {r['D_params_M']:.2f} M params", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
