"""How good is a face model? dlib's view of its samples, and its drag speed.

Prints, for a generator (bundled name or path):

* the share of generated faces (seeds 0..N-1, psi 0.7) in which dlib's
  frontal face detector finds exactly one face (target >= 90 %), beside the
  same share on held-out real faces;
* the Frechet distance between dlib face-recognition descriptors of
  generated and training faces, beside the same distance between two
  disjoint sets of real faces (the floor: what sampling noise alone gives),
  and their ratio;
* drag steps per second at the model's resolution (one handle, 30 steps).

Each face's descriptor is taken from the face dlib detects when it finds
exactly one, else from the median face box of the real images (the crops
are aligned, so that is where a face would be): every image counts, real
and generated alike, by the same rule.

    python benchmarks/face_quality.py --model faces128
    python benchmarks/face_quality.py --model ~/.cache/dragkit/runs/faces128/cand.safetensors --n-fid 500

Needs the optional extra ``dragkit[faces]`` and the CelebA zip beside the
checkout (``../shared/data/celeba128_train.zip``).
"""
from __future__ import annotations

import argparse
import io
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dragkit import DragSession, load_model
from dragkit.dlibfaces import face_models, frechet_distance
from dragkit.utils import tensor_to_uint8

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "celeba128_train.zip"


def real_faces(path: Path, indices: range, resolution: int) -> list[np.ndarray]:
    with zipfile.ZipFile(path) as z:
        names = sorted(n for n in z.namelist() if n.lower().endswith((".png", ".jpg", ".jpeg", ".webp")))
        out = []
        for i in indices:
            img = Image.open(io.BytesIO(z.read(names[i]))).convert("RGB")
            if img.size != (resolution, resolution):
                img = img.resize((resolution, resolution), Image.LANCZOS)
            out.append(np.asarray(img))
    return out


@torch.no_grad()
def generated_faces(G, seeds: range, psi: float, batch: int = 16) -> list[np.ndarray]:
    out = []
    seeds = list(seeds)
    for i in range(0, len(seeds), batch):
        z = torch.cat([G.z_from_seed(s) for s in seeds[i:i + batch]])
        imgs = G(z, None, truncation_psi=psi, noise_mode="const")
        out.extend(tensor_to_uint8(img) for img in imgs)
    return out


def one_face_share(fm, images: list[np.ndarray]) -> tuple[float, list]:
    rects = [fm.detect(img) for img in images]
    return float(np.mean([len(r) == 1 for r in rects])), rects


def descriptors(fm, images: list[np.ndarray], rects: list, fallback) -> np.ndarray:
    return np.stack([fm.descriptor_of(img, r[0] if len(r) == 1 else fallback) for img, r in zip(images, rects)])


def drag_speed(G, steps: int = 30) -> float:
    H = G.img_resolution
    s = DragSession(G, seed=0, psi=0.7)
    s.add_point(handle=(H * 0.4, H * 0.6), target=(H * 0.4 + H * 0.25, H * 0.6))
    # never arrive early (the target is off the pixel grid, tracked handles are on it: >= 0.28 px away)
    s.options.stop_distance = 0.1
    it = s.run(max_steps=steps + 2)
    next(it)
    next(it)  # warm-up: the first steps build the feature cache
    t0 = time.perf_counter()
    n = 0
    for _ in it:
        n += 1
    return n / (time.perf_counter() - t0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="faces128")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="the training zip (CelebA 128 px)")
    p.add_argument("--n-detect", type=int, default=500, help="generated faces for the detection share")
    p.add_argument("--n-fid", type=int, default=2000, help="faces per set for the Frechet distance")
    p.add_argument("--psi", type=float, default=0.7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip-drag", action="store_true")
    p.add_argument("--drag-only", action="store_true", help="only the drag speed (no dlib, no data)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.drag_only:
        G = load_model(args.model)
        print(f"drag speed at {G.img_resolution} px: {drag_speed(G):.2f} steps/s (one handle, "
              f"{torch.get_num_threads()} threads; target >= 5)")
        return 0
    data = Path(args.data)
    if not data.is_file():
        print(f"training zip not found: {data}", file=sys.stderr)
        return 2
    G = load_model(args.model)
    R = G.img_resolution
    fm = face_models()
    t0 = time.perf_counter()
    n = args.n_fid
    # Real sets: training faces 0..n-1 and n..2n-1 (disjoint), held-out faces 19000.. for detection.
    real_a = real_faces(data, range(0, n), R)
    real_b = real_faces(data, range(n, 2 * n), R)
    held = real_faces(data, range(19000, 19000 + min(args.n_detect, 1000)), R)
    share_held, _ = one_face_share(fm, held)
    share_a, rects_a = one_face_share(fm, real_a)
    share_b, rects_b = one_face_share(fm, real_b)
    boxes = np.array([[r[0].left(), r[0].top(), r[0].right(), r[0].bottom()] for r in rects_a if len(r) == 1])
    fallback = fm.rect(np.median(boxes, axis=0))
    fakes = generated_faces(G, range(max(args.n_detect, n)), args.psi)
    share_fake, rects_fake = one_face_share(fm, fakes)
    share_detect = float(np.mean([len(r) == 1 for r in rects_fake[: args.n_detect]]))
    d_fake = descriptors(fm, fakes[:n], rects_fake[:n], fallback)
    d_a = descriptors(fm, real_a, rects_a, fallback)
    d_b = descriptors(fm, real_b, rects_b, fallback)
    fd = frechet_distance(d_fake, d_a)
    floor = frechet_distance(d_b, d_a)
    print(f"model {args.model} ({R} px), psi {args.psi}, threads {torch.get_num_threads()}")
    print(f"exactly one face found by dlib: generated {share_detect * 100:.1f} % (seeds 0-{args.n_detect - 1}; "
          f"target >= 90 %), real held-out {share_held * 100:.1f} % (images 19000-{19000 + len(held) - 1})")
    print(f"Frechet distance of dlib face descriptors, {n} vs {n}: generated vs training {fd:.4f}, "
          f"real vs real (floor) {floor:.4f}, ratio {fd / max(floor, 1e-12):.1f}")
    print(f"  (one face found: generated {share_fake * 100:.1f} % of {len(fakes)}, real {share_a * 100:.1f} % / "
          f"{share_b * 100:.1f} %; {time.perf_counter() - t0:.0f} s)")
    if not args.skip_drag:
        print(f"drag speed at {R} px: {drag_speed(G):.2f} steps/s (one handle, {torch.get_num_threads()} threads; "
              "target >= 5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
