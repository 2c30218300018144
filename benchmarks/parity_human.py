"""Parity of dragkit's non-square StyleGAN2 with StyleGAN-Human's network code.

StyleGAN-Human (Fu et al., ECCV 2022) trains stylegan2-ada-pytorch with a
``square`` switch: ``square=False`` gives a ``4 x 2`` const and ``H x H/2``
maps, hence ``H x W = H x H/2`` images (512 x 256, 1024 x 512).  This script
builds such generators with random weights using StyleGAN-Human's own
``training_scripts/sg2/training/networks.py`` (as shipped in the DragGAN
repository you point at), loads their state dict into
``dragkit.nets.Generator(..., square=False)`` with ``strict=True`` and prints,
for the same seeds (psi 0.7, noise_mode='const'), the max abs difference of
the image and of two block outputs, plus the difference of dragkit's
windowed block features (``dragkit.drag.features.block_features`` on a box
near the right edge) from the reference's full map.  The square case of the
same code is checked too.

This file contains no code of StyleGAN-Human or NVIDIA; it imports theirs
from ``--draggan-repo`` (``stylegan_human/``); their ops fall back to the
pure-PyTorch reference paths on the CPU.

    PYTHONPATH=src python benchmarks/parity_human.py --draggan-repo ~/src/DragGAN
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import torch

CONFIGS = [
    # name, G kwargs; square=False is StyleGAN-Human's layout
    ("64x32 tiny", dict(z_dim=32, w_dim=32, img_resolution=64, square=False, mapping=dict(num_layers=2), synthesis=dict(channel_base=2048, channel_max=64))),
    ("64x32 resnet clamp", dict(z_dim=32, w_dim=32, img_resolution=64, square=False, mapping=dict(num_layers=2), synthesis=dict(channel_base=2048, channel_max=64, architecture="resnet", conv_clamp=256))),
    ("64x32 orig c_dim=3", dict(z_dim=32, w_dim=32, img_resolution=64, c_dim=3, square=False, mapping=dict(num_layers=2), synthesis=dict(channel_base=2048, channel_max=64, architecture="orig"))),
    ("64x64 square", dict(z_dim=32, w_dim=32, img_resolution=64, square=True, mapping=dict(num_layers=2), synthesis=dict(channel_base=2048, channel_max=64))),
    ("512x256 (SHHQ layout)", dict(z_dim=512, w_dim=512, img_resolution=512, square=False, mapping=dict(num_layers=8), synthesis=dict(channel_base=32768, channel_max=512, num_fp16_res=4, conv_clamp=256))),
]


def import_human(repo: Path):
    """Import StyleGAN-Human's sg2 ``networks.py`` (by file path: its package name clashes)."""
    root = repo / "stylegan_human"
    path = root / "training_scripts" / "sg2" / "training" / "networks.py"
    if not path.is_file():
        sys.exit(f"{path} not found: --draggan-repo must be a DragGAN checkout with stylegan_human/")
    try:
        import pkg_resources  # noqa: F401
    except ImportError:  # conv2d_gradfix imports parse_version from it
        from packaging.version import parse as parse_version

        sys.modules["pkg_resources"] = types.SimpleNamespace(parse_version=parse_version)  # type: ignore[assignment]
    sys.path.insert(0, str(root))  # torch_utils, dnnlib
    spec = importlib.util.spec_from_file_location("stylegan_human_sg2_networks", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def randomize(G: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength") or (name.endswith("bias") and ".affine." not in name):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
        for name, b in G.named_buffers():
            if name.endswith("w_avg"):
                b.copy_(torch.randn(b.shape, generator=gen))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draggan-repo", required=True, type=Path, help="a DragGAN checkout (holds stylegan_human/)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--only", default=None)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    human = import_human(args.draggan_repo.resolve())
    import dnnlib  # theirs, from stylegan_human/

    from dragkit.drag.features import block_features
    from dragkit.nets import Generator

    print(f"StyleGAN-Human sg2 networks.py ({args.draggan_repo}); torch {torch.__version__}; CPU")
    print("max|d|: dragkit vs StyleGAN-Human, same seed; control: dragkit's image of seed+1 vs theirs")
    print(f"{'config':<22} {'seed':>4} {'image':>9} {'max|dImg|':>10} {'max|dF|':>9} {'window':>9} {'control':>8}")
    worst = 0.0
    for i, (name, cfg) in enumerate(CONFIGS):
        if args.only and args.only not in name:
            continue
        torch.manual_seed(200 + i)
        c_dim = cfg.get("c_dim", 0)
        ref = human.Generator(cfg["z_dim"], c_dim, cfg["w_dim"], cfg["img_resolution"], cfg["square"], 3,
                              mapping_kwargs=dnnlib.EasyDict(cfg["mapping"]),
                              synthesis_kwargs=dnnlib.EasyDict(cfg["synthesis"]))
        randomize(ref, 200 + i)
        ref = copy.deepcopy(ref).eval()
        G = Generator(cfg["z_dim"], c_dim, cfg["w_dim"], cfg["img_resolution"], 3, mapping_kwargs=cfg["mapping"],
                      synthesis_kwargs={**cfg["synthesis"], "square": cfg["square"]}).eval()
        G.load_state_dict(ref.state_dict(), strict=True)
        blocks = G.synthesis.block_resolutions
        probe = [blocks[len(blocks) // 2], blocks[-2]]
        for seed in args.seeds:
            z = torch.from_numpy(np.random.RandomState(seed).randn(1, cfg["z_dim"])).float()
            c = torch.zeros([1, c_dim])
            if c_dim:
                c[0, seed % c_dim] = 1
            w_ref = ref.mapping(z, c, truncation_psi=0.7)
            img_ref, feats_ref = ref.synthesis(w_ref, return_feature=True, noise_mode="const", force_fp32=True)
            w = G.mapping(z, c if c_dim else None, truncation_psi=0.7)
            img, feats = G.synthesis.run(w, feature_blocks=probe)
            di = (img - img_ref).abs().max().item()
            df = max((feats[r] - feats_ref[blocks.index(r)]).abs().max().item() for r in probe)
            # A window touching the right edge of the top probe block, computed on the window only.
            r = probe[-1]
            h, wd = G.synthesis.block_size(r)
            box = (wd - wd // 3, h // 4, wd, h // 4 + h // 3)
            win, _origin = block_features(G, w, r, box)
            full = feats_ref[blocks.index(r)][:, :, box[1]:box[3], box[0]:box[2]]
            dwin = (win - full).abs().max().item()
            worst = max(worst, di, df, dwin)
            z2 = torch.from_numpy(np.random.RandomState(seed + 1).randn(1, cfg["z_dim"])).float()
            other = G.synthesis(G.mapping(z2, c if c_dim else None, truncation_psi=0.7))
            ctl = (other - img_ref).abs().max().item()
            shape = f"{img.shape[2]}x{img.shape[3]}"
            print(f"{name:<22} {seed:>4} {shape:>9} {di:>10.2e} {df:>9.2e} {dwin:>9.2e} {ctl:>8.3f}", flush=True)
    print(f"worst max abs difference: {worst:.2e} ({'PASS' if worst < 1e-3 else 'FAIL'} at 1e-3)")
    return 0 if worst < 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
