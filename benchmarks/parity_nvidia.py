"""Parity of dragkit's generator with NVIDIA's reference implementation.

Builds NVIDIA generators with random weights using NVIDIA's own code (from a
checkout you point at), pickles them as a real training snapshot with
NVIDIA's ``torch_utils.persistence`` (``G``, ``D``, ``G_ema``,
``augment_pipe``, ``training_set_kwargs``), loads the pickle with dragkit's
safe reader, and prints the max abs difference of the images for the same
seed (psi 0.7, noise_mode='const'), plus the W difference.

This file contains no NVIDIA code; it imports theirs from ``--nvidia-repo``:
a ``stylegan2-ada-pytorch`` checkout (``training/networks.py``) or a
``stylegan3`` checkout (``training/networks_stylegan2.py``).  NVIDIA's ops
fall back to their pure-PyTorch reference paths on the CPU (no plugin is
compiled).  NVIDIA's fp16 blocks are run with ``force_fp32=True``: dragkit
computes in fp32 everywhere.

    python benchmarks/parity_nvidia.py --nvidia-repo ~/src/stylegan2-ada-pytorch
"""
from __future__ import annotations

import argparse
import copy
import importlib
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

CONFIGS = [
    # name, G kwargs (synthesis kwargs nested here; flattened for the stylegan3 code base)
    ("128px map2 skip", dict(img_resolution=128, mapping=dict(num_layers=2), synthesis=dict(channel_base=16384, channel_max=512, num_fp16_res=4, conv_clamp=256))),
    ("128px map8 skip", dict(img_resolution=128, mapping=dict(num_layers=8), synthesis=dict(channel_base=32768, channel_max=512, num_fp16_res=4, conv_clamp=256))),
    ("128px map8 resnet", dict(img_resolution=128, mapping=dict(num_layers=8), synthesis=dict(channel_base=16384, channel_max=512, architecture="resnet", conv_clamp=256))),
    ("128px map8 orig", dict(img_resolution=128, mapping=dict(num_layers=8), synthesis=dict(channel_base=16384, channel_max=512, architecture="orig"))),
    ("128px map8 cond c_dim=10", dict(img_resolution=128, c_dim=10, mapping=dict(num_layers=8), synthesis=dict(channel_base=16384, channel_max=512, conv_clamp=256))),
    ("512px map8 skip", dict(img_resolution=512, mapping=dict(num_layers=8), synthesis=dict(channel_base=32768, channel_max=512, num_fp16_res=4, conv_clamp=256))),
    ("512px map2 skip", dict(img_resolution=512, mapping=dict(num_layers=2), synthesis=dict(channel_base=16384, channel_max=512, num_fp16_res=4, conv_clamp=256))),
]


def import_nvidia(repo: Path):
    """Import NVIDIA's dnnlib, torch_utils and networks module from ``repo``."""
    sys.path.insert(0, str(repo))
    import dnnlib  # noqa: F401  (NVIDIA's)

    if (repo / "training" / "networks_stylegan2.py").is_file():
        return importlib.import_module("training.networks_stylegan2"), "stylegan3"
    return importlib.import_module("training.networks"), "stylegan2-ada-pytorch"


def randomize(module: torch.nn.Module, seed: int) -> None:
    """Give the zero-initialised parameters (biases, noise strengths) and w_avg random values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("noise_strength") or (name.endswith("bias") and ".affine." not in name):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
        for name, b in module.named_buffers():
            if name.endswith("w_avg"):
                b.copy_(torch.randn(b.shape, generator=gen))


def build(networks, flavour: str, cfg: dict, seed: int):
    import dnnlib

    torch.manual_seed(seed)
    res, c_dim = cfg["img_resolution"], cfg.get("c_dim", 0)
    common = dict(z_dim=512, c_dim=c_dim, w_dim=512, img_resolution=res, img_channels=3)
    mapping_kwargs = dnnlib.EasyDict(cfg["mapping"])
    if flavour == "stylegan3":  # flat synthesis kwargs, as the stylegan3 code base's train.py passes them
        G = networks.Generator(**common, mapping_kwargs=mapping_kwargs, **cfg["synthesis"])
    else:
        G = networks.Generator(**common, mapping_kwargs=mapping_kwargs, synthesis_kwargs=dnnlib.EasyDict(cfg["synthesis"]))
    randomize(G, seed)
    D = networks.Discriminator(c_dim=c_dim, img_resolution=res, img_channels=3, channel_base=cfg["synthesis"]["channel_base"], channel_max=512)
    snapshot = dict(
        training_set_kwargs=dict(class_name="training.dataset.ImageFolderDataset", path="/data/x.zip", resolution=res, use_labels=bool(c_dim)),
        G=G, D=D, G_ema=copy.deepcopy(G).eval(), augment_pipe=None,
    )
    return snapshot


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nvidia-repo", required=True, type=Path, help="stylegan2-ada-pytorch or stylegan3 checkout")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--only", default=None, help="run configs whose name contains this text")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    networks, flavour = import_nvidia(args.nvidia_repo.resolve())
    from dragkit.formats import load_checkpoint

    print(f"NVIDIA code base: {flavour} ({args.nvidia_repo}); torch {torch.__version__}; CPU")
    print("max|dImg|: dragkit vs NVIDIA, same seed; control: dragkit's image of seed+1 vs NVIDIA's (must be large)")
    print(f"{'config':<28} {'seed':>4} {'max|dW|':>10} {'max|dImg|':>10} {'control':>9} {'img range':>10} {'pkl MiB':>8} {'load s':>7}")
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, cfg) in enumerate(CONFIGS):
            if args.only and args.only not in name:
                continue
            snapshot = build(networks, flavour, cfg, seed=100 + i)
            path = Path(tmp) / "network-snapshot.pkl"
            with open(path, "wb") as f:
                pickle.dump(snapshot, f)
            t0 = time.perf_counter()
            G = load_checkpoint(path)
            t_load = time.perf_counter() - t0
            ref = snapshot["G_ema"]
            assert type(G).__module__.startswith("dragkit.") and not type(ref).__module__.startswith("dragkit.")
            for seed in args.seeds:
                z = torch.from_numpy(np.random.RandomState(seed).randn(1, 512)).float()
                c = torch.zeros([1, G.c_dim])
                if G.c_dim:
                    c[0, seed % G.c_dim] = 1
                w_ref = ref.mapping(z, c, truncation_psi=0.7)
                img_ref = ref.synthesis(w_ref, noise_mode="const", force_fp32=True)
                w = G.mapping(z, c if G.c_dim else None, truncation_psi=0.7)
                img = G.synthesis(w, noise_mode="const")
                dw = (w - w_ref).abs().max().item()
                di = (img - img_ref).abs().max().item()
                worst = max(worst, di)
                rng = img_ref.abs().max().item()
                z2 = torch.from_numpy(np.random.RandomState(seed + 1).randn(1, 512)).float()
                other = G.synthesis(G.mapping(z2, c if G.c_dim else None, truncation_psi=0.7), noise_mode="const")
                ctl = (other - img_ref).abs().max().item()
                print(f"{name:<28} {seed:>4} {dw:>10.2e} {di:>10.2e} {ctl:>9.2f} {rng:>10.2f} {path.stat().st_size / 2**20:>8.1f} {t_load:>7.2f}", flush=True)
    print(f"worst max abs image difference: {worst:.2e} ({'PASS' if worst < 1e-3 else 'FAIL'} at 1e-3)")
    return 0 if worst < 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
