"""How far does dlib's re-detected mouth corner move when the corner's pixels move a known distance?

The instrument check behind issue 15's mouth-corner bar (``drag_on_photos.py``:
"dlib's landmark re-detected at that corner moved at least 3 px").  No
drag and no generator here: each held-out face is warped by a known,
smooth displacement field that moves the mouth corner (landmark 48 or 54,
alternating, as in ``drag_on_photos.py``) exactly ``--distance`` px
outward - away from the other corner - and falls off as a Gaussian of
width ``sigma`` px around it, so the lip line extends toward the target
and the rest of the face stays (what a one-handle drag asks for).  dlib
then reads the warped image as ``drag_on_photos.py`` reads a dragged one
(the same functions: at ``--landmark-scale``, in each image's own face
box).  Beside dlib, that script's RGB patch reading (``patch_shift``), whose
ground truth is now known.

A perfect drag cannot score better on the bar than the warp that moves the
corner exactly as asked, so the count of faces where dlib reads >= 3 px
here is an upper bound set by the instrument, for that shape of change.

    python benchmarks/dlib_corner_response.py --images 19000:19020 --sigma 4,6,8,12,20
    # on the reconstructions the drags start from (drag_on_photos.py's --cache; PTI, or W+ with --no-pti):
    python benchmarks/dlib_corner_response.py --cache DIR --sigma 6,8,12

Needs ``dragkit[faces]`` and ``../shared/data/celeba128_train.zip``; dlib only
(seconds per face), so ``--threads`` is 1 by default.
"""
from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from drag_on_photos import DEFAULT_DATA, landmarks, mouth_corner, patch_shift, read_face  # noqa: E402


def warp_corner(img: np.ndarray, point, shift, sigma: float) -> np.ndarray:
    """``img`` with the content at ``point`` moved by ``shift`` ``[dx, dy]`` px, the move falling off as
    ``exp(-r^2 / (2 sigma^2))`` with the distance r from ``point`` (forward displacement field, inverted by
    fixed-point iteration; bicubic resampling).  Far from ``point`` the image is unchanged.  ``sigma`` must
    exceed ``0.61 |shift|`` so that the warp does not fold."""
    import torch
    import torch.nn.functional as F

    shift = np.asarray(shift, dtype=np.float64)
    if sigma <= 0.61 * float(np.linalg.norm(shift)):
        raise ValueError(f"sigma {sigma} px folds a warp of {np.linalg.norm(shift):.1f} px")
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    # output pixel y shows input pixel x where y = x + u(x); solve x = y - u(x)
    x, y = xx.copy(), yy.copy()
    for _ in range(50):
        g = np.exp(-((x - point[0]) ** 2 + (y - point[1]) ** 2) / (2 * sigma ** 2))
        x, y = xx - shift[0] * g, yy - shift[1] * g
    grid = torch.from_numpy(np.stack([x / (w - 1) * 2 - 1, y / (h - 1) * 2 - 1], -1)).float()[None]
    t = torch.from_numpy(np.array(img)).permute(2, 0, 1).float()[None]
    out = F.grid_sample(t, grid, mode="bicubic", padding_mode="border", align_corners=True)
    return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def faces(args):
    """``(index, image)`` of each face: the photo, or its reconstruction (PTI or W+) from ``--cache``."""
    a, _, b = args.images.partition(":")
    indices = range(int(a), int(b))
    if not args.cache:
        with zipfile.ZipFile(args.data) as z:
            for i in indices:
                yield i, read_face(z, i)
        return
    from dragkit import DragSession
    from dragkit.invert.edit import load_inversion

    for i in indices:
        path = Path(args.cache) / f"{i}.dragkit.json"
        if not path.is_file():
            sys.exit(f"{path}: not in the cache (run drag_on_photos.py --cache first)")
        s, _ = load_inversion(path, model=args.model)
        yield i, np.asarray(DragSession.from_latent(s.G, s.latent).image())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--images", default="19000:19020")
    ap.add_argument("--cache", default=None, metavar="DIR", help="read the reconstructions in DIR "
                    "(drag_on_photos.py's --cache) instead of the photos")
    ap.add_argument("--model", default="faces128", help="the model of the --cache inversions")
    ap.add_argument("--distance", type=float, default=6.0)
    ap.add_argument("--sigma", default="4,6,8,12,20", help="widths of the warp's falloff, px (comma-separated)")
    ap.add_argument("--landmark-scale", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    sigmas = [float(v) for v in args.sigma.split(",")]
    print(f"{'reconstructions in ' + args.cache if args.cache else 'photos'} {args.images}: each mouth corner "
          f"moved {args.distance:g} px outward by a Gaussian warp, dlib at {args.landmark_scale}x; sigma "
          f"{', '.join(f'{s:g}' for s in sigmas)} px")
    dlib_moves = {s: [] for s in sigmas}
    patch_moves = {s: [] for s in sigmas}
    n = 0
    for k, (i, img) in enumerate(faces(args)):
        lm = landmarks(img, args.landmark_scale)
        if lm is None:
            print(f"  {i}: dlib finds no face: not counted")
            continue
        n += 1
        corner, p, d = mouth_corner(lm, k)
        cells = []
        for s in sigmas:
            warped = warp_corner(img, p, args.distance * d, s)
            lm2 = landmarks(warped, args.landmark_scale)
            moved = float((lm2[corner] - p) @ d) if lm2 is not None else float("nan")
            pm = float(patch_shift(img, warped, p) @ d)
            dlib_moves[s].append(moved)
            patch_moves[s].append(pm)
            cells.append(f"s{s:g}: dlib {moved:.2f} patch {pm:.2f}")
        print(f"  {i} corner {corner}: " + "; ".join(cells), flush=True)
    print()
    print(f"| sigma px | faces | dlib moved >= 3 px | dlib mean move px | dlib min px "
          f"| patch moved >= 3 px | patch mean move px |")
    print("|---|---|---|---|---|---|---|")
    for s in sigmas:
        dm, pm = np.asarray(dlib_moves[s]), np.asarray(patch_moves[s])
        print(f"| {s:g} | {n} | {int((dm >= 3.0).sum())}/{n} | {np.nanmean(dm):.2f} | {np.nanmin(dm):.2f} "
              f"| {int((pm >= 3.0).sum())}/{n} | {pm.mean():.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
