"""What a checkpoint holds, read through the safe readers without building a network.

:func:`checkpoint_info` answers ``dragkit models --info PATH``: the network
family and architecture, the image size (``H x W``), the mapping network,
conditioning, the number of W codes, the feature maps a drag can use
(StyleGAN2 blocks, StyleGAN3 layers with their geometry), the format, and
what the file holds besides the generator (discriminator, augment pipe,
training-set kwargs, ...).

Everything comes from the records and configs: the native JSON and the
safetensors *header* (no tensor data is read), the restricted unpickler's
records (recorded init arguments, else the tensor shapes), a TensorFlow
network's static kwargs, a ``.pt``'s tensor shapes through the weights-only
loader.  The architecture is checked by the same schema as a load
(:mod:`.arch`); no generator is constructed.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .arch import check_generator_kwargs, check_stylegan3_kwargs, total_elements

__all__ = ["CheckpointInfo", "FeatureMap", "checkpoint_info", "stylegan2_feature_maps", "stylegan3_feature_maps"]

STYLEGAN2 = "stylegan2.Generator"
STYLEGAN3 = "stylegan3.Generator"


@dataclass(frozen=True)
class FeatureMap:
    """One feature map a drag can read.

    Attributes:
        name: ``b128`` (StyleGAN2 block) or ``L5_84_512`` (StyleGAN3 layer).
        index: the block resolution (StyleGAN2) or the layer index (StyleGAN3).
        height, width: map size in pixels.
        channels: feature channels.
        sampling_rate: StyleGAN3 only: samples per image width (``s``).
        margin: StyleGAN3 only: map pixels outside the image on each side, ``(S - s) / 2``.
    """

    name: str
    index: int
    height: int
    width: int
    channels: int
    sampling_rate: int | None = None
    margin: float | None = None


@dataclass(frozen=True)
class CheckpointInfo:
    """What :func:`checkpoint_info` found (all sizes in pixels)."""

    path: str
    format: str
    network: str
    architecture: str
    height: int
    width: int
    z_dim: int
    w_dim: int
    c_dim: int
    mapping_layers: int
    num_ws: int
    feature_maps: list[FeatureMap]
    architecture_from: str
    tensor_values: int
    init_kwargs: dict[str, Any]
    extras: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------------
# Geometry from a (validated) config.


def stylegan2_feature_maps(kwargs: Mapping[str, Any]) -> tuple[list[FeatureMap], int]:
    """Blocks ``b4 .. b{H}`` of a StyleGAN2 config (validated, nested): their maps and the number of W codes.

    Block ``b{R}`` outputs ``R x R`` maps (``R x R/2`` when ``square`` is
    False) of ``min(channel_base // R, channel_max)`` channels;
    ``num_ws = 2 log2(H) - 2``.
    """
    syn = kwargs.get("synthesis_kwargs") or {}
    res = int(kwargs["img_resolution"])
    base, cmax = int(syn.get("channel_base", 32768)), int(syn.get("channel_max", 512))
    square = bool(syn.get("square", True))
    maps = [FeatureMap(f"b{r}", r, r, r if square else r // 2, min(base // r, cmax))
            for r in (2**i for i in range(2, int(math.log2(res)) + 1))]
    return maps, 2 * int(math.log2(res)) - 2


def stylegan3_feature_maps(kwargs: Mapping[str, Any]) -> tuple[list[FeatureMap], int]:
    """Layers ``L0 .. L{N}`` of a StyleGAN3 config (validated, nested): their geometry and the number of W codes.

    The arithmetic of Karras et al. 2021 (and of
    :class:`dragkit.nets.stylegan3.SynthesisNetwork`, which a test compares
    it with): cutoffs and stopbands grow geometrically from the first
    layer's to ``H / 2`` (resp. ``H / 2 * last_stopband_rel``) over the
    ``num_layers - num_critical`` first layers; sampling rates are the
    smallest powers of two above twice the stopband (at most ``H``); maps
    are ``rate + 2 * margin_size`` pixels, the last two ``H``;
    ``num_ws = num_layers + 2``.
    """
    syn = kwargs.get("synthesis_kwargs") or {}
    res = int(kwargs["img_resolution"])
    n = int(syn.get("num_layers", 14))
    critical = int(syn.get("num_critical", 2))
    first_cutoff = float(syn.get("first_cutoff", 2))
    first_stopband = float(syn.get("first_stopband", 2**2.1))
    last_rel = float(syn.get("last_stopband_rel", 2**0.3))
    margin = int(syn.get("margin_size", 10))
    base, cmax = float(syn.get("channel_base", 32768)), float(syn.get("channel_max", 512))
    last_cutoff = res / 2
    exponents = np.minimum(np.arange(n + 1) / (n - critical), 1)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
    stopbands = first_stopband * (last_cutoff * last_rel / first_stopband) ** exponents
    rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, res))))
    sizes = rates + margin * 2
    sizes[-2:] = res
    channels = np.rint(np.minimum((base / 2) / cutoffs, cmax))
    channels[-1] = int(kwargs.get("img_channels", 3))
    maps = []
    for i in range(n + 1):
        size, rate, ch = int(sizes[i]), int(rates[i]), int(channels[i])
        maps.append(FeatureMap(f"L{i}_{size}_{ch}", i, size, size, ch, rate, (size - rate) / 2))
    return maps, n + 2


def _describe_stylegan2(kwargs: Mapping[str, Any]) -> str:
    syn = kwargs.get("synthesis_kwargs") or {}
    arch = syn.get("architecture", "skip")
    return f"StyleGAN2 ({arch})" + ("" if syn.get("square", True) else ", non-square (StyleGAN-Human)")


def _describe_stylegan3(kwargs: Mapping[str, Any]) -> str:
    syn = kwargs.get("synthesis_kwargs") or {}
    radial, kernel = bool(syn.get("use_radial_filters", False)), int(syn.get("conv_kernel", 3))
    if radial and kernel == 1:
        return "StyleGAN3-R"
    if not radial and kernel == 3:
        return "StyleGAN3-T"
    return f"StyleGAN3 (conv_kernel {kernel}, {'radial' if radial else 'separable'} filters)"


def _info(path: Path, fmt: str, network: str, raw_kwargs: Mapping[str, Any], source: str, architecture_from: str,
          tensor_values: int, extras: list[str]) -> CheckpointInfo:
    if network == STYLEGAN3:
        kwargs = check_stylegan3_kwargs(raw_kwargs, source)
        maps, num_ws = stylegan3_feature_maps(kwargs)
        height = width = int(kwargs["img_resolution"])
        arch = _describe_stylegan3(kwargs)
        mapping_default = 2
    else:
        kwargs = check_generator_kwargs(raw_kwargs, source)
        maps, num_ws = stylegan2_feature_maps(kwargs)
        height = int(kwargs["img_resolution"])
        width = maps[-1].width
        arch = _describe_stylegan2(kwargs)
        mapping_default = 8
    return CheckpointInfo(
        path=str(path), format=fmt, network=network, architecture=arch, height=height, width=width,
        z_dim=int(kwargs["z_dim"]), w_dim=int(kwargs["w_dim"]), c_dim=int(kwargs.get("c_dim", 0)),
        mapping_layers=int((kwargs.get("mapping_kwargs") or {}).get("num_layers", mapping_default)),
        num_ws=num_ws, feature_maps=maps, architecture_from=architecture_from, tensor_values=int(tensor_values),
        init_kwargs=dict(kwargs), extras=extras)


# --------------------------------------------------------------------------------------------------
# Per format.


def _native_info(p: Path) -> CheckpointInfo:
    from .native import DEFAULT_NETWORK, has_native_discriminator, native_paths, read_config, read_state_shapes

    weights, cfg_path = native_paths(p)  # one of them is there (checkpoint_info checked)
    cfg = read_config(p)
    shapes = read_state_shapes(p)
    extras = []
    if has_native_discriminator(p):
        extras.append("discriminator (NAME.disc.safetensors beside it)")
    meta = cfg.get("metadata")
    if isinstance(meta, dict) and meta:
        keys = ", ".join(sorted(str(k) for k in meta)[:12])
        extras.append(f"metadata: {keys}")
    return _info(weights, "native", cfg.get("network", DEFAULT_NETWORK), cfg["init_kwargs"], str(cfg_path), "config",
                 total_elements(shapes), extras)


def _pickle_extras(data: Mapping[str, Any], used: str) -> list[str]:
    from .safe_pickle import PersistentRecord, TFNetworkRecord

    out = []
    for key, value in data.items():
        if key == used:
            continue
        if isinstance(value, PersistentRecord):
            kw = value.init_kwargs
            detail = ", ".join(f"{k} {kw[k]}" for k in ("img_resolution", "c_dim", "architecture") if
                               isinstance(kw.get(k), (int, str)) and not isinstance(kw.get(k), bool))
            what = {"D": "discriminator", "G": "training copy of the generator", "augment_pipe": "augment pipe",
                    "G_ema": "generator (EMA)"}.get(str(key), "network")
            out.append(f"{key}: {what} ({value.class_name}{', ' + detail if detail else ''})")
        elif isinstance(value, TFNetworkRecord):
            name = value.state.get("build_func_name") if isinstance(value.state, dict) else None
            what = {"D": "discriminator", "G": "training copy of the generator"}.get(str(key), "network")
            out.append(f"{key}: {what} (TensorFlow {name if isinstance(name, str) else 'network'}; "
                       f"{value.module_src_chars:,} characters of TensorFlow source, never run)")
        elif value is None:
            out.append(f"{key}: None")
        elif isinstance(value, dict):
            items = [f"{k}={v!r}" for k, v in value.items()
                     if isinstance(v, (str, int, float, bool)) or v is None][:6]
            out.append(f"{key}: {', '.join(items) if items else f'{len(value)} entries'}")
        else:
            out.append(f"{key}: {type(value).__name__}")
    return out


def _nvidia_info(p: Path) -> CheckpointInfo:
    from .nvidia_pkl import (
        _select_generator,
        generator_record_state,
        is_stylegan3_state,
        read_nvidia_pkl,
        stylegan2_kwargs_from_record,
        stylegan3_kwargs_from_record,
    )
    from .safe_pickle import TFNetworkRecord

    source = str(p)
    data = read_nvidia_pkl(p)
    key, rec = _select_generator(data, source)
    extras = _pickle_extras(data, key)
    if isinstance(rec, TFNetworkRecord):
        from .tf_pkl import collect_tf_variables, tf_generator_kwargs, tf_network_state

        state = tf_network_state(rec, source)
        kwargs = tf_generator_kwargs(state, source)
        values = sum(int(v.size) for v in collect_tf_variables(state, source).values())
        return _info(p, "tf-pkl", STYLEGAN2, kwargs, source, "static_kwargs", values, extras)
    state = generator_record_state(key, rec, source)
    values = total_elements({k: v.shape for k, v in state.items()})
    if is_stylegan3_state(state):
        return _info(p, "nvidia-pkl", STYLEGAN3, stylegan3_kwargs_from_record(rec, source), source, "_init_kwargs",
                     values, extras)
    kwargs, inferred = stylegan2_kwargs_from_record(rec, state, source)
    return _info(p, "nvidia-pkl", STYLEGAN2, kwargs, source, "shapes" if inferred else "_init_kwargs", values, extras)


def _torch_info(p: Path) -> CheckpointInfo:
    from .nvidia_pkl import infer_init_kwargs
    from .rosinality import read_rosinality

    key, kind, state = read_rosinality(p)
    kwargs = infer_init_kwargs(state, str(p))
    extras = [] if key == "(state dict)" else [f"generator taken from {key!r}"]
    return _info(p, kind, STYLEGAN2, kwargs, str(p), "shapes", total_elements({k: v.shape for k, v in state.items()}),
                 extras)


def checkpoint_info(path: str | os.PathLike[str]) -> CheckpointInfo:
    """Describe a checkpoint without building its generator (see the module docstring).

    Raises:
        CheckpointError: missing, corrupt, hostile or unsupported file (the
            same refusals as loading it).
    """
    from . import checked_checkpoint

    p, fmt = checked_checkpoint(path)
    if fmt == "native":
        return _native_info(p)
    if fmt == "nvidia-pkl":
        return _nvidia_info(p)
    return _torch_info(p)
