"""Tiny randomly initialised generators, one definition each (diffusers' fast-test style)."""
from __future__ import annotations

from pathlib import Path

import torch

from dragkit.nets import Generator, StyleGAN3Generator

#: The size of ``tiny``, the model of the web-app tests' model home.
HOME_RES = 32


def randomize(G: torch.nn.Module, seed: int, scale: float = 0.3) -> torch.nn.Module:
    """Trained-looking values for what starts at 0 (noise strengths, biases, ``w_avg``), drawn
    on the CPU from ``seed``: a crop, an offset or a skipped term that is wrong then shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength") or (name.endswith("bias") and ".affine." not in name):
                p.copy_(torch.randn(p.shape, generator=gen) * scale)
        for name, b in G.named_buffers():
            if name.endswith("w_avg"):
                b.copy_(torch.randn(b.shape, generator=gen))
    return G


def randomize_stylegan3(G: torch.nn.Module, seed: int) -> torch.nn.Module:
    """A StyleGAN3 generator's trained-looking values, drawn on the CPU from ``seed``: biases
    (std 0.2), the input affine weight (std 0.5), magnitude EMAs in [0.5, 1.5) and ``w_avg``."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith(".bias") and ".affine." not in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
            elif name == "synthesis.input.affine.weight":
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        for name, b in G.named_buffers():
            if name.endswith("magnitude_ema"):
                b.copy_(torch.rand([], generator=gen) + 0.5)
            elif name.endswith("w_avg"):
                b.copy_(torch.randn(b.shape, generator=gen))
    return G


def frozen(G: Generator) -> Generator:
    return G.eval().requires_grad_(False)


def drag_generator(res: int = 32, arch: str = "skip", seed: int = 0) -> Generator:
    """The drag tests' generator: 32-dim codes, at most 32 channels, const noise that matters
    (strength 0.2, so cropping it wrongly would show)."""
    torch.manual_seed(seed)
    G = Generator(32, 0, 32, res, channel_base=16 * res, channel_max=32, architecture=arch,
                  mapping_kwargs=dict(num_layers=2))
    with torch.no_grad():
        for n, p in G.named_parameters():
            if n.endswith("noise_strength"):
                p.fill_(0.2)
    return frozen(G)


def random_generator(res: int = 32, *, z_dim: int = 16, w_dim: int = 16, c_dim: int = 0, num_layers: int = 2,
                     seed: int = 0, **synthesis_kwargs) -> Generator:
    """A small generator with :func:`randomize`'d zero-initialised tensors (seed ``seed + 1``)."""
    torch.manual_seed(seed)
    G = Generator(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=res, img_channels=3,
                  mapping_kwargs={"num_layers": num_layers}, synthesis_kwargs=synthesis_kwargs)
    return frozen(randomize(G, seed + 1))


def home_generator() -> Generator:
    """``tiny``: the 32 px random generator the web-app tests serve."""
    torch.manual_seed(0)
    return Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=HOME_RES, mapping_kwargs={"num_layers": 2},
                     synthesis_kwargs={"channel_base": 256, "channel_max": 32})


def make_home(home: Path) -> Path:
    """``$DRAGKIT_HOME`` holding :func:`home_generator` as ``tiny``."""
    from dragkit.formats import save_native

    save_native(home_generator(), home / "tiny")
    return home


def make_generator(seed: int = 0, c_dim: int = 0, num_layers: int = 2, **synthesis_kwargs) -> Generator:
    """The format tests' 16 px generator (16-dim codes, 16, 16, 16, 8 channels at 4..16 px)."""
    return random_generator(16, c_dim=c_dim, num_layers=num_layers, seed=seed,
                            **{"channel_base": 128, "channel_max": 16, **synthesis_kwargs})


def on_device(G: torch.nn.Module, device: str) -> torch.nn.Module:
    """``G`` itself on the CPU; a copy moved to ``device`` otherwise (module fixtures stay on the CPU)."""
    if torch.device(device) == next(G.parameters()).device:
        return G
    import copy

    return copy.deepcopy(G).to(device)


def human(seed: int = 0) -> Generator:
    """A 32 x 16 (H x W) StyleGAN2 in StyleGAN-Human's layout (``square=False``)."""
    torch.manual_seed(seed)
    return Generator(32, 0, 32, 32, 3, mapping_kwargs=dict(num_layers=2),
                     synthesis_kwargs=dict(channel_base=512, channel_max=32, square=False)).eval().requires_grad_(False)


def sg3(seed: int = 3) -> StyleGAN3Generator:
    """A 32 px StyleGAN3-T with 6 layers (layer 2: 52 x 52 map, 32 samples per image width, 10 px margin)."""
    torch.manual_seed(seed)
    return StyleGAN3Generator(8, 0, 8, 32, 3, channel_base=512, channel_max=16, num_layers=6).eval().requires_grad_(False)
