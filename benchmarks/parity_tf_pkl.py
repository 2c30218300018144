"""Parity of dragkit's TF-pickle conversion with NVIDIA's own converter (``legacy.py``).

Writes random TensorFlow-layout network states - the variables NVIDIA's
TensorFlow ``G_main`` / ``G_mapping`` / ``G_synthesis_stylegan2`` and
``D_stylegan2`` create, with the shapes those functions give them (listed
here from the TF code's structure, not taken from any PyTorch network) -
converts each with NVIDIA's ``legacy.convert_tf_generator`` /
``convert_tf_discriminator`` (from the checkout you point at) and with
``dragkit.formats.tf_pkl``, and prints the max abs difference of the images
(same seeds, psi 0.7, noise_mode='const') and of the discriminator logits.

This file contains no NVIDIA code; it imports theirs from ``--nvidia-repo``
(a ``stylegan3`` checkout: ``legacy.py`` + ``training/networks_stylegan2.py``).

    PYTHONPATH=src python benchmarks/parity_tf_pkl.py --nvidia-repo ~/src/stylegan3
"""
from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import numpy as np
import torch

CONFIGS = [
    # name, G static kwargs (as recorded in the pickle), D too?
    ("config-f 256 (cat)", dict(num_channels=3, resolution=256, label_size=0), True),
    ("config-f 512 (car)", dict(num_channels=3, resolution=512, label_size=0), True),
    ("config-e Gorig 128", dict(num_channels=3, resolution=128, label_size=0, fmap_base=8192, architecture="orig"), True),
    ("config-e Gresnet 128", dict(num_channels=3, resolution=128, label_size=0, fmap_base=8192, architecture="resnet"), True),
    ("ada-TF cond 64 clamp", dict(num_channels=3, resolution=64, label_size=5, mapping_layers=2, fmap_base=4096,
                                  fmap_max=256, num_fp16_res=4, conv_clamp=256, latent_size=256, dlatent_size=256), False),
]


def nf(stage: int, kw: dict) -> int:
    return int(np.clip(int(kw.get("fmap_base", 16384) / 2.0**stage), 1, kw.get("fmap_max", 512)))


