"""dragkit's native checkpoint: ``NAME.safetensors`` + ``NAME.json``.

The safetensors file holds the generator's state dict under NVIDIA's
parameter names; the JSON file holds the architecture (the generator's
``init_kwargs``) and free-form metadata.  Neither file can carry code.
Both are written atomically (temporary file + ``os.replace``), so a crash
never leaves a half-written checkpoint under the final name.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from ..errors import CheckpointError
from ..nets import Generator, StyleGAN3Generator
from ..nets.discriminator import Discriminator
from ..utils import atomic_write_bytes as _atomic_write_bytes
from ..utils import read_capped
from .arch import (
    build_bounded,
    check_discriminator_kwargs,
    check_generator_kwargs,
    check_stylegan3_kwargs,
    compare_shapes,
    total_elements,
)

FORMAT_NAME = "dragkit-native"
FORMAT_VERSION = 1
_INIT_KEYS = {"z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs"}

#: Network families a config may name: ``network`` -> (class, config check).  Files
#: written before the field existed hold StyleGAN2 generators.
NETWORKS: dict[str, tuple[type, Any]] = {
    Generator.network_name: (Generator, check_generator_kwargs),
    StyleGAN3Generator.network_name: (StyleGAN3Generator, check_stylegan3_kwargs),
}
DEFAULT_NETWORK = Generator.network_name


def native_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(weights.safetensors, config.json)`` for a stem or either file's path."""
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def save_state_native(
    state: Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    path: str | os.PathLike[str],
    dtype: torch.dtype | None = None,
) -> tuple[Path, Path]:
    """Write ``state`` + ``config`` as a native pair (generic: used for D too)."""
    from safetensors.torch import save

    weights, cfg = native_paths(path)
    tensors = {}
    for k, v in state.items():
        t = v.detach().to("cpu").contiguous()
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        tensors[k] = t.clone()
    _atomic_write_bytes(weights, save(tensors))
    _atomic_write_bytes(cfg, (json.dumps(dict(config), indent=2, sort_keys=True) + "\n").encode())
    return weights, cfg


def save_native(
    G: Generator,
    path: str | os.PathLike[str],
    metadata: Mapping[str, Any] | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[Path, Path]:
    """Save generator ``G`` as ``path.safetensors`` + ``path.json``.

    The JSON records the network family (``G.network_name``:
    ``stylegan2.Generator`` or ``stylegan3.Generator``) beside its
    ``init_kwargs``, so :func:`load_native` rebuilds the same class.

    Args:
        G: a :class:`dragkit.nets.Generator` or :class:`dragkit.nets.StyleGAN3Generator`.
        path: stem (``models/toy``) or either file's name.
        metadata: JSON-able extras (training data, licence, ...).
        dtype: storage dtype for float tensors (e.g. ``torch.float16``);
            loading always returns float32.
    """
    config = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "network": _network_name(G),
        "init_kwargs": G.init_kwargs,
        "metadata": dict(metadata or {}),
    }
    return save_state_native(G.state_dict(), config, path, dtype=dtype)


def _network_name(G: Any) -> str:
    name = getattr(G, "network_name", None)
    if name not in NETWORKS:
        raise CheckpointError(f"cannot save a {type(G).__name__}: not a dragkit generator "
                              f"(known networks: {', '.join(NETWORKS)})")
    return name


#: Largest JSON config read (real ones are about a kilobyte).
MAX_CONFIG_BYTES = 1 << 20


def _read_json(path: Path) -> Any:
    """A small JSON file; too large, not UTF-8, invalid or nested too deeply is a CheckpointError."""
    raw = read_capped(path, MAX_CONFIG_BYTES, CheckpointError, str(path),
                      f"{path}: config file too large (over {MAX_CONFIG_BYTES // 1024} KiB)")
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({_first_line(exc)})") from None
    except RecursionError:
        raise CheckpointError(f"{path}: not valid JSON (nests too deeply)") from None


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate the JSON half of a native checkpoint."""
    _, cfg_path = native_paths(path)
    if not cfg_path.is_file():
        raise CheckpointError(f"{cfg_path}: missing config file of native checkpoint")
    cfg = _read_json(cfg_path)
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{cfg_path}: not a dragkit native config (format != {FORMAT_NAME!r})")
    kwargs = cfg.get("init_kwargs")
    if not isinstance(kwargs, dict) or not _INIT_KEYS.issuperset(kwargs) or not {
        "z_dim", "w_dim", "img_resolution"
    }.issubset(kwargs):
        raise CheckpointError(f"{cfg_path}: init_kwargs missing or malformed")
    network = cfg.get("network", DEFAULT_NETWORK)
    if not isinstance(network, str) or network not in NETWORKS:
        raise CheckpointError(f"{cfg_path}: unknown network {str(network)[:60]!r}; known: {', '.join(NETWORKS)}")
    return cfg


def read_state(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read the safetensors half; any corruption becomes a CheckpointError."""
    from safetensors.torch import load_file

    weights, _ = native_paths(path)
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing weights file of native checkpoint")
    try:
        return load_file(str(weights), device="cpu")
    except Exception as exc:  # safetensors raises several types for bad files
        raise CheckpointError(f"{weights}: corrupt or unreadable safetensors file ({_first_line(exc)})") from None


