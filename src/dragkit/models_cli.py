"""``dragkit models``, ``dragkit generate`` and ``dragkit convert``."""
from __future__ import annotations

import argparse
import io
import math
from pathlib import Path

import numpy as np
import torch

from .errors import DragkitError
from .models import default_model_name, list_models, load_model


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list bundled and cached models, or describe one checkpoint (--info)")
    p.add_argument("--info", metavar="PATH", default=None,
                   help="describe a checkpoint (path or model name) without building or running anything from it")
    p.add_argument("--json", action="store_true", help="with --info: print the description as JSON")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("generate", help="render an image from a seed, or a grid of images from several seeds")
    p.add_argument("--model", default=None, help="model name or checkpoint path (default: the app's default)")
    p.add_argument("--seed", required=True, metavar="SEEDS",
                   help="a seed (0 .. 2^32-1), or several as a list and ranges (0-63, 1,5,9): one grid image")
    p.add_argument("--cols", type=int, default=None,
                   help="grid columns for several seeds (default: a square grid)")
    p.add_argument("--psi", type=float, default=0.7, help="truncation psi, -1 .. 2 (default 0.7)")
    p.add_argument("--noise-mode", default="const", choices=["const", "random", "none"])
    p.add_argument("--out", required=True, help="output image (.png/.jpg/.webp)")
    p.add_argument("--scale", type=int, default=1,
                   help="enlarge the image (or each grid cell) N times, nearest neighbour: crisp small models (default 1)")
    p.add_argument("--latent-out", default=None, help="also write the W+ latent [1, num_ws, w_dim] as .npy")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("convert", help="convert an NVIDIA .pkl or rosinality .pt checkpoint to native")
    p.add_argument("src", metavar="IN")
    p.add_argument("dst", metavar="OUT", help="output stem or .safetensors path (writes .safetensors + .json)")
    p.add_argument("--fp16", action="store_true", help="store weights as float16")
    p.set_defaults(func=cmd_convert)


def cmd_models(args: argparse.Namespace) -> int:
    if getattr(args, "info", None):
        return _cmd_info(args.info, as_json=bool(getattr(args, "json", False)))
    models = list_models()
    if not models:
        print("no models found")
        return 0
    default = default_model_name()
    print(f"{'name':<16} {'source':<8} {'H x W':>9} {'size':>9}  {'format':<11} path")
    for m in models:
        mark = " (default)" if m.name == default else ""
        print(f"{m.name:<16} {m.source:<8} {m.size_text:>9} {_size(m.size_bytes):>9}  {m.format:<11} {m.path}{mark}")
    return 0


_FORMATS = {
    "native": "dragkit native (safetensors + JSON)",
    "nvidia-pkl": "NVIDIA network pickle (PyTorch), read by dragkit's restricted unpickler",
    "tf-pkl": "NVIDIA TensorFlow-era pickle (G, D, Gs), read by dragkit's restricted unpickler; "
              "`dragkit convert` makes it native",
    "rosinality": "rosinality stylegan2-pytorch .pt (weights-only torch.load)",
    "nvidia-state-dict": "NVIDIA-named state dict in a .pt (weights-only torch.load)",
}