def tf_generator_variables(kw: dict, rng: np.random.RandomState):
    """(G, mapping, synthesis) variable lists of TF StyleGAN2's generator for static kwargs ``kw``."""
    z, w = kw.get("latent_size", 512), kw.get("dlatent_size", 512)
    labels, res = kw.get("label_size", 0), kw["resolution"]
    arch, img_c = kw.get("architecture", "skip"), kw.get("num_channels", 3)
    log2 = int(np.log2(res))
    n = lambda *shape, s=1.0: np.asarray(rng.randn(*shape) * s, dtype=np.float32)  # noqa: E731
    g = [("lod", np.zeros((), np.float32)), ("dlatent_avg", n(w))]
    mapping = []
    fin = z
    if labels:  # stylegan2-ada's LabelEmbed (label_fmaps default = latent_size)
        mapping += [("LabelEmbed/weight", n(labels, z)), ("LabelEmbed/bias", n(z, s=0.2))]
        fin = 2 * z
    layers = kw.get("mapping_layers", 8)
    hidden = kw.get("mapping_fmaps", w if "mapping_layers" in kw else 512)
    for i in range(layers):
        fout = w if i == layers - 1 else hidden
        mapping += [(f"Dense{i}/weight", n(fin, fout, s=100.0)), (f"Dense{i}/bias", n(fout, s=20.0))]  # lrmul 0.01
        fin = fout

    def modconv(scope: str, cin: int, cout: int, k: int, noise: bool = True):
        out = [(f"{scope}/weight", n(k, k, cin, cout)), (f"{scope}/mod_weight", n(w, cin)),
               (f"{scope}/mod_bias", n(cin, s=0.2)), (f"{scope}/bias", n(cout, s=0.2))]
        return out + ([(f"{scope}/noise_strength", n(s=0.2).reshape(()))] if noise else [])

    syn = [(f"noise{j}", n(1, 1, 2 ** ((j + 5) // 2), 2 ** ((j + 5) // 2))) for j in range(2 * log2 - 3)]
    syn += [("4x4/Const/const", n(1, nf(1, kw), 4, 4))] + modconv("4x4/Conv", nf(1, kw), nf(1, kw), 3)
    if arch == "skip":
        syn += modconv("4x4/ToRGB", nf(1, kw), img_c, 1, noise=False)
    for r in range(3, log2 + 1):
        cin, cout = nf(r - 2, kw), nf(r - 1, kw)
        syn += modconv(f"{2**r}x{2**r}/Conv0_up", cin, cout, 3) + modconv(f"{2**r}x{2**r}/Conv1", cout, cout, 3)
        if arch == "resnet":
            syn.append((f"{2**r}x{2**r}/Skip/weight", n(1, 1, cin, cout)))
        if arch == "skip" or r == log2:
            syn += modconv(f"{2**r}x{2**r}/ToRGB", cout, img_c, 1, noise=False)
    return g, mapping, syn


def tf_discriminator_variables(kw: dict, rng: np.random.RandomState):
    """Variables of TF StyleGAN2's resnet ``D_stylegan2``."""
    res, img_c = kw["resolution"], kw.get("num_channels", 3)
    log2 = int(np.log2(res))
    n = lambda *shape, s=1.0: np.asarray(rng.randn(*shape) * s, dtype=np.float32)  # noqa: E731
    out = [(f"{res}x{res}/FromRGB/weight", n(1, 1, img_c, nf(log2 - 1, kw))), (f"{res}x{res}/FromRGB/bias", n(nf(log2 - 1, kw), s=0.2))]
    for r in range(log2, 2, -1):
        c, c2 = nf(r - 1, kw), nf(r - 2, kw)
        out += [(f"{2**r}x{2**r}/Conv0/weight", n(3, 3, c, c)), (f"{2**r}x{2**r}/Conv0/bias", n(c, s=0.2)),
                (f"{2**r}x{2**r}/Conv1_down/weight", n(3, 3, c, c2)), (f"{2**r}x{2**r}/Conv1_down/bias", n(c2, s=0.2)),
                (f"{2**r}x{2**r}/Skip/weight", n(1, 1, c, c2))]
    c4 = nf(1, kw)
    out += [("4x4/Conv/weight", n(3, 3, c4 + 1, c4)), ("4x4/Conv/bias", n(c4, s=0.2)),
            ("4x4/Dense0/weight", n(c4 * 16, nf(0, kw))), ("4x4/Dense0/bias", n(nf(0, kw), s=0.2)),
            ("Output/weight", n(nf(0, kw), 1)), ("Output/bias", n(1))]
    return out


def state(name: str, func: str, variables: list, static: dict, components: dict | None = None) -> dict:
    return {"version": 4, "name": name, "static_kwargs": dict(static), "components": dict(components or {}),
            "build_module_src": "", "build_func_name": func, "variables": variables}


def to_stub(legacy, st: dict):
    """The same state as NVIDIA's converter sees it (its ``_TFNetworkStub``)."""
    import dnnlib

    return legacy._TFNetworkStub(version=st["version"], name=st["name"], static_kwargs=dnnlib.EasyDict(st["static_kwargs"]),
                                 components=dnnlib.EasyDict({k: to_stub(legacy, v) for k, v in st["components"].items()}),
                                 build_module_src=st["build_module_src"], build_func_name=st["build_func_name"],
                                 variables=st["variables"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nvidia-repo", required=True, type=Path, help="a stylegan3 checkout (legacy.py)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--only", default=None)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    try:
        import pkg_resources  # noqa: F401
    except ImportError:  # NVIDIA's conv2d_gradfix imports parse_version from it
        from packaging.version import parse as parse_version

        sys.modules["pkg_resources"] = types.SimpleNamespace(parse_version=parse_version)  # type: ignore[assignment]
    sys.path.insert(0, str(args.nvidia_repo.resolve()))
    import legacy  # NVIDIA's

    from dragkit.formats.tf_pkl import convert_tf_discriminator, convert_tf_generator
    from dragkit.nets import Generator
    from dragkit.nets.discriminator import Discriminator

    print(f"NVIDIA legacy.py ({args.nvidia_repo}); torch {torch.__version__}; CPU")
    print(f"{'config':<22} {'seed':>4} {'max|dImg|':>10} {'control':>8} {'img range':>9} {'max|dLogit| (4 imgs)':>21}")
    worst = 0.0
    for i, (name, static, with_d) in enumerate(CONFIGS):
        if args.only and args.only not in name:
            continue
        rng = np.random.RandomState(300 + i)
        g, m, s = tf_generator_variables(static, rng)
        tf_g = state("Gs", "G_main", g, static, {"mapping": state("G_mapping", "G_mapping", m, static),
                                                   "synthesis": state("G_synthesis", "G_synthesis_stylegan2", s, static)})
        ref = legacy.convert_tf_generator(to_stub(legacy, tf_g)).eval()
        kwargs, sd = convert_tf_generator(tf_g, name)
        G = Generator(**kwargs).eval()
        G.load_state_dict(sd, strict=True)
        dlogit = float("nan")
        if with_d:
            d_static = {k: v for k, v in static.items() if k in ("num_channels", "resolution", "label_size", "fmap_base", "fmap_max")}
            tf_d = state("D", "D_stylegan2", tf_discriminator_variables(d_static, rng), d_static)  # config-e: Dresnet
            ref_d = legacy.convert_tf_discriminator(to_stub(legacy, tf_d)).eval()
            dk, dsd = convert_tf_discriminator(tf_d, name)
            D = Discriminator(**dk).eval()
            D.load_state_dict(dsd, strict=True)
            imgs = torch.from_numpy(rng.randn(4, 3, static["resolution"], static["resolution"]).astype(np.float32))
            dlogit = (D(imgs) - ref_d(imgs, None, force_fp32=True)).abs().max().item()
            worst = max(worst, dlogit)
        for seed in args.seeds:
            z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float()
            c = torch.zeros([1, G.c_dim])
            if G.c_dim:
                c[0, seed % G.c_dim] = 1
            img_ref = ref.synthesis(ref.mapping(z, c, truncation_psi=0.7), noise_mode="const", force_fp32=True)
            img = G.synthesis(G.mapping(z, c if G.c_dim else None, truncation_psi=0.7), noise_mode="const")
            di = (img - img_ref).abs().max().item()
            worst = max(worst, di)
            z2 = torch.from_numpy(np.random.RandomState(seed + 1).randn(1, G.z_dim)).float()
            ctl = (G.synthesis(G.mapping(z2, c if G.c_dim else None, truncation_psi=0.7)) - img_ref).abs().max().item()
            print(f"{name:<22} {seed:>4} {di:>10.2e} {ctl:>8.2f} {img_ref.abs().max().item():>9.2f} {dlogit:>21.2e}", flush=True)
    print(f"worst max abs difference: {worst:.2e} ({'PASS' if worst < 1e-3 else 'FAIL'} at 1e-3)")
    return 0 if worst < 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