def load_state_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy ``state`` into ``module``; a missing, extra or mis-shaped tensor is an error naming it."""
    own = module.state_dict()
    compare_shapes({k: tuple(v.shape) for k, v in own.items()}, {k: tuple(v.shape) for k, v in state.items()}, source)
    for k, v in state.items():
        if not torch.is_floating_point(v) or not torch.isfinite(v).all():
            raise CheckpointError(f"{source}: tensor {k!r} is not finite floating point")
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)


def build_generator(init_kwargs: Mapping[str, Any], source: str, holds: int,
                    network: str = DEFAULT_NETWORK) -> Generator:
    """Construct a generator from recorded kwargs, every field checked first (:mod:`.arch`).

    Args:
        holds: how many tensor elements the file stores for it; the
            construction never allocates much more (a hostile config cannot
            ask for 360 GB).
        network: ``'stylegan2.Generator'`` (default) or ``'stylegan3.Generator'``;
            picks the class and its config schema.

    Raises:
        CheckpointError: an unknown network, a bad field (named) or a network bigger than the file.
    """
    if network not in NETWORKS:
        raise CheckpointError(f"{source}: unknown network {network!r}; known: {', '.join(NETWORKS)}")
    factory, check = NETWORKS[network]
    kwargs = check(init_kwargs, source)
    return build_bounded(factory, kwargs, holds, source, "generator")  # type: ignore[return-value]


def read_state_shapes(path: str | os.PathLike[str]) -> dict[str, tuple[int, ...]]:
    """Names and shapes in the safetensors half, read from its header only (no tensor data)."""
    from safetensors import safe_open

    weights, _ = native_paths(path)
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing weights file of native checkpoint")
    try:
        with safe_open(str(weights), framework="pt", device="cpu") as f:
            return {k: tuple(int(d) for d in f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as exc:  # safetensors raises several types for bad files
        raise CheckpointError(f"{weights}: corrupt or unreadable safetensors file ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def load_native(path: str | os.PathLike[str]) -> Generator:
    """Load a native checkpoint (stem or either file) as an eval-mode generator.

    The class comes from the config's ``network`` (StyleGAN2 when absent, as
    in files written before it was recorded).  The JSON config is checked field by field, the network is built within
    what the safetensors header declares, and names and shapes are compared
    before any tensor data is read.
    """
    cfg = read_config(path)
    weights, _ = native_paths(path)
    shapes = read_state_shapes(path)
    G = build_generator(cfg["init_kwargs"], str(weights), holds=total_elements(shapes),
                        network=cfg.get("network", DEFAULT_NETWORK))
    compare_shapes({k: tuple(v.shape) for k, v in G.state_dict().items()}, shapes, str(weights))
    load_state_strict(G, read_state(path), str(weights))
    G.eval().requires_grad_(False)
    metadata = cfg.get("metadata")
    G.dragkit_metadata = dict(metadata) if isinstance(metadata, dict) else {}  # type: ignore[attr-defined]
    return G


# --------------------------------------------------------------------------
# The discriminator beside a generator: ``NAME.disc.safetensors`` + ``NAME.disc.json``.

DISC_FORMAT = "dragkit-discriminator"
DISC_FORMAT_VERSION = 1


def native_stem(path: str | os.PathLike[str]) -> Path:
    """``models/toy[.disc][.safetensors|.json]`` -> ``models/toy`` (the generator's stem)."""
    p = Path(path)
    for suffix in (".disc.safetensors", ".disc.json", ".safetensors", ".json"):
        if p.name.endswith(suffix):
            return p.with_name(p.name[: -len(suffix)])
    return p


def disc_stem(path: str | os.PathLike[str]) -> Path:
    """Generator stem / file or discriminator file -> the discriminator's stem ``NAME.disc``."""
    stem = native_stem(path)
    return stem.with_name(stem.name + ".disc")


def save_discriminator(D: Discriminator, path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``NAME.disc.safetensors`` + ``NAME.disc.json`` (atomically) for stem ``NAME``."""
    config = {"format": DISC_FORMAT, "version": DISC_FORMAT_VERSION, "network": "stylegan2.Discriminator",
              "init_kwargs": D.init_kwargs}
    return save_state_native(D.state_dict(), config, disc_stem(path))


def has_native_discriminator(path: str | os.PathLike[str]) -> bool:
    """Whether a discriminator is stored beside the native generator ``path``."""
    weights, cfg = native_paths(disc_stem(path))
    return weights.is_file() and cfg.is_file()


def load_native_discriminator(path: str | os.PathLike[str]) -> Discriminator:
    """Load a discriminator saved by :func:`save_discriminator` (eval mode, CPU).

    ``path`` may be the generator's stem (``models/toy``) or a ``.disc`` file.

    Raises:
        CheckpointError: missing, corrupt, or not fitting its config.
    """
    stem = disc_stem(path)
    weights, cfg_path = native_paths(stem)
    if not cfg_path.is_file():
        raise CheckpointError(f"{cfg_path}: missing discriminator config")
    cfg = _read_json(cfg_path)
    if not isinstance(cfg, dict) or cfg.get("format") != DISC_FORMAT or not isinstance(cfg.get("init_kwargs"), dict):
        raise CheckpointError(f"{cfg_path}: not a dragkit discriminator config")
    config = check_discriminator_kwargs(cfg["init_kwargs"], str(cfg_path))
    shapes = read_state_shapes(stem)
    D = build_bounded(Discriminator, config, total_elements(shapes), str(cfg_path), "discriminator")
    compare_shapes({k: tuple(v.shape) for k, v in D.state_dict().items()}, shapes, str(weights))
    load_state_strict(D, read_state(stem), str(weights))
    return D.eval().requires_grad_(False)
