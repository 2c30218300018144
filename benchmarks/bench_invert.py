"""How well do photos invert? PSNR, SSIM and seconds per image, each loss term side by side.

On held-out CelebA faces (images 19000-19999 of ``../shared/data/celeba128_train.zip``,
never trained on), for each loss configuration (an ablation: the pixel
loss alone, then with one perceptual term added at a time, then the
default mix), prints the mean over the images of

* PSNR after the W phase and after the W+ phase, and SSIM after W+ (8-bit images);
* dlib's identity distance between the photo and its reconstruction (the
  C++ ResNet's descriptors; < 0.6 = dlib calls them one person) - note that
  a config with the ``faceid`` term optimises (a PyTorch port of) this very
  network, and ``facefeat`` its inner features, so their figures are not
  independent judgements;
* the landmark error: mean distance (px) between dlib's 68 landmarks on the
  photo and on the reconstruction - an independent network (the shape
  predictor), and what a drag on a face needs (features where the photo has them);
* wall seconds and CPU seconds (process time, all threads) per image;

and then, with ``--pti``, the same for pivotal tuning on top of the default
projection, plus its locality figure (PSNR of tuned vs original generator
away from the pivot).

    nice -n 5 python benchmarks/bench_invert.py --model faces128 --images 19000:19010
    python benchmarks/bench_invert.py --model PATH --configs default --pti --threads 2
    python benchmarks/bench_invert.py --model PATH --configs none --pti    # PTI only (W, W+ figures on the way)

The images are already in the model's crop, so they are used as they are
(``--align`` re-aligns them with ``dragkit.invert.align`` first, which
measures the alignment's effect instead).  Machine load matters: say what
else was running when you quote a figure.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: idle OpenMP threads must not spin

import argparse
import copy
import io
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "celeba128_train.zip"

# name -> loss weights of the projection (and of PTI when it runs on that config)
ABLATION = {
    "pixel": {"pixel": 1},
    "pixel+l1": {"pixel": 1, "l1": 0.1},
    "pixel+msssim": {"pixel": 1, "msssim": 0.25},
    "pixel+disc": {"pixel": 1, "disc": 0.05},
    "pixel+facefeat": {"pixel": 1, "facefeat": 0.03},
    "pixel+faceid": {"pixel": 1, "faceid": 0.05},
}


def load_faces(path: Path, indices: list[int]) -> list[tuple[int, np.ndarray]]:
    from PIL import Image

    out = []
    with zipfile.ZipFile(path) as z:
        for i in indices:
            out.append((i, np.asarray(Image.open(io.BytesIO(z.read(f"{i:05d}.webp"))).convert("RGB"))))
    return out


def parse_range(text: str) -> list[int]:
    a, _, b = text.partition(":")
    lo, hi = int(a), int(b) if b else int(a) + 1
    if not 19000 <= lo < hi <= 20000:
        sys.exit("--images must lie in the held-out range 19000:20000")
    return list(range(lo, hi))


def face_distances(photo: np.ndarray, rec: np.ndarray) -> tuple[float, float]:
    """``(identity distance, landmark error px)`` of a reconstruction, by dlib (NaN when it finds no face)."""
    from dragkit.dlibfaces import face_models

    fm = face_models()
    ds, lms = [], []
    r = fm.largest(photo)
    if r is None:
        return float("nan"), float("nan")
    for img in (photo, rec):
        # the photo's face box for both: the landmark error then measures the face, not the detector
        ds.append(fm.descriptor_of(img, r))
        lms.append(fm.landmarks(img, r))
    return float(np.linalg.norm(ds[0] - ds[1])), float(np.linalg.norm(lms[0] - lms[1], axis=1).mean())


def main() -> int:
    from dragkit.invert.cli import add_step_arguments, apply_step_arguments

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="faces128", help="bundled name or path (default faces128)")
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--images", default="19000:19010", help="held-out range START:END (default 19000:19010)")
    ap.add_argument("--configs", default="all", help="comma-separated names of " + ", ".join(["default", *ABLATION])
                    + ", 'all' (default), or 'none' with --pti (only the PTI pass, which reports W and W+ too)")
    ap.add_argument("--pti", action="store_true", help="also pivotal tuning on the default projection")
    add_step_arguments(ap)
    ap.add_argument("--optimize-noise", action="store_true", help="projection also optimises the noise maps")
    ap.add_argument("--align", action="store_true", help="re-align the crops with dragkit.invert.align first")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()

    import torch

    from dragkit import load_model
    from dragkit.invert import InvertConfig, LossWeights, invert_photo
    from dragkit.invert.metrics import psnr_uint8
    from dragkit.invert.pipeline import discriminator_for
    from dragkit.utils import tensor_to_uint8

    torch.set_num_threads(args.threads)
    G = load_model(args.model)
    D = discriminator_for(args.model)
    base = InvertConfig(align=args.align)
    apply_step_arguments(base, args)
    base.projection.optimize_noise = args.optimize_noise
    configs = {"default": base.projection.weights.to_dict()}
    configs.update({k: {**{t: 0.0 for t in configs["default"]}, **v} for k, v in ABLATION.items()})
    names = (list(configs) if args.configs == "all" else [] if args.configs == "none"
             else [c.strip() for c in args.configs.split(",")])
    if not names and not args.pti:
        sys.exit("--configs none needs --pti")
    for n in names:
        if n not in configs:
            sys.exit(f"unknown config {n!r}; known: {', '.join(configs)}")
    same = [n for n in names if n != "default" and "default" in names and configs[n] == configs["default"]]
    names = [n for n in names if n not in same]  # the same weights as the default: its row says so
    faces = load_faces(Path(args.data), parse_range(args.images))
    print(f"model {args.model} ({G.img_resolution} px), {len(faces)} held-out faces {args.images}, "
          f"torch threads {args.threads}, W {base.projection.w_steps} + W+ {base.projection.wplus_steps} steps"
          + (f", PTI {base.pti_config.steps} steps" if args.pti else "") + (", re-aligned" if args.align else ""))
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    rows = []
    runs = [(n, False) for n in names] + ([("default", True)] if args.pti else [])
    for name, pti in runs:
        cfg = copy.deepcopy(base)
        cfg.projection.weights = LossWeights.from_dict(configs[name])
        cfg.pti = pti
        if pti:
            cfg.pti_config.weights = LossWeights.from_dict(configs[name])
        res = {"w": [], "wp": [], "ssim": [], "pti": [], "pti_ssim": [], "id": [], "lm": [], "wall": [], "cpu": [],
               "loc": []}
        for idx, img in faces:
            c0, t0 = time.process_time(), time.perf_counter()
            inv = invert_photo(G, img, cfg, D=D)
            res["wall"].append(time.perf_counter() - t0)
            res["cpu"].append(time.process_time() - c0)
            with torch.no_grad():
                w_img = tensor_to_uint8(G.synthesis(inv.projection.w[:, None].expand(-1, G.num_ws, -1),
                                                    noise_mode="const"))
            res["w"].append(psnr_uint8(w_img, inv.target))
            res["wp"].append(inv.psnr_projection)
            res["ssim"].append(inv.ssim_projection)
            if pti:
                res["pti"].append(inv.psnr)
                res["pti_ssim"].append(inv.ssim)
                res["loc"].append(inv.pti_result.locality_psnr)
            ident, lm_err = face_distances(inv.target, inv.reconstruction)
            res["id"].append(ident)
            res["lm"].append(lm_err)
            if not args.quiet:
                print(f"  {name}{' +PTI' if pti else ''} {idx}: W {res['w'][-1]:.2f} dB, W+ {res['wp'][-1]:.2f} dB"
                      + (f", PTI {res['pti'][-1]:.2f} dB" if pti else "")
                      + f", id {res['id'][-1]:.3f}, landmarks {res['lm'][-1]:.2f} px, "
                      f"{res['wall'][-1]:.0f} s wall / {res['cpu'][-1]:.0f} s CPU",
                      flush=True)
        label = name + "".join(f" (= {n})" for n in same if name == "default" and not pti)
        rows.append((label + (" +PTI" if pti else ""), {k: float(np.nanmean(v)) if v else float("nan")
                                                        for k, v in res.items()}))
    print()
    print("| config | W PSNR | W+ PSNR | W+ SSIM | PTI PSNR | PTI SSIM | PTI locality | identity dist | landmark err px "
          "| s/img wall | CPU s/img |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, m in rows:
        def f(k, fmt="{:.2f}"):
            return "-" if np.isnan(m[k]) else fmt.format(m[k])
        print(f"| {name} | {f('w')} | {f('wp')} | {f('ssim', '{:.3f}')} | {f('pti')} | {f('pti_ssim', '{:.3f}')} | "
              f"{f('loc')} | {f('id', '{:.3f}')} | {f('lm')} | {f('wall', '{:.0f}')} | {f('cpu', '{:.0f}')} |")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
