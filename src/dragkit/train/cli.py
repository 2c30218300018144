"""``dragkit train``: train a StyleGAN2 generator (and export it).

Examples::

    # the bundled toy model (procedural data drawn on the fly)
    dragkit train --cfg toy --outdir runs/toy --kimg 60 --export runs/toy/toy
    # faces: the first 19,000 CelebA images, 128 px
    dragkit train --cfg faces128 --data celeba128_train.zip --data-range 0:19000 --outdir runs/faces
    # fine-tune a model (any format load_model reads) on your own pictures
    dragkit train --cfg faces128 --init-from ffhq-128.pkl --data mine.zip --outdir runs/mine
    # continue a run from its export when the checkpoint is gone (fresh optimiser states)
    dragkit train --cfg faces128 --data celeba128_train.zip --data-range 0:19000 --init-from faces128 \
        --init-kimg 228.048 --kimg 600 --outdir runs/faces-cont
    # several GPUs (or CPU processes, gloo) on one machine; each takes batch/N
    torchrun --nproc_per_node 4 -m dragkit train --cfg faces128 --data faces.zip --outdir runs/faces
    # continue a stopped run (Ctrl-C writes a checkpoint first), train further
    dragkit train --outdir runs/toy --resume --kimg 80
    # ... with a lower learning rate and a longer EMA from here on
    dragkit train --outdir runs/toy --resume --kimg 120 --glr 0.001 --dlr 0.001 --ema-kimg 5
"""
from __future__ import annotations

import argparse
from typing import Any

from ..errors import DragkitError

# Flags that fix the networks' shapes (taken from the model with --init-from).
_MODEL_ARCH_FLAGS = ("z_dim", "w_dim", "map_layers", "g_channel_base", "g_channel_max", "d_channel_base",
                     "d_channel_max", "mbstd_group")
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
    p.add_argument("--init-from", default=None, metavar="MODEL",
                   help="start a new run from this model (bundled name or path: native, NVIDIA .pkl with its D, "
                        "rosinality .pt) instead of random weights; the architecture is the model's")
    p.add_argument("--init-kimg", type=float, default=None, metavar="KIMG",
                   help="with --init-from: the images (thousands) that model has seen; the run counts on "
                        "from there (--kimg stays the total, the EMA ramp-up continues)")
    p.add_argument("--export", default=None, metavar="STEM",
                   help="at the end write the EMA generator as STEM.safetensors + STEM.json "
                        "and the discriminator as STEM.disc.*")
    p.add_argument("--export-fp16", action="store_true", help="store the exported generator's weights as float16")
    p.add_argument("--export-now", action="store_true",
                   help="only export the run's latest checkpoint to --export and exit (safe while it trains)")
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
                   help="bf16 autocast of the main passes (default: on where the device has native bf16: "
                        "CUDA sm80+, CPUs with AVX-512 BF16 or AMX)")
    r.add_argument("--compile", action="store_true",
                   help="torch.compile the main passes (x1.27 for faces128 on a 2-core AVX2 CPU; minutes to compile)")
    r.add_argument("--channels-last", default=None, action=argparse.BooleanOptionalAction,
                   help="channels-last memory layout (default: on for the CPU, x1.13 for faces128)")
    r.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: all cores, divided among torchrun's local processes)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


#: Numeric flags and their ranges (lo, hi; None = unbounded), checked before anything runs:
#: a bad value is one line, not a traceback from deep inside the trainer.
_RANGES = {
    "kimg": (1e-6, None), "batch": (1, None), "resolution": (4, 4096), "seed": (0, 2**32 - 1),
    "z_dim": (1, None), "w_dim": (1, None), "map_layers": (1, None), "g_channel_base": (1, None),
    "g_channel_max": (1, None), "d_channel_base": (1, None), "d_channel_max": (1, None), "mbstd_group": (1, None),
    "glr": (1e-12, None), "dlr": (1e-12, None), "gamma": (0, None), "r1_interval": (1, None),
    "pl_weight": (0, None), "style_mixing": (0, 1), "ema_kimg": (1e-6, None), "tick_kimg": (1e-6, None),
    "snap_ticks": (1, None), "sample_ticks": (1, None), "init_kimg": (0, None),
}


