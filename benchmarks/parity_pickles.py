"""Parity of dragkit's pickle readers with files written by NVIDIA's and StyleGAN-Human's own code.

Phase 1's parity scripts compare networks through their state dicts; this
one compares *files*: each network is built by the reference code base
with random weights (the parameters and buffers that start at 0 or 1 made
random too), saved the way that code base saves it, then read back twice -
by the reference code's own loader and by ``dragkit.formats.load_checkpoint``
(the restricted unpickler, nothing from the file executed) - and the two
render the same seeds (psi 0.7, ``noise_mode='const'``, fp32).

``--nvidia-repo DIR`` (a stylegan3 checkout; ``networks_stylegan3`` needs
scipy on the path):

* StyleGAN3-T / -R snapshots: ``training.networks_stylegan3.Generator``
  with the kwargs NVIDIA's ``train.py`` passes (flat synthesis kwargs,
  ``magnitude_ema_beta``; R: ``conv_kernel=1``, ``use_radial_filters``,
  doubled channels), pickled as ``training_loop.py`` does
  (``dict(G, D, G_ema, augment_pipe, training_set_kwargs)``, NVIDIA's
  persistence embedding the module source).  Reference:
  ``legacy.load_network_pkl(f)['G_ema']``.
* StyleGAN2 snapshots of the same code base (``networks_stylegan2``,
  flat kwargs, ``fused_modconv_default``, fp16 blocks with
  ``fp16_channels_last``, class-conditional).
* TensorFlow-era ``(G, D, Gs)`` pickles (TF variable layouts of
  ``parity_tf_pkl.py``, pickled with a stand-in ``dnnlib.tflib.network.Network``
  whose state is what TF's ``__getstate__`` returns).  Reference: NVIDIA's
  ``legacy.load_network_pkl`` of the same file (its TF converter); dragkit
  reads the TF file and also the PyTorch pickle that NVIDIA's
  ``legacy.py`` conversion writes from it (the layout of the self-distilled
  ``*_pytorch.pkl`` files).  Discriminator logits too.

``--human-repo DIR`` (DragGAN's ``stylegan_human`` folder, which holds
StyleGAN-Human's code): ``training_scripts/sg2/training/networks.py``
generators with ``square=False``, pickled with its persistence: ``square``
as a keyword (its ``train.py``), as the fifth positional argument, and not
recorded at all.  Reference: the same file unpickled by StyleGAN-Human's
own code.

The two code bases share package names (``dnnlib``, ``torch_utils``), so
run the script once per repository.  This file contains no NVIDIA or
StyleGAN-Human code; it imports theirs from the folders given.

    PYTHONPATH=src:SCIPY_DIR python benchmarks/parity_pickles.py --nvidia-repo ~/src/stylegan3 [--big]
    PYTHONPATH=src python benchmarks/parity_pickles.py --human-repo ~/src/DragGAN/stylegan_human
"""
from __future__ import annotations

import argparse
import copy
import importlib
import importlib.util
import io
import pickle
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch

