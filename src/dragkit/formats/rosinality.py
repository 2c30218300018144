"""rosinality ``stylegan2-pytorch`` checkpoints (``.pt``: ``g_ema``, ``latent_avg``).

Read with ``torch.load(weights_only=True)`` through
:func:`~.torchload.load_weights` (a safe PyTorch only; refused globals are
named; tensors are checked against their storages; ``argparse.Namespace``,
which rosinality's ``train.py`` stores as ``args``, is the one extra class
allowed: it only holds attributes).  The ``g_ema`` state dict (else ``g``)
is renamed to NVIDIA's parameter names, strictly: every tensor rosinality's
``Generator`` has must be present with the shape the inferred architecture
implies, and nothing else may be; an offending tensor is named in the error.

rosinality -> NVIDIA (``k`` = block index from 8 px, ``res = 2**(k+3)``)::

    style.{i}.weight/bias              mapping.fc{i-1}.weight/bias
    latent_avg                         mapping.w_avg
    input.input [1,C,4,4]              synthesis.b4.const [C,4,4]
    conv1.conv.weight [1,O,I,3,3]      synthesis.b4.conv1.weight [O,I,3,3]
    conv1.conv.modulation.*            synthesis.b4.conv1.affine.*
    conv1.noise.weight [1]             synthesis.b4.conv1.noise_strength []
    conv1.activate.bias                synthesis.b4.conv1.bias
    noises.noise_0 [1,1,4,4]           synthesis.b4.conv1.noise_const [4,4]
    to_rgb1.conv.weight/modulation     synthesis.b4.torgb.weight/affine
    to_rgb1.bias [1,3,1,1]             synthesis.b4.torgb.bias [3]
    convs.{2k} / convs.{2k+1}          synthesis.b{res}.conv0 / .conv1
    noises.noise_{2k+1} / _{2k+2}      synthesis.b{res}.conv0/.conv1.noise_const
    to_rgbs.{k}                        synthesis.b{res}.torgb

The blur/upsample kernels (``*.blur.kernel``, ``to_rgbs.*.upsample.kernel``)
must be the standard ``[1, 3, 3, 1]`` filter (NVIDIA's default).  The
architecture is inferred from shapes: ``n_mlp`` (mapping depth),
``style_dim``, ``size`` and the per-resolution channels (rosinality's
``channel_multiplier`` becomes ``channel_base = 16384 * multiplier``);
``conv_clamp`` is None.
"""
from __future__ import annotations

import argparse
import math
import os
import re
from pathlib import Path
from typing import Any, Mapping

import torch

from ..errors import CheckpointError
from ..nets import Generator
from ..nets.ops import setup_filter
from .arch import numbered_run, required_tensor, total_elements
from .native import build_generator, load_state_strict
from .nvidia_pkl import infer_init_kwargs
from .torchload import load_weights

__all__ = ["load_rosinality", "read_rosinality", "rosinality_to_nvidia", "W_AVG_SAMPLES"]

#: Number of z samples averaged for ``w_avg`` when a checkpoint has no
#: ``latent_avg`` (rosinality's own ``mean_latent(4096)``), seed 0.
W_AVG_SAMPLES = 4096

_STYLE_RE = re.compile(r"^style\.(\d+)\.weight$")
_RGBS_RE = re.compile(r"^to_rgbs\.(\d+)\.conv\.weight$")


def _standard_kernel(gain: float) -> torch.Tensor:
    return setup_filter((1, 3, 3, 1)) * gain


