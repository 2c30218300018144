"""Parity of dragkit's StyleGAN3 generator with NVIDIA's reference implementation.

Builds NVIDIA StyleGAN3 generators (configs T and R) with random weights
using NVIDIA's own code (``training/networks_stylegan3.py`` of a ``stylegan3``
checkout you point at), gives the parameters and buffers that are zero or
one at initialisation random values (biases, the input's affine and
transform, ``magnitude_ema``, ``w_avg``), loads the ``G_ema`` state dict into
``dragkit.nets.stylegan3.Generator`` with ``strict=True`` and prints, for the
same seeds (psi 0.7, noise_mode='const'), the max abs difference of W, of
the output of synthesis layer 5 (the layer DragGAN's authors drag on) and of
the image.  It also prints how far the filters dragkit designs for a freshly
built generator are from NVIDIA's (informational: loaded generators use the
checkpoint's filters).

This file contains no NVIDIA code; it imports theirs from ``--nvidia-repo``.
NVIDIA's ops fall back to their pure-PyTorch reference paths on the CPU (no
plugin is compiled); their code needs ``scipy`` (e.g.
``pip install --target DIR scipy`` and ``DIR`` on ``PYTHONPATH``), and
``pkg_resources`` (a two-line stand-in is installed here when it is missing).

    PYTHONPATH=src:SCIPY_DIR python benchmarks/parity_stylegan3.py --nvidia-repo ~/src/stylegan3
"""
from __future__ import annotations

import argparse
import copy
import importlib
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

CONFIGS = [
    # name, NVIDIA Generator kwargs (flat synthesis kwargs, as NVIDIA's train.py passes them)
    ("T 32px tiny", dict(z_dim=32, w_dim=32, img_resolution=32, mapping_kwargs=dict(num_layers=2), channel_base=1024, channel_max=32)),
    ("T 32px tiny c_dim=4", dict(z_dim=32, c_dim=4, w_dim=32, img_resolution=32, mapping_kwargs=dict(num_layers=2), channel_base=1024, channel_max=32)),
    ("T 32px tiny transform", dict(z_dim=32, w_dim=32, img_resolution=32, mapping_kwargs=dict(num_layers=2), channel_base=1024, channel_max=32, transform=True)),
    ("R 32px tiny", dict(z_dim=32, w_dim=32, img_resolution=32, mapping_kwargs=dict(num_layers=2), channel_base=2048, channel_max=64, conv_kernel=1, use_radial_filters=True)),
    ("T 64px map8", dict(z_dim=64, w_dim=64, img_resolution=64, mapping_kwargs=dict(num_layers=8), channel_base=4096, channel_max=128, num_layers=10)),
    ("T 256px", dict(z_dim=512, w_dim=512, img_resolution=256, mapping_kwargs=dict(num_layers=2), channel_base=16384, channel_max=512, magnitude_ema_beta=0.5 ** (32 / 20000))),
    ("R 256px", dict(z_dim=512, w_dim=512, img_resolution=256, mapping_kwargs=dict(num_layers=2), channel_base=32768, channel_max=1024, conv_kernel=1, use_radial_filters=True, magnitude_ema_beta=0.5 ** (32 / 20000))),
]
FEATURE_LAYER = 5


def import_nvidia(repo: Path):
    """Import NVIDIA's ``training.networks_stylegan3`` from ``repo``."""
    try:
        import pkg_resources  # noqa: F401
    except ImportError:  # NVIDIA's conv2d_gradfix imports parse_version from it
        from packaging.version import parse as parse_version

        sys.modules["pkg_resources"] = types.SimpleNamespace(parse_version=parse_version)  # type: ignore[assignment]
    try:
        import scipy.signal  # noqa: F401
    except ImportError:
        sys.exit("NVIDIA's networks_stylegan3.py needs scipy: pip install --target DIR scipy, and put DIR on PYTHONPATH")
    sys.path.insert(0, str(repo))
    return importlib.import_module("training.networks_stylegan3")