SG3_CONFIGS = [
    # name, kwargs as train.py + training_loop.py pass them (flat synthesis kwargs)
    ("StyleGAN3-T 32 tiny", dict(z_dim=32, w_dim=32, mapping_kwargs=dict(num_layers=2), channel_base=2048, channel_max=64,
                                 magnitude_ema_beta=0.5 ** (32 / 20e3), c_dim=0, img_resolution=32, img_channels=3)),
    ("StyleGAN3-R 32 tiny", dict(z_dim=32, w_dim=32, mapping_kwargs=dict(num_layers=2), channel_base=4096, channel_max=128,
                                 magnitude_ema_beta=0.5 ** (32 / 20e3), conv_kernel=1, use_radial_filters=True,
                                 c_dim=0, img_resolution=32, img_channels=3)),
    ("StyleGAN3-T 64 c_dim=3", dict(z_dim=64, w_dim=64, mapping_kwargs=dict(num_layers=2), channel_base=4096,
                                    channel_max=128, magnitude_ema_beta=0.999, c_dim=3, img_resolution=64, img_channels=3,
                                    num_fp16_res=0, conv_clamp=None)),
]
SG3_BIG = [
    ("StyleGAN3-T 256 (train.py)", dict(z_dim=512, w_dim=512, mapping_kwargs=dict(num_layers=2), channel_base=32768,
                                        channel_max=512, magnitude_ema_beta=0.5 ** (32 / 20e3), c_dim=0,
                                        img_resolution=256, img_channels=3)),
    ("StyleGAN3-R 256 (train.py)", dict(z_dim=512, w_dim=512, mapping_kwargs=dict(num_layers=2), channel_base=65536,
                                        channel_max=1024, magnitude_ema_beta=0.5 ** (32 / 20e3), conv_kernel=1,
                                        use_radial_filters=True, c_dim=0, img_resolution=256, img_channels=3)),
]
SG2_CONFIGS = [
    ("SG2 flat 64 fp16 cl c=4", dict(z_dim=64, w_dim=64, mapping_kwargs=dict(num_layers=4), channel_base=4096, channel_max=128,
                                     num_fp16_res=4, conv_clamp=256, fp16_channels_last=True,
                                     fused_modconv_default="inference_only", c_dim=4, img_resolution=64, img_channels=3)),
    ("SG2 flat 64 resnet", dict(z_dim=64, w_dim=64, mapping_kwargs=dict(num_layers=2), channel_base=4096, channel_max=128,
                                architecture="resnet", c_dim=0, img_resolution=64, img_channels=3)),
]
TF_CONFIGS = [
    ("TF config-f 64", dict(num_channels=3, resolution=64, label_size=0, fmap_base=2048, fmap_max=128)),
    ("TF config-e resnet 64", dict(num_channels=3, resolution=64, label_size=0, fmap_base=2048, fmap_max=128,
                                   architecture="resnet")),
    ("TF ada cond 32 clamp", dict(num_channels=3, resolution=32, label_size=5, mapping_layers=2, fmap_base=2048,
                                  fmap_max=128, num_fp16_res=4, conv_clamp=256, latent_size=64, dlatent_size=64)),
]
HUMAN_CONFIGS = [
    # name, (z, c, w, res), mapping, synthesis kwargs, how the file records square
    ("Human 64x32 kwargs", (32, 0, 32, 64), dict(num_layers=2), dict(channel_base=2048, channel_max=64), "kwargs"),
    ("Human 64x32 positional", (32, 0, 32, 64), dict(num_layers=2), dict(channel_base=2048, channel_max=64,
                                                                          architecture="resnet", conv_clamp=256), "args"),
    ("Human 64x32 unrecorded", (32, 0, 32, 64), dict(num_layers=2), dict(channel_base=2048, channel_max=64), "none"),
    ("Human 512x256 SHHQ", (512, 0, 512, 512), dict(num_layers=8), dict(channel_base=32768, channel_max=512,
                                                                         num_fp16_res=4, conv_clamp=256), "none"),
]


def _pkg_resources_shim() -> None:
    try:
        import pkg_resources  # noqa: F401
    except ImportError:  # their conv2d_gradfix imports parse_version from it
        from packaging.version import parse as parse_version

        sys.modules["pkg_resources"] = types.SimpleNamespace(parse_version=parse_version)  # type: ignore[assignment]