def _cmd_info(target: str, as_json: bool = False) -> int:
    import json

    from .drag.options import auto_feature_block, auto_feature_layer
    from .formats.info import STYLEGAN3, checkpoint_info
    from .models import resolve_model

    info = checkpoint_info(resolve_model(target))
    if info.network == STYLEGAN3:  # the last map is ToRGB
        default = info.feature_maps[auto_feature_layer(len(info.feature_maps) - 1)].name
    else:
        default = f"b{auto_feature_block([m.index for m in info.feature_maps], info.height)}"
    if as_json:
        d = info.to_dict()
        d["default_feature"] = default
        print(json.dumps(d, indent=2, sort_keys=True, default=str))
        return 0
    cond = f"class-conditional, c_dim {info.c_dim}" if info.c_dim else "unconditional"
    rows = [
        ("file", info.path),
        ("format", _FORMATS.get(info.format, info.format)),
        ("network", f"{info.architecture}  [{info.network}]"),
        ("image", f"{info.height} x {info.width} (H x W)"),
        ("mapping", f"{info.mapping_layers} layers, z_dim {info.z_dim}, w_dim {info.w_dim}"),
        ("conditioning", cond),
        ("W codes", f"{info.num_ws} (W+ latent [1, {info.num_ws}, {info.w_dim}])"),
        ("architecture", f"from {info.architecture_from}"),
        ("tensors", f"{info.tensor_values:,} values"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    if info.network == STYLEGAN3:
        print("feature layers (option feature_layer; map S x S, s samples per image width, "
              "margin (S - s) / 2 outside the image):")
        for m in info.feature_maps:
            notes = (["default for dragging"] if m.name == default else []) + \
                (["DragGAN's authors drag on this one"] if m.index == 5 else []) + \
                (["ToRGB, not a feature layer"] if m is info.feature_maps[-1] else [])
            note = f"  ({'; '.join(notes)})" if notes else ""
            print(f"  {m.index:>3}  {m.name:<14} {m.height:>4} x {m.width:<4} s {m.sampling_rate:<5} "
                  f"margin {m.margin:<5g} {m.channels:>5} ch{note}")
    else:
        print("feature blocks (option feature_block; block output, H x W; the drag default is marked):")
        for m in info.feature_maps:
            note = "  (default for dragging)" if m.name == default else ""
            print(f"  {m.name:<6} {m.height:>4} x {m.width:<4} {m.channels:>5} ch{note}")
    print("also in the file: " + ("; ".join(info.extras) if info.extras else "nothing else"))
    return 0


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def cmd_generate(args: argparse.Namespace) -> int:
    from .utils import atomic_write_bytes, check_scale, save_image_atomic, tensor_to_pil, upscale

    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
        raise DragkitError(f"{out}: unsupported image extension (use .png, .jpg or .webp)")
    if args.latent_out and Path(args.latent_out).suffix.lower() != ".npy":
        raise DragkitError(f"{args.latent_out}: latent output must be a .npy file")
    from .drag.options import check_psi

    check_psi(args.psi, "--psi")
    check_scale(args.scale)
    seeds = parse_seeds(args.seed)
    if args.cols is not None and not 1 <= args.cols <= len(seeds):
        raise DragkitError(f"--cols must be between 1 and the number of seeds ({len(seeds)}), got {args.cols}")
    G = load_model(args.model or default_model_name())
    n_cols = args.cols or math.ceil(math.sqrt(len(seeds)))
    check_scale(args.scale, (math.ceil(len(seeds) / n_cols) * G.img_height, n_cols * G.img_width))
    ws = torch.cat([G.ws_from_seed(s, psi=args.psi) for s in seeds])
    with torch.no_grad():
        imgs = torch.cat([G.synthesis(ws[i : i + 16], noise_mode=args.noise_mode) for i in range(0, len(seeds), 16)])
    cols = args.cols or math.ceil(math.sqrt(len(seeds)))
    save_image_atomic(upscale(tensor_to_pil(image_grid(imgs, cols)), args.scale), out)
    if args.latent_out:
        buf = io.BytesIO()
        np.save(buf, ws.cpu().numpy().astype(np.float32))
        atomic_write_bytes(args.latent_out, buf.getvalue())
    name = getattr(G, "model_name", args.model)
    if len(seeds) == 1:
        what = f"{G.img_height} x {G.img_width} px, model {name}, seed {seeds[0]}"
        if args.scale > 1:
            what += f", shown at {G.img_height * args.scale} x {G.img_width * args.scale} px"
    else:
        rows = math.ceil(len(seeds) / cols)
        what = f"{len(seeds)} images of {G.img_height} x {G.img_width} px in {rows} x {cols}, model {name}, seeds {args.seed}"
    print(f"wrote {out} ({what}, psi {args.psi})")
    return 0


#: Most images one ``dragkit generate`` renders (a grid of 32 x 32).
MAX_GRID_SEEDS = 1024


def parse_seeds(text: str) -> list[int]:
    """``"7"``, ``"0-63"`` or ``"1,5,9-12"`` -> the seeds, in order (each in ``0 .. MAX_SEED``).

    Raises:
        DragkitError: not a seed list, a seed out of range, a range that
            runs backwards, or more than :data:`MAX_GRID_SEEDS` seeds.
    """
    from .drag.options import MAX_SEED

    seeds: list[int] = []
    for part in str(text).split(","):
        if part.strip().startswith("-"):
            raise DragkitError(f"--seed: a seed must be between 0 and {MAX_SEED}, got {part.strip()[:24]}")
        lo, sep, hi = part.strip().partition("-")
        try:
            a = int(lo)
            b = int(hi) if sep else a
        except ValueError:
            raise DragkitError(f"--seed must be a whole number or a list of ranges like 0-63,100, got {text!r:.60}") from None
        for v in (a, b):
            if not 0 <= v <= MAX_SEED:
                raise DragkitError(f"--seed: a seed must be between 0 and {MAX_SEED}, got {v}")
        if b < a:
            raise DragkitError(f"--seed: the range {a}-{b} runs backwards")
        if len(seeds) + (b - a + 1) > MAX_GRID_SEEDS:
            raise DragkitError(f"--seed: at most {MAX_GRID_SEEDS} seeds in one grid")
        seeds.extend(range(a, b + 1))
    return seeds


def image_grid(imgs: torch.Tensor, cols: int) -> torch.Tensor:
    """``(N, C, H, W)`` images -> one ``(1, C, rows * H, cols * W)`` grid, row by row; empty cells black (-1)."""
    n, c, h, w = imgs.shape
    rows = math.ceil(n / cols)
    grid = imgs.new_full((rows * cols, c, h, w), -1.0)
    grid[:n] = imgs
    return grid.reshape(rows, cols, c, h, w).permute(2, 0, 3, 1, 4).reshape(1, c, rows * h, cols * w)


def cmd_convert(args: argparse.Namespace) -> int:
    from .formats import load_checkpoint, save_native

    G = load_checkpoint(args.src)
    weights, cfg = save_native(
        G, args.dst, metadata={"converted_from": Path(args.src).name}, dtype=torch.float16 if args.fp16 else None
    )
    print(f"wrote {weights} and {cfg}")
    return 0