def _expected_shapes(sd: Mapping[str, torch.Tensor], source: str) -> tuple[dict[str, tuple[int, ...]], dict[str, Any]]:
    """rosinality key -> shape implied by the architecture read from ``sd``."""

    def need(key: str) -> torch.Tensor:
        return required_tensor(sd, key, source)

    n_mlp = numbered_run(sd, _STYLE_RE, "style.{}.weight", 1, source,
                         hint=" (not a rosinality StyleGAN2 generator?)")
    style_dim = int(need("style.1.weight").shape[1])
    n_blocks = len({int(m.group(1)) for k in sd if (m := _RGBS_RE.match(k))})
    log_size = n_blocks + 2
    c4 = int(need("conv1.conv.weight").shape[1])
    img_channels = int(need("to_rgb1.conv.weight").shape[1])
    ch = {4: c4}
    for k in range(n_blocks):
        ch[2 ** (k + 3)] = int(need(f"convs.{2 * k + 1}.conv.weight").shape[1])
    S = style_dim
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(1, n_mlp + 1):
        shapes[f"style.{i}.weight"] = (S, S)
        shapes[f"style.{i}.bias"] = (S,)
    shapes["input.input"] = (1, c4, 4, 4)

    def styled(prefix: str, cin: int, cout: int, up: bool) -> None:
        shapes[f"{prefix}.conv.weight"] = (1, cout, cin, 3, 3)
        shapes[f"{prefix}.conv.modulation.weight"] = (cin, S)
        shapes[f"{prefix}.conv.modulation.bias"] = (cin,)
        shapes[f"{prefix}.noise.weight"] = (1,)
        shapes[f"{prefix}.activate.bias"] = (cout,)
        if up:
            shapes[f"{prefix}.conv.blur.kernel"] = (4, 4)

    def rgb(prefix: str, cin: int, up: bool) -> None:
        shapes[f"{prefix}.conv.weight"] = (1, img_channels, cin, 1, 1)
        shapes[f"{prefix}.conv.modulation.weight"] = (cin, S)
        shapes[f"{prefix}.conv.modulation.bias"] = (cin,)
        shapes[f"{prefix}.bias"] = (1, img_channels, 1, 1)
        if up:
            shapes[f"{prefix}.upsample.kernel"] = (4, 4)

    styled("conv1", c4, c4, False)
    rgb("to_rgb1", c4, False)
    for k in range(n_blocks):
        res = 2 ** (k + 3)
        styled(f"convs.{2 * k}", ch[res // 2], ch[res], True)
        styled(f"convs.{2 * k + 1}", ch[res], ch[res], False)
        rgb(f"to_rgbs.{k}", ch[res], True)
    for j in range(2 * n_blocks + 1):
        r = 2 ** ((j + 5) // 2)
        shapes[f"noises.noise_{j}"] = (1, 1, r, r)
    arch = {"n_mlp": n_mlp, "style_dim": style_dim, "size": 2**log_size, "channels": ch, "img_channels": img_channels}
    return shapes, arch


def rosinality_to_nvidia(
    sd: Mapping[str, torch.Tensor], latent_avg: torch.Tensor | None = None, source: str = "<rosinality>"
) -> dict[str, torch.Tensor]:
    """Rename a rosinality ``g_ema`` state dict to NVIDIA names (strict).

    Returns the NVIDIA-named tensors (``resample_filter`` buffers excluded:
    they are constants of the network).  ``mapping.w_avg`` is included only
    when ``latent_avg`` is given.

    Raises:
        CheckpointError: a missing, unexpected or mis-shaped tensor (named),
            or a non-standard blur kernel.
    """
    shapes, arch = _expected_shapes(sd, source)
    missing = [k for k in shapes if k not in sd]
    if missing:
        raise CheckpointError(f"{source}: missing tensor {missing[0]!r}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    extra = sorted(k for k in sd if k not in shapes)
    if extra:
        raise CheckpointError(f"{source}: unexpected tensor {extra[0]!r}" + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""))
    for k, shape in shapes.items():
        t = sd[k]
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"{source}: {k!r} is not a tensor")
        if tuple(t.shape) != shape:
            raise CheckpointError(f"{source}: tensor {k!r} has shape {list(t.shape)}, the architecture implies {list(shape)}")
        if k.endswith(".blur.kernel") or k.endswith(".upsample.kernel"):
            if not torch.allclose(t.float(), _standard_kernel(4.0), atol=1e-6):
                raise CheckpointError(f"{source}: tensor {k!r} is not the standard [1, 3, 3, 1] blur kernel")

    out: dict[str, torch.Tensor] = {}
    for i in range(1, arch["n_mlp"] + 1):
        out[f"mapping.fc{i - 1}.weight"] = sd[f"style.{i}.weight"]
        out[f"mapping.fc{i - 1}.bias"] = sd[f"style.{i}.bias"]
    if latent_avg is not None:
        if not isinstance(latent_avg, torch.Tensor) or latent_avg.numel() != arch["style_dim"]:
            raise CheckpointError(f"{source}: 'latent_avg' must have {arch['style_dim']} values")
        out["mapping.w_avg"] = latent_avg.reshape(-1)

    def layer(dst: str, src: str, noise: str) -> None:
        out[f"{dst}.weight"] = sd[f"{src}.conv.weight"][0]
        out[f"{dst}.affine.weight"] = sd[f"{src}.conv.modulation.weight"]
        out[f"{dst}.affine.bias"] = sd[f"{src}.conv.modulation.bias"]
        out[f"{dst}.noise_strength"] = sd[f"{src}.noise.weight"].reshape([])
        out[f"{dst}.bias"] = sd[f"{src}.activate.bias"]
        out[f"{dst}.noise_const"] = sd[noise][0, 0]

    def torgb(dst: str, src: str) -> None:
        out[f"{dst}.weight"] = sd[f"{src}.conv.weight"][0]
        out[f"{dst}.affine.weight"] = sd[f"{src}.conv.modulation.weight"]
        out[f"{dst}.affine.bias"] = sd[f"{src}.conv.modulation.bias"]
        out[f"{dst}.bias"] = sd[f"{src}.bias"].reshape(-1)

    out["synthesis.b4.const"] = sd["input.input"][0]
    layer("synthesis.b4.conv1", "conv1", "noises.noise_0")
    torgb("synthesis.b4.torgb", "to_rgb1")
    for k in range(int(math.log2(arch["size"])) - 2):
        res = 2 ** (k + 3)
        layer(f"synthesis.b{res}.conv0", f"convs.{2 * k}", f"noises.noise_{2 * k + 1}")
        layer(f"synthesis.b{res}.conv1", f"convs.{2 * k + 1}", f"noises.noise_{2 * k + 2}")
        torgb(f"synthesis.b{res}.torgb", f"to_rgbs.{k}")
    return {k: v.detach().to(torch.float32).contiguous() for k, v in out.items()}


def _torch_load(path: Path) -> Any:
    return load_weights(path, allowed=[argparse.Namespace])


def _compute_w_avg(G: Generator, n: int = W_AVG_SAMPLES) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    z = torch.randn([n, G.z_dim], generator=gen)
    with torch.no_grad():
        w = G.mapping(z, None)[:, 0]
    return w.mean(dim=0)


def _load_nvidia_state_dict(sd: Mapping[str, Any], key: str, source: str) -> Generator:
    """A ``.pt`` holding an NVIDIA-named state dict (``torch.save(G_ema.state_dict())``)."""
    state = {}
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"{source}: {k!r} is not a tensor")
        state[str(k)] = v
    kwargs = infer_init_kwargs(state, source)
    G = build_generator(kwargs, source, holds=total_elements({k: v.shape for k, v in state.items()}))
    load_state_strict(G, state, source)
    G.eval().requires_grad_(False)
    G.dragkit_metadata = {"source_format": "nvidia-state-dict", "network": key, "conv_clamp": "unknown (None)"}  # type: ignore[attr-defined]
    return G


def read_rosinality(path: str | os.PathLike[str]) -> tuple[str, str, dict[str, torch.Tensor]]:
    """The generator tensors of a ``.pt`` under NVIDIA names, without building anything.

    Returns:
        ``(key, kind, state)``: the checkpoint key used (``g_ema``, ``g``,
        ``G_ema``, ``G`` or ``'(state dict)'``), ``'rosinality'`` or
        ``'nvidia-state-dict'``, and the NVIDIA-named tensors (rosinality's
        renamed, ``resample_filter`` buffers excluded, ``mapping.w_avg``
        only when the file has ``latent_avg``).

    Raises:
        CheckpointError: unreadable / hostile file, no generator, or a missing,
            unexpected or mis-shaped tensor (named).
    """
    p = Path(path)
    source = str(p)
    ckpt = _torch_load(p)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{source}: not a rosinality checkpoint (top level is {type(ckpt).__name__})")
    for key in ("g_ema", "g", "G_ema", "G"):
        if key in ckpt:
            sd = ckpt[key]
            break
    else:
        if "style.1.weight" not in ckpt and "synthesis.b4.const" not in ckpt and "synthesis.input.affine.weight" not in ckpt:
            keys = ", ".join(sorted(map(str, ckpt))[:8]) or "(none)"
            raise CheckpointError(f"{source}: no generator in checkpoint (expected 'g_ema' or 'g'; found {keys})")
        key, sd = "(state dict)", ckpt
    if not isinstance(sd, dict):
        raise CheckpointError(f"{source}: {key!r} is not a state dict")
    if "synthesis.input.affine.weight" in sd or any(str(k).startswith("synthesis.L0_") for k in sd):
        raise CheckpointError(f"{source}: this is a StyleGAN3 state dict without its architecture (StyleGAN3 "
                              "architectures are read from the records of a .pkl snapshot, never guessed); "
                              "convert the network's .pkl instead")
    if "synthesis.b4.const" in sd:
        state = {}
        for k, v in sd.items():
            if not isinstance(v, torch.Tensor):
                raise CheckpointError(f"{source}: {k!r} is not a tensor")
            state[str(k)] = v
        return key, "nvidia-state-dict", state
    latent_avg = ckpt.get("latent_avg") if key != "(state dict)" else None
    return key, "rosinality", rosinality_to_nvidia(sd, latent_avg, source)


def load_rosinality(path: str | os.PathLike[str]) -> Generator:
    """Load a rosinality ``stylegan2-pytorch`` checkpoint as an eval-mode :class:`Generator`.

    Uses ``g_ema`` (falls back to ``g``) and ``latent_avg``; without
    ``latent_avg`` (rosinality's training checkpoints), ``w_avg`` is the mean
    of ``W_AVG_SAMPLES`` mapped z drawn with seed 0, as rosinality's
    ``mean_latent`` does.  A ``.pt`` holding an NVIDIA-named state dict
    (top level or under ``G_ema``/``G``) is loaded too, its architecture
    inferred from the shapes (``conv_clamp`` None; a ``C x 4 x 2`` constant
    makes it StyleGAN-Human's non-square layout).

    Raises:
        CheckpointError: unreadable / hostile file, or a missing, unexpected
            or mis-shaped tensor (named).
    """
    source = str(path)
    key, kind, state = read_rosinality(path)
    if kind == "nvidia-state-dict":
        return _load_nvidia_state_dict(state, key, source)
    kwargs = infer_init_kwargs(state, source)
    kwargs["mapping_kwargs"].pop("w_avg_beta", None)  # rosinality always truncates around an average
    G = build_generator(kwargs, source, holds=total_elements({k: v.shape for k, v in state.items()}))
    own = G.state_dict()
    for k, v in own.items():
        if k.endswith("resample_filter"):
            state[k] = v
    w_avg_from = "latent_avg"
    if "mapping.w_avg" not in state:
        state["mapping.w_avg"] = torch.zeros_like(own["mapping.w_avg"])
        w_avg_from = f"mean of {W_AVG_SAMPLES} samples (seed 0)"
    load_state_strict(G, state, source)
    if w_avg_from != "latent_avg":
        G.mapping.w_avg.copy_(_compute_w_avg(G))
    G.eval().requires_grad_(False)
    G.dragkit_metadata = {"source_format": "rosinality", "network": key, "w_avg": w_avg_from}  # type: ignore[attr-defined]
    return G
