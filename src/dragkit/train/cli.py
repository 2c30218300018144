"""``dragkit train``: train a StyleGAN2 generator (and export it).

Examples::

    # the bundled toy model (procedural data drawn on the fly)
    dragkit train --cfg toy --outdir runs/toy --kimg 60 --export runs/toy/toy
    # faces: the first 19,000 CelebA images, 128 px
    dragkit train --cfg faces128 --data celeba128_train.zip --data-range 0:19000 --outdir runs/faces
    # continue a stopped run (Ctrl-C writes a checkpoint first), train further
    dragkit train --outdir runs/toy --resume --kimg 80
    # ... with a lower learning rate and a longer EMA from here on
    dragkit train --outdir runs/toy --resume --kimg 120 --glr 0.001 --dlr 0.001 --ema-kimg 5
"""
from __future__ import annotations

import argparse
from typing import Any

from ..errors import DragkitError

_ARCH_FLAGS = (
    "z_dim", "w_dim", "map_layers", "g_channel_base", "g_channel_max", "d_channel_base", "d_channel_max",
    "mbstd_group", "batch", "resolution", "data", "data_range", "seed", "glr", "dlr", "gamma", "r1_interval",
    "pl_weight", "style_mixing", "ema_kimg", "diffaug", "xflip",
)


def register(sub: Any) -> None:
    """Add the ``train`` subcommand to the CLI's subparsers."""
    p = sub.add_parser(
        "train", help="train a StyleGAN2 generator (toy world or an image zip/folder)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--outdir", required=True, help="run folder (checkpoint, log.jsonl, sample grids)")
    p.add_argument("--cfg", default=None, help="preset: toy, faces128, tiny (flags below override it)")
    p.add_argument("--data", default=None,
                   help="zip or folder of PNG/JPEG/WebP images, or 'toy[:SEED]' for the procedural toy world")
    p.add_argument("--data-range", default=None, metavar="START:STOP",
                   help="use only images START..STOP-1 of the sorted file list (e.g. 0:19000)")
    p.add_argument("--resolution", type=int, default=None, help="toy world resolution (default 64)")
    p.add_argument("--kimg", type=float, default=None, help="train until this many thousand images (total)")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--resume", action="store_true", help="continue the run in --outdir")
    p.add_argument("--export", default=None, metavar="STEM",
                   help="at the end write the EMA generator as STEM.safetensors + STEM.json "
                        "and the discriminator as STEM.disc.*")
    p.add_argument("--export-fp16", action="store_true", help="store the exported generator's weights as float16")
    g = p.add_argument_group("networks")
    g.add_argument("--z-dim", type=int, default=None)
    g.add_argument("--w-dim", type=int, default=None)
    g.add_argument("--map-layers", type=int, default=None)
    g.add_argument("--g-channel-base", type=int, default=None)
    g.add_argument("--g-channel-max", type=int, default=None)
    g.add_argument("--d-channel-base", type=int, default=None)
    g.add_argument("--d-channel-max", type=int, default=None)
    g.add_argument("--mbstd-group", type=int, default=None)
    o = p.add_argument_group("optimisation")
    o.add_argument("--glr", type=float, default=None)
    o.add_argument("--dlr", type=float, default=None)
    o.add_argument("--gamma", type=float, default=None, help="R1 weight (default: 0.0002 * res^2 / batch)")
    o.add_argument("--r1-interval", type=int, default=None)
    o.add_argument("--pl-weight", type=float, default=None, help="path-length regularisation weight (0 = off)")
    o.add_argument("--style-mixing", type=float, default=None)
    o.add_argument("--ema-kimg", type=float, default=None)
    o.add_argument("--diffaug", default=None, help="DiffAugment policy, e.g. translation,cutout,color or none")
    o.add_argument("--xflip", default=None, action=argparse.BooleanOptionalAction, help="random x-flips of reals")
    r = p.add_argument_group("run")
    r.add_argument("--tick-kimg", type=float, default=None, help="log every this many kimg")
    r.add_argument("--snap-ticks", type=int, default=None, help="checkpoint every this many ticks")
    r.add_argument("--sample-ticks", type=int, default=None, help="sample grid every this many ticks")
    r.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    r.add_argument("--amp", default=None, action=argparse.BooleanOptionalAction,
                   help="bf16 autocast (CUDA only; default on for CUDA)")
    r.add_argument("--compile", action="store_true", help="torch.compile the main passes (helps on CUDA)")
    r.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from .export import export_networks
    from .loop import Trainer, TrainConfig, make_config

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DragkitError("--device cuda requested but CUDA is not available")
    overrides = {k: getattr(args, k, None) for k in _ARCH_FLAGS}
    for k in ("kimg", "tick_kimg", "snap_ticks", "sample_ticks"):
        overrides[k] = getattr(args, k)
    retune = None
    if args.resume:
        retune = {k: getattr(args, k) for k in Trainer.RETUNABLE if getattr(args, k, None) is not None}
        given = [k for k in _ARCH_FLAGS if getattr(args, k, None) is not None and k not in retune]
        if given or args.cfg:
            raise DragkitError(
                "--resume continues the run as configured; only --kimg, --glr, --dlr, --ema-kimg and "
                f"the tick/snap/sample intervals can change (got --{(given or ['cfg'])[0].replace('_', '-')})"
            )
        cfg = TrainConfig(**{k: v for k, v in overrides.items() if v is not None and k in ("kimg",)})
        # bookkeeping defaults come from the checkpoint unless given
        from .checkpoint import CHECKPOINT_NAME, load_checkpoint
        from pathlib import Path

        saved = load_checkpoint(Path(args.outdir) / CHECKPOINT_NAME)["config"]
        for k in ("kimg", "tick_kimg", "snap_ticks", "sample_ticks"):
            setattr(cfg, k, overrides[k] if overrides[k] is not None else saved[k])
    else:
        if args.data is None and (args.cfg or "") != "toy":
            raise DragkitError("--data is required (an image zip/folder, or 'toy')")
        cfg = make_config(args.cfg, **overrides)
    amp = args.amp if args.amp is not None else device.startswith("cuda")
    trainer = Trainer(cfg, args.outdir, resume=args.resume, device=device, amp=amp,
                      compile=args.compile, progress=not args.no_progress, retune=retune)
    status = trainer.train()
    if args.export:
        meta = {
            "trained_with": "dragkit train",
            "data": trainer.cfg.data,
            "data_range": trainer.cfg.data_range,
            "kimg": round(trainer.kimg, 3),
            "seed": trainer.cfg.seed,
            "preset": trainer.cfg.preset,
            "train_seconds": round(trainer.elapsed, 1),
        }
        paths = export_networks(trainer, args.export, metadata=meta,
                                dtype=torch.float16 if args.export_fp16 else None)
        print("exported " + ", ".join(str(p) for p in paths))
    return 130 if status == "interrupted" else 0
