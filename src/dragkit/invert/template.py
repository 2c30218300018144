"""Make ``assets/celeba128_landmarks.json``: where dlib's 68 landmarks sit, on average, in the CelebA-128 crop.

    python -m dragkit.invert.template [--data ../shared/data/celeba128_train.zip] [--every 6] \
        [--out src/dragkit/assets/celeba128_landmarks.json]

1. Runs dlib's detector (upsampled once) and 68-point predictor over every
   ``--every``-th *training* image (0-18999) and averages each landmark's
   position: the template.
2. Chooses the points the alignment similarity is fitted to (each the mean
   of a group of landmarks, e.g. an eye centre), by
   measurement on held-out images 19800-19999 (which are already in the
   canonical crop, so a perfect alignment would leave them where they are):
   for each candidate set it fits the similarity from the image's detected
   landmarks to the template and reports how far that moves the crop's
   pixels (RMS over the image, pixels), and picks the set that moves them
   least.

Needs the ``faces`` extra (dlib).  Takes one to three minutes on one core.
"""
from __future__ import annotations

import argparse
import io
import json
import time
import zipfile
from pathlib import Path

import numpy as np

from .align import TEMPLATE_FORMAT, TEMPLATE_PATH, apply_matrix, fit_similarity, group_points, landmark_indices

SIZE = 128
# Each candidate is a list of groups; a group's mean position is one fitted point.
_EYE_L, _EYE_R = list(range(36, 42)), list(range(42, 48))
CANDIDATES: dict[str, list[list[int]]] = {
    "all 68": [[i] for i in range(68)],
    "no jaw (17-67)": [[i] for i in landmark_indices(["brows", "nose", "eyes", "mouth"])],
    "eyes, nose, mouth (27-67)": [[i] for i in landmark_indices(["nose", "eyes", "mouth"])],
    "eyes and mouth": [[i] for i in landmark_indices(["eyes", "mouth"])],
    "eyes + mouth corners": [[i] for i in landmark_indices(["eyes"]) + [48, 54]],
    "eye centres, nose tip, mouth corners (CelebA's 5)": [_EYE_L, _EYE_R, [30], [48], [54]],
    "eye centres, mouth corners": [_EYE_L, _EYE_R, [48], [54]],
}


def _landmarks_of(z: zipfile.ZipFile, names: list[str]) -> tuple[np.ndarray, list[str]]:
    from PIL import Image

    from ..dlibfaces import face_models

    fm = face_models()
    out, used = [], []
    for name in names:
        img = np.asarray(Image.open(io.BytesIO(z.read(name))).convert("RGB"))
        r = fm.largest(img)
        if r is None:
            continue
        out.append(fm.landmarks(img, r))
        used.append(name)
    return np.asarray(out), used


def _crop_motion(M: np.ndarray) -> float:
    """RMS distance (px) a 128 px crop's pixels move under ``M``."""
    yy, xx = np.mgrid[0:SIZE:4, 0:SIZE:4]
    p = np.stack([xx.ravel(), yy.ravel()], 1).astype(np.float64)
    return float(np.sqrt(((apply_matrix(M, p) - p) ** 2).sum(1).mean()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_data = Path(__file__).resolve().parents[4] / "shared" / "data" / "celeba128_train.zip"
    ap.add_argument("--data", default=str(default_data))
    ap.add_argument("--every", type=int, default=6, help="use every N-th training image (default 6: 3167 images)")
    ap.add_argument("--held-out", default="19800:20000",
                    help="held-out images that choose the fit points (default 19800:20000, away from the "
                         "benchmarks' 19000-...)")
    ap.add_argument("--out", default=str(TEMPLATE_PATH))
    ap.add_argument("--cache", default=None, help="keep the detected landmarks in this .npz (re-runs skip dlib)")
    args = ap.parse_args(argv)
    t0 = time.time()
    train = [f"{i:05d}.webp" for i in range(0, 19000, args.every)]
    h0, h1 = (int(v) for v in args.held_out.split(":"))
    if not 19000 <= h0 < h1 <= 20000:
        ap.error("--held-out must lie in 19000:20000")
    held = [f"{i:05d}.webp" for i in range(h0, h1)]
    with zipfile.ZipFile(args.data) as z:
        if args.cache and Path(args.cache).is_file():
            c = np.load(args.cache)
            lm, used = c["train"], list(c["used"])
        else:
            lm, used = _landmarks_of(z, train)
            if args.cache:
                np.savez(args.cache, train=lm, used=np.array(used))
        lm_held, _ = _landmarks_of(z, held)
    mean = lm.mean(0)
    std = lm.std(0)
    print(f"{len(used)}/{len(train)} training images with a face ({time.time() - t0:.0f} s); "
          f"{len(lm_held)}/{len(held)} held-out")
    table = {}
    for name, groups in CANDIDATES.items():
        ref = group_points(mean, groups)
        moves = [_crop_motion(fit_similarity(group_points(x, groups), ref)) for x in lm_held]
        table[name] = {"groups": groups, "median_px": float(np.median(moves)), "mean_px": float(np.mean(moves))}
        print(f"  fit to {name:50s}: held-out crops move {np.mean(moves):.2f} px on average "
              f"(median {np.median(moves):.2f})")
    best = min(table, key=lambda k: table[k]["mean_px"])
    print(f"chosen: {best}")
    doc = {
        "format": TEMPLATE_FORMAT,
        "version": 1,
        "crop": "celeba128: CelebA's aligned 178x218 images, the 148x148 box at x=15, y=40, resized to 128x128 "
                "(../shared/data/celeba128_train.zip)",
        "size": SIZE,
        "coordinates": "[x, y] pixels, pixel centres at integers",
        "landmarks": np.round(mean, 3).tolist(),
        "std": np.round(std, 3).tolist(),
        "images": len(used),
        "images_tried": len(train),
        "source": f"dlib 68-point predictor (shape_predictor_68_face_landmarks.dat) on training images "
                  f"0-18999, every {args.every}th, detector upsampled once",
        "made_by": "python -m dragkit.invert.template",
        "fit_groups": table[best]["groups"],
        "fit_groups_name": best,
        "fit_groups_measured": {k: {"mean_px": round(v["mean_px"], 3), "median_px": round(v["median_px"], 3)}
                                for k, v in table.items()},
        "fit_groups_measured_on": f"held-out images {h0}-{h1 - 1} ({len(lm_held)} with a face): "
                                  "RMS pixel motion of the crop when re-aligned",
        "licence": "derived from CelebA (non-commercial research only) and dlib's 68-point predictor "
                   "(trained on iBUG 300-W, whose licence excludes commercial use)",
    }
    from ..utils import atomic_write_bytes

    atomic_write_bytes(args.out, (json.dumps(doc, indent=1) + "\n").encode())
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