def randomize(G: torch.nn.Module, seed: int, transform: bool) -> None:
    """Give the parameters and buffers that start at 0 or 1 random, trained-looking values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith(".bias") and ".affine." not in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
            elif name == "synthesis.input.affine.weight":
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
            elif name == "synthesis.input.affine.bias":
                p.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]) + torch.randn(4, generator=gen) * 0.1)
        for name, b in G.named_buffers():
            if name.endswith("magnitude_ema"):
                b.copy_(torch.rand([], generator=gen) * 1.5 + 0.25)
            elif name.endswith("w_avg"):
                b.copy_(torch.randn(b.shape, generator=gen))
            elif name.endswith("input.transform") and transform:
                a = 0.3
                b.copy_(torch.tensor([[np.cos(a), -np.sin(a), 0.07], [np.sin(a), np.cos(a), -0.04], [0, 0, 1]], dtype=torch.float32))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nvidia-repo", required=True, type=Path, help="a stylegan3 checkout (training/networks_stylegan3.py)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--only", default=None, help="run configs whose name contains this text")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    nv = import_nvidia(args.nvidia_repo.resolve())
    from dragkit.nets.stylegan3 import Generator

    print(f"NVIDIA stylegan3 code base ({args.nvidia_repo}); torch {torch.__version__}; CPU, {torch.get_num_threads()} threads")
    print(f"max|d|: dragkit vs NVIDIA, same seed; control: dragkit's image of seed+1 vs NVIDIA's (must be large); L{FEATURE_LAYER} = output of layer {FEATURE_LAYER}")
    print(f"{'config':<22} {'seed':>4} {'max|dW|':>9} {'max|dL5|':>9} {'max|dImg|':>10} {'control':>8} {'img range':>9} {'NV s':>6} {'dk s':>6}")
    worst = 0.0
    for i, (name, cfg) in enumerate(CONFIGS):
        if args.only and args.only not in name:
            continue
        cfg = dict(cfg)
        transform = cfg.pop("transform", False)
        kwargs = {"c_dim": 0, "img_channels": 3, **cfg}
        torch.manual_seed(100 + i)
        ref = nv.Generator(**kwargs)
        randomize(ref, 100 + i, transform)
        ref = copy.deepcopy(ref).eval()
        G = Generator(**kwargs).eval()
        designed = {k: v.clone() for k, v in G.state_dict().items() if k.endswith("_filter")}
        G.load_state_dict(ref.state_dict(), strict=True)
        assert type(G).__module__.startswith("dragkit.") and not type(ref).__module__.startswith("dragkit.")
        filt = max((designed[k] - v).abs().max().item() for k, v in ref.state_dict().items() if k.endswith("_filter"))
        captured: dict[str, torch.Tensor] = {}
        layer_name = ref.synthesis.layer_names[FEATURE_LAYER]
        hook = getattr(ref.synthesis, layer_name).register_forward_hook(lambda m, inp, out: captured.__setitem__("f", out))
        for seed in args.seeds:
            z = torch.from_numpy(np.random.RandomState(seed).randn(1, kwargs["z_dim"])).float()
            c = torch.zeros([1, kwargs["c_dim"]])
            if kwargs["c_dim"]:
                c[0, seed % kwargs["c_dim"]] = 1
            t0 = time.perf_counter()
            w_ref = ref.mapping(z, c, truncation_psi=0.7)
            img_ref = ref.synthesis(w_ref, noise_mode="const", force_fp32=True)
            t_ref = time.perf_counter() - t0
            t0 = time.perf_counter()
            w = G.mapping(z, c if kwargs["c_dim"] else None, truncation_psi=0.7)
            img, feats = G.synthesis.run(w, feature_layers=[FEATURE_LAYER])
            t_dk = time.perf_counter() - t0
            dw = (w - w_ref).abs().max().item()
            df = (feats[FEATURE_LAYER] - captured["f"]).abs().max().item()
            di = (img - img_ref).abs().max().item()
            worst = max(worst, di, df)
            z2 = torch.from_numpy(np.random.RandomState(seed + 1).randn(1, kwargs["z_dim"])).float()
            other = G.synthesis(G.mapping(z2, c if kwargs["c_dim"] else None, truncation_psi=0.7))
            ctl = (other - img_ref).abs().max().item()
            print(f"{name:<22} {seed:>4} {dw:>9.2e} {df:>9.2e} {di:>10.2e} {ctl:>8.3f} {img_ref.abs().max().item():>9.3f} {t_ref:>6.2f} {t_dk:>6.2f}", flush=True)
        hook.remove()
        geo = G.synthesis.layer_geometry(FEATURE_LAYER)
        print(f"{'':<22} L{FEATURE_LAYER} = {geo.name}: {geo.size} px map, {geo.sampling_rate} samples/image width, margin {geo.margin:g} px; "
              f"designed filters vs NVIDIA's: max|d| {filt:.1e}")
    print(f"worst max abs difference (image and L{FEATURE_LAYER}): {worst:.2e} ({'PASS' if worst < 1e-3 else 'FAIL'} at 1e-3)")
    return 0 if worst < 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
