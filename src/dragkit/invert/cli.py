"""``dragkit invert --model M --image photo.jpg --out edit.dragkit.json [--pti] [--align]``."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import DragkitError

__all__ = ["register", "run", "add_step_arguments", "apply_step_arguments"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "invert",
        help="invert a photo into a model (align, project, optionally pivotal tuning) for editing",
        description="Find the latent (and, with --pti, a tuned copy of the generator) that reproduces a photo, "
                    "and write an editing session (see docs/invert.md).",
    )
    p.add_argument("--model", default=None, help="model name or path (default: the app's default model)")
    p.add_argument("--image", required=True, help="the photo (JPEG, PNG, WebP, BMP or GIF)")
    p.add_argument("--out", required=True, help="session file to write, NAME.dragkit.json (companions go beside it)")
    p.add_argument("--align", action="store_true", help="detect the face and align it onto the model's crop (dlib)")
    p.add_argument("--alignment", default="auto", choices=("auto", "celeba", "ffhq"),
                   help="which crop to align onto (default auto: from the model's metadata)")
    p.add_argument("--pti", action="store_true", help="pivotal tuning: tune a copy of the generator to the photo")
    add_step_arguments(p)
    p.add_argument("--loss", default=None,
                   help="loss weights, e.g. 'pixel=1,msssim=0.25' (terms: pixel, l1, msssim, disc, facefeat, faceid)")
    p.add_argument("--optimize-noise", action="store_true", help="also optimise the noise maps (saved with the edit)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random starting codes (default 0)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run)


def add_step_arguments(p: argparse.ArgumentParser) -> None:
    """``--w-steps``, ``--wplus-steps``, ``--pti-steps`` (default: the config's), for
    ``dragkit invert`` and the inversion benchmarks alike; :func:`apply_step_arguments` applies them."""
    p.add_argument("--w-steps", type=int, default=None, help="steps of the W phase")
    p.add_argument("--wplus-steps", type=int, default=None, help="steps of the W+ phase")
    p.add_argument("--pti-steps", type=int, default=None, help="steps of pivotal tuning")


def apply_step_arguments(cfg: Any, args: argparse.Namespace) -> None:
    """Set the step counts given by :func:`add_step_arguments` on an :class:`~dragkit.invert.InvertConfig`."""
    if args.w_steps is not None:
        cfg.projection.w_steps = args.w_steps
    if args.wplus_steps is not None:
        cfg.projection.wplus_steps = args.wplus_steps
    if args.pti_steps is not None:
        cfg.pti_config.steps = args.pti_steps


def _progress_printer(quiet: bool):
    last = {"phase": None, "t": 0.0}

    def show(pr: Any) -> None:
        now = time.perf_counter()
        if quiet:
            return
        if pr.phase != last["phase"] or pr.step == pr.steps or now - last["t"] >= 2.0:
            print(f"  {pr.phase:3s} {pr.step:4d}/{pr.steps}  PSNR {pr.psnr:5.2f} dB  {pr.elapsed:6.1f} s",
                  file=sys.stderr, flush=True)
            last["phase"], last["t"] = pr.phase, now

    return show


def run(args: argparse.Namespace) -> int:
    """Check the arguments and the photo, invert, then write the session and its files."""
    import torch

    from ..models import default_model_name, load_model
    from .edit import edit_paths, session_from_image
    from .losses import LossWeights
    from .photo import read_photo
    from .pipeline import default_config, discriminator_for

    paths = edit_paths(args.out)
    if paths["session"].is_dir():
        raise DragkitError(f"--out {args.out} is a folder")
    if args.threads is not None:
        if args.threads < 1:
            raise DragkitError("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    cfg = default_config(pti=args.pti, align=args.align)
    cfg.alignment = args.alignment
    apply_step_arguments(cfg, args)
    if args.loss is not None:
        cfg.projection.weights = LossWeights.parse(args.loss)
        cfg.pti_config.weights = LossWeights.parse(args.loss)
    cfg.projection.optimize_noise = bool(args.optimize_noise)
    cfg.projection.seed = cfg.pti_config.seed = int(args.seed)
    cfg.projection.validate()
    cfg.pti_config.validate()
    photo = read_photo(args.image)  # a bad photo fails before the model is loaded
    model = args.model or default_model_name()
    try:
        G = load_model(model, device=args.device)
    except (RuntimeError, AssertionError) as exc:
        raise DragkitError(f"cannot load model {model!r} on {args.device}: {exc}") from None
    D = discriminator_for(model)
    if D is not None:
        D = D.to(args.device)
    s = session_from_image(G, photo, cfg, D=D, model=model, progress=_progress_printer(args.quiet))
    inv = s.inversion_result
    for w in inv.warnings:
        print(f"dragkit: warning: {w}", file=sys.stderr)
    written = s.edit_files.write(s, paths["session"])
    extra = f" (+ {written['generator'].name})" if "generator" in written else ""
    what = "PTI" if args.pti else "W+ projection"
    gen = written["generator"].name if "generator" in written else model
    print(f"{what}: PSNR {inv.psnr:.2f} dB, SSIM {inv.ssim:.3f}"
          + (f" (projection {inv.psnr_projection:.2f} dB)" if args.pti else "")
          + f" in {inv.seconds['total']:.0f} s -> {paths['session']}{extra}")
    print(f"to drag it: a spec with \"model\": \"{Path(paths['session'].parent, gen) if 'generator' in written else gen}\", "
          f"\"latent\": \"{written['latent'].name}\" (beside the spec) and your points")
    return 0
