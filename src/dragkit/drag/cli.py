"""``dragkit drag --spec edit.json --out result.png [--video v.mp4|.gif] [--report r.json] [--annotate]``."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import DragkitError, SpecError

__all__ = ["register", "run"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "drag",
        help="drag points of a generated image to targets (DragGAN)",
        description="Run a DragGAN edit described by a JSON spec (see docs/drag.md).",
    )
    p.add_argument("--spec", required=True, help="edit spec (JSON): model, seed/psi or latent, points, mask, options")
    p.add_argument("--out", required=True, help="result image (.png, .jpg or .webp)")
    p.add_argument("--video", default=None, help="progress video, .mp4 (ffmpeg) or .gif")
    p.add_argument("--report", default=None, help="JSON report: steps, final_points, distances, reached, timings")
    p.add_argument("--annotate", action="store_true", help="draw handles, targets and arrows on the output")
    p.add_argument("--scale", type=int, default=1,
                   help="enlarge the output image and video frames N times, nearest neighbour, annotations "
                   "drawn at that size (default 1; videos are at least 256 px high anyway)")
    p.add_argument("--fps", type=int, default=10, help="video frame rate (default 10)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's choice; 1 is fastest on a busy machine)")
    p.set_defaults(func=run)


def _check_outputs(args: argparse.Namespace) -> None:
    from ..utils import check_scale
    from ..video import VIDEO_SUFFIXES

    if Path(args.out).suffix.lower() not in IMAGE_SUFFIXES:
        raise SpecError(f"--out {args.out}: unsupported image extension (use .png, .jpg or .webp)")
    if args.video is not None and Path(args.video).suffix.lower() not in VIDEO_SUFFIXES:
        raise SpecError(f"--video {args.video}: unsupported video extension (use .mp4 or .gif)")
    if args.report is not None and Path(args.report).suffix.lower() != ".json":
        raise SpecError(f"--report {args.report}: the report is JSON; use a .json file name")
    if args.fps < 1:
        raise SpecError("--fps must be >= 1")
    if args.threads is not None and args.threads < 1:
        raise SpecError("--threads must be >= 1")
    check_scale(args.scale)
    for name in ("out", "video", "report"):
        v = getattr(args, name)
        if v is not None and Path(v).is_dir():
            raise SpecError(f"--{name} {v} is a folder")


def run(args: argparse.Namespace) -> int:
    """Validate everything, drag, then write the outputs (each atomically)."""
    import torch

    from ..models import default_model_name, load_model
    from ..utils import atomic_write_bytes, check_scale, save_image_atomic, upscale
    from ..video import write_video
    from .options import image_size
    from .render import annotate
    from .session import DragSession
    from .spec import check_points, load_latent_npy, load_mask_image, load_spec

    _check_outputs(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    spec = load_spec(args.spec)
    model_name = spec.model or default_model_name()
    try:
        G = load_model(model_name, device=args.device)
    except (RuntimeError, AssertionError) as exc:  # e.g. an unavailable device
        raise DragkitError(f"cannot load model {model_name!r} on {args.device}: {exc}") from None
    H, W = image_size(G)
    check_scale(args.scale, (H, W))
    check_points(spec, (H, W))
    spec.options.validate(G, num_points=len(spec.points))  # radii and work per step, before any compute
    mask = load_mask_image(spec.mask, (H, W)) if spec.mask is not None else None
    if spec.latent is not None:
        ws = torch.from_numpy(load_latent_npy(spec.latent, G.num_ws, G.w_dim)).to(G.device if hasattr(G, "device") else "cpu")
        s = DragSession.from_latent(G, ws, options=spec.options)
    else:
        s = DragSession(G, seed=spec.seed, psi=spec.psi, options=spec.options)
    for h, t in spec.points:
        s.add_point(handle=h, target=t)
    if mask is not None:
        s.set_mask(mask)
    origins = [p.handle for p in s.points]
    targets = [p.target for p in s.points]

    frames = []

    k = args.scale

    def frame():
        img = s.image()
        if args.annotate:
            return annotate(img, [p.handle for p in s.points], targets, origins, scale=k)
        return upscale(img, k)

    outside = s.handles_outside_mask()
    for i in outside:
        print(f"dragkit: warning: handle {i + 1} {list(origins[i])} lies outside the mask's flexible region: "
              "it cannot move (paint the mask over it)", file=sys.stderr)

    if args.video is not None:
        frames.append(frame())
    t0 = time.perf_counter()
    last = None
    for r in s.run(max_steps=spec.max_steps):
        last = r
        if args.video is not None and not r.done:
            frames.append(frame())
    seconds = time.perf_counter() - t0
    assert last is not None
    steps = last.step
    result = frame()
    if args.video is not None:
        if steps:
            frames[-1] = frame()  # the final image with the final tracked points
        write_video(frames, args.video, fps=args.fps)
    save_image_atomic(result, args.out)
    opts = s.options.resolved(G)
    if args.report is not None:
        report = {
            "model": model_name,
            "resolution": H,
            "height": H,
            "width": W,
            "steps": steps,
            "max_steps": spec.max_steps,
            "reached": bool(last.reached),
            "initial_points": [list(h) for h in origins],
            "targets": [list(t) for t in targets],
            "final_points": [list(p.handle) for p in last.points],
            "distances": last.distances,
            "seconds": seconds,
            "seconds_per_step": seconds / steps if steps else 0.0,
            "options": opts.to_dict(),
            "out": str(args.out),
            "video": args.video,
            "scale": k,
            "handles_outside_mask": outside,
        }
        atomic_write_bytes(args.report, (json.dumps(report, indent=2) + "\n").encode("utf-8"))
    print(
        f"{'reached' if last.reached else 'stopped'} after {steps} steps in {seconds:.2f} s; "
        f"distances {', '.join(f'{d:.1f}' for d in last.distances)} px -> {args.out}"
    )
    return 0