def randomize(G: torch.nn.Module, seed: int) -> None:
    """Trained-looking values for what starts at 0 or 1 (biases, noise strengths, input affine, magnitudes, w_avg)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength") or (name.endswith(".bias") and ".affine." not in name):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
            elif name == "synthesis.input.affine.weight":
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        for name, b in G.named_buffers():
            if name.endswith("magnitude_ema"):
                b.copy_(torch.rand([], generator=gen) * 1.5 + 0.25)
            elif name.endswith("w_avg"):
                b.copy_(torch.randn(b.shape, generator=gen))


def _zc(G, seed: int):
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float()
    c = torch.zeros([1, G.c_dim])
    if G.c_dim:
        c[0, seed % G.c_dim] = 1
    return z, c


def _compare(name: str, ref, mine, seeds, ref_kwargs=None) -> float:
    worst = 0.0
    for seed in seeds:
        z, c = _zc(ref, seed)
        t0 = time.perf_counter()
        img_ref = ref.synthesis(ref.mapping(z, c, truncation_psi=0.7), noise_mode="const", force_fp32=True,
                                **(ref_kwargs or {}))
        t_ref = time.perf_counter() - t0
        t0 = time.perf_counter()
        img = mine.synthesis(mine.mapping(z, c if mine.c_dim else None, truncation_psi=0.7), noise_mode="const")
        t_dk = time.perf_counter() - t0
        z2, _ = _zc(ref, seed + 1)
        other = mine.synthesis(mine.mapping(z2, c if mine.c_dim else None, truncation_psi=0.7), noise_mode="const")
        di = (img - img_ref).abs().max().item()
        ctl = (other - img_ref).abs().max().item()
        worst = max(worst, di)
        shape = f"{img.shape[2]}x{img.shape[3]}"
        print(f"{name:<38} {seed:>4} {shape:>8} {type(mine).__module__.split('.')[-1]:>10} {di:>10.2e} {ctl:>8.3f} "
              f"{img_ref.abs().max().item():>9.3f} {t_ref:>6.1f} {t_dk:>6.1f}", flush=True)
    return worst


def _header(title: str) -> None:
    print(title)
    print("max|dImg|: dragkit's load of the file vs the reference code's load of it, same seed, psi 0.7, const noise;")
    print("control: dragkit's image of seed+1 vs the reference (must be large); NV s / dk s: seconds per image")
    print(f"{'file':<38} {'seed':>4} {'H x W':>8} {'dragkit':>10} {'max|dImg|':>10} {'control':>8} {'img range':>9} "
          f"{'NV s':>6} {'dk s':>6}")


# --------------------------------------------------------------------------------------------------
# NVIDIA: stylegan3 code base snapshots and TensorFlow-era pickles.


def run_nvidia(repo: Path, seeds, big: bool, only: str | None) -> float:
    _pkg_resources_shim()
    try:
        import scipy.signal  # noqa: F401
    except ImportError:
        sys.exit("NVIDIA's networks_stylegan3.py needs scipy: pip install --target DIR scipy, and put DIR on PYTHONPATH")
    sys.path.insert(0, str(repo))
    import dnnlib
    import legacy
    from training import networks_stylegan2, networks_stylegan3

    from dragkit.formats import load_checkpoint, load_discriminator

    import parity_tf_pkl as tfp  # TF variable layouts (benchmarks/)

    print(f"NVIDIA stylegan3 code base ({repo}); torch {torch.__version__}; CPU, {torch.get_num_threads()} threads")
    _header("")
    worst = 0.0
    tmp = Path(tempfile.mkdtemp(prefix="dragkit-parity-"))

    def snapshot(G, kwargs, name: str) -> Path:
        D = networks_stylegan2.Discriminator(c_dim=kwargs["c_dim"], img_resolution=kwargs["img_resolution"],
                                             img_channels=3, channel_base=1024, channel_max=32)
        data = dict(G=copy.deepcopy(G).train(), D=D, G_ema=G, augment_pipe=None,
                    training_set_kwargs=dnnlib.EasyDict(class_name="training.dataset.ImageFolderDataset",
                                                        path="/data/x.zip", use_labels=bool(kwargs["c_dim"])))
        path = tmp / f"{name.replace(' ', '_')}.pkl"
        with open(path, "wb") as f:
            pickle.dump(data, f)  # what training_loop.py does
        return path

    def reference(path: Path):
        with open(path, "rb") as f:
            return legacy.load_network_pkl(f)["G_ema"].eval()

    configs = [(n, kw, networks_stylegan3.Generator) for n, kw in SG3_CONFIGS + (SG3_BIG if big else [])]
    configs += [(n, kw, networks_stylegan2.Generator) for n, kw in SG2_CONFIGS]
    for i, (name, kw, cls) in enumerate(configs):
        if only and only not in name:
            continue
        torch.manual_seed(500 + i)
        G = cls(**copy.deepcopy(kw))
        randomize(G, 500 + i)
        G = G.eval().requires_grad_(False)
        path = snapshot(G, kw, name)
        mine = load_checkpoint(path)
        worst = max(worst, _compare(name, reference(path), mine, seeds))

    # TensorFlow-era pickles, pickled against a stand-in Network whose state is TF's __getstate__ dict.
    class Network:
        def __init__(self, state: dict) -> None:
            self._state = state

        def __getstate__(self) -> dict:
            return self._state

    Network.__module__, Network.__qualname__ = "dnnlib.tflib.network", "Network"
    tflib = types.ModuleType("dnnlib.tflib")
    net_mod = types.ModuleType("dnnlib.tflib.network")
    net_mod.Network = Network
    tflib.network = net_mod
    sys.modules["dnnlib.tflib"], sys.modules["dnnlib.tflib.network"] = tflib, net_mod

    def wrap(st: dict) -> Network:
        st = dict(st, build_module_src="raise SystemExit('TensorFlow source: never run')\n")
        st["components"] = {k: wrap(v) for k, v in st["components"].items()}
        return Network(st)

    for i, (name, static) in enumerate(TF_CONFIGS):
        if only and only not in name:
            continue
        rng = np.random.RandomState(700 + i)
        g, m, s = tfp.tf_generator_variables(static, rng)
        tf_g = tfp.state("Gs", "G_main", g, static, {"mapping": tfp.state("G_mapping", "G_mapping", m, static),
                                                      "synthesis": tfp.state("G_synthesis", "G_synthesis_stylegan2", s,
                                                                             static)})
        d_static = {k: v for k, v in static.items() if k in ("num_channels", "resolution", "label_size", "fmap_base",
                                                                "fmap_max")}
        d_static["label_size"] = 0
        tf_d = tfp.state("D", "D_stylegan2", tfp.tf_discriminator_variables(d_static, rng), d_static)
        path = tmp / f"{name.replace(' ', '_')}.pkl"
        path.write_bytes(pickle.dumps((wrap(tf_g), wrap(tf_d), wrap(tf_g)), protocol=3))
        with open(path, "rb") as f:
            converted = legacy.load_network_pkl(f)  # NVIDIA's TF converter
        ref = converted["G_ema"].eval()
        worst = max(worst, _compare(name + " (TF pkl)", ref, load_checkpoint(path), seeds))
        # the PyTorch pickle legacy.py's CLI writes from it (self-distilled *_pytorch.pkl layout)
        conv_path = tmp / f"{name.replace(' ', '_')}_pytorch.pkl"
        with open(conv_path, "wb") as f:
            pickle.dump(converted, f)
        worst = max(worst, _compare(name + " (legacy.py out)", ref, load_checkpoint(conv_path), seeds))
        imgs = torch.from_numpy(rng.randn(4, 3, static["resolution"], static["resolution"]).astype(np.float32))
        dl = (load_discriminator(path)(imgs) - converted["D"].eval()(imgs, None, force_fp32=True)).abs().max().item()
        worst = max(worst, dl)
        print(f"{name + ' D logits':<38} {'':>4} {'4 imgs':>8} {'':>10} {dl:>10.2e}", flush=True)
    return worst


# --------------------------------------------------------------------------------------------------
# StyleGAN-Human: its sg2 networks.py with square=False, saved by its persistence.


def run_human(root: Path, seeds, only: str | None) -> float:
    _pkg_resources_shim()
    path = root / "training_scripts" / "sg2" / "training" / "networks.py"
    if not path.is_file():
        sys.exit(f"{path} not found: --human-repo must be StyleGAN-Human's folder (DragGAN's stylegan_human/)")
    sys.path.insert(0, str(root))  # its torch_utils, dnnlib
    import dnnlib

    spec = importlib.util.spec_from_file_location("stylegan_human_sg2_networks", path)
    human = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = human
    spec.loader.exec_module(human)

    from dragkit.formats import load_checkpoint

    print(f"StyleGAN-Human sg2 networks.py ({root}); torch {torch.__version__}; CPU, {torch.get_num_threads()} threads")
    _header("")
    worst = 0.0
    tmp = Path(tempfile.mkdtemp(prefix="dragkit-parity-human-"))
    for i, (name, (z, c, w, res), mapping, synthesis, how) in enumerate(HUMAN_CONFIGS):
        if only and only not in name:
            continue
        torch.manual_seed(900 + i)
        mk, sk = dnnlib.EasyDict(mapping), dnnlib.EasyDict(synthesis)
        if how == "args":
            G = human.Generator(z, c, w, res, False, 3, mk, sk)
        else:
            G = human.Generator(z_dim=z, c_dim=c, w_dim=w, img_resolution=res, square=False, img_channels=3,
                                mapping_kwargs=mk, synthesis_kwargs=sk)
        randomize(G, 900 + i)
        G = G.eval().requires_grad_(False)
        if how == "none":  # as the released pickles may be: square recorded nowhere
            G._init_kwargs.pop("square", None)
            G.__dict__.pop("square", None)
            G.synthesis.__dict__.pop("square", None)
        buf = io.BytesIO()
        pickle.dump(dict(G_ema=G, G=copy.deepcopy(G), augment_pipe=None, training_set_kwargs=None), buf)
        path = tmp / f"{name.replace(' ', '_')}.pkl"
        path.write_bytes(buf.getvalue())
        ref = pickle.loads(buf.getvalue())["G_ema"].eval()  # StyleGAN-Human's own loader (its persistence)
        worst = max(worst, _compare(name, ref, load_checkpoint(path), seeds))
    return worst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nvidia-repo", type=Path, help="a stylegan3 checkout")
    ap.add_argument("--human-repo", type=Path, help="StyleGAN-Human's folder (stylegan_human/ of a DragGAN checkout)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--big", action="store_true", help="also 256 px StyleGAN3-T/R with train.py's channel counts (slow on a CPU)")
    ap.add_argument("--only", default=None, help="run files whose name contains this text")
    args = ap.parse_args()
    if bool(args.nvidia_repo) == bool(args.human_repo):
        ap.error("give --nvidia-repo or --human-repo (their packages share names: one per run)")
    torch.set_grad_enabled(False)
    if args.nvidia_repo:
        worst = run_nvidia(args.nvidia_repo.resolve(), args.seeds, args.big, args.only)
    else:
        worst = run_human(args.human_repo.resolve(), args.seeds, args.only)
    print(f"worst max abs difference: {worst:.2e} ({'PASS' if worst < 1e-3 else 'FAIL'} at 1e-3)")
    return 0 if worst < 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