def check_ranges(args: argparse.Namespace) -> None:
    """Every numeric flag given is finite and within :data:`_RANGES` (``DragkitError`` naming the flag)."""
    import math

    for name, (lo, hi) in _RANGES.items():
        v = getattr(args, name, None)
        if v is None:
            continue
        flag = "--" + name.replace("_", "-")
        if not math.isfinite(v) or v < lo or (hi is not None and v > hi):
            want = f"between {lo:g} and {hi:g}" if hi is not None else (f"at least {lo:g}" if lo >= 1 or lo == 0 else "above 0")
            raise DragkitError(f"{flag} must be {want}, got {v:g}")


def run(args: argparse.Namespace) -> int:
    import torch

    check_ranges(args)

    from .export import export_checkpoint, export_networks, run_metadata
    from .loop import Trainer, TrainConfig, make_config

    from .distributed import env_info

    procs = int(__import__("os").environ.get("LOCAL_WORLD_SIZE", env_info().world))
    if args.threads is not None:
        if args.threads < 1:
            raise DragkitError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    elif procs > 1:  # processes on one machine share its cores
        torch.set_num_threads(max(1, torch.get_num_threads() // procs))
    if args.export_now:
        if not args.export:
            raise DragkitError("--export-now needs --export STEM")
        from pathlib import Path

        from .checkpoint import CHECKPOINT_NAME

        paths = export_checkpoint(Path(args.outdir) / CHECKPOINT_NAME, args.export,
                                  dtype=torch.float16 if args.export_fp16 else None)
        print("exported " + ", ".join(str(p) for p in paths))
        return 0
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DragkitError("--device cuda requested but CUDA is not available")
    overrides = {k: getattr(args, k, None) for k in _ARCH_FLAGS}
    for k in ("kimg", "tick_kimg", "snap_ticks", "sample_ticks", "init_kimg"):
        overrides[k] = getattr(args, k)
    retune = None
    if args.resume:
        retune = {k: getattr(args, k) for k in Trainer.RETUNABLE if getattr(args, k, None) is not None}
        given = [k for k in _ARCH_FLAGS if getattr(args, k, None) is not None and k not in retune]
        if args.init_from or args.init_kimg is not None:
            raise DragkitError("--init-from starts a new run; --resume continues the checkpoint in --outdir")
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
        if args.init_from:
            clash = [k for k in _MODEL_ARCH_FLAGS if getattr(args, k, None) is not None]
            if clash:
                raise DragkitError(f"--init-from takes the architecture from the model; "
                                   f"--{clash[0].replace('_', '-')} cannot be set with it")
        cfg = make_config(args.cfg, **overrides)
    amp = args.amp  # None: the Trainer decides from the hardware
    trainer = Trainer(cfg, args.outdir, resume=args.resume, device=device, amp=amp,
                      compile=args.compile, progress=not args.no_progress, retune=retune,
                      init_from=args.init_from,
                      channels_last=args.channels_last if args.channels_last is not None else device == "cpu")
    import torch.distributed as dist

    try:
        status = trainer.train()
        if trainer.dist.enabled:  # every rank done before any tears its gloo threads down (a rank aborted at exit)
            dist.barrier()
    finally:
        if trainer.dist.enabled:
            dist.destroy_process_group()
    if args.export and trainer.dist.is_main:
        import dataclasses

        meta = run_metadata(dataclasses.asdict(trainer.cfg), trainer.kimg, trainer.elapsed)
        paths = export_networks(trainer, args.export, metadata=meta,
                                dtype=torch.float16 if args.export_fp16 else None)
        print("exported " + ", ".join(str(p) for p in paths))
    return 130 if status == "interrupted" else 0
