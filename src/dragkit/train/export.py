"""Exporting a trained run: G_ema in the native format, D beside it.

``export_networks(trainer, "models/toy")`` writes

* ``models/toy.safetensors`` + ``models/toy.json`` - the EMA generator,
  loadable by :func:`dragkit.formats.native.load_native` and the registry;
* ``models/toy.disc.safetensors`` + ``models/toy.disc.json`` - the
  discriminator (for inversion and fine-tuning later), loadable by
  :func:`load_discriminator`, safetensors only, never pickle.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from ..errors import CheckpointError
from ..formats.native import load_state_strict, native_paths, read_state, save_native, save_state_native
from ..nets.discriminator import Discriminator

__all__ = ["DISC_FORMAT", "disc_stem", "save_discriminator", "load_discriminator", "export_networks"]

DISC_FORMAT = "dragkit-discriminator"
DISC_FORMAT_VERSION = 1


def _stem(path: str | os.PathLike) -> Path:
    p = Path(path)
    for suffix in (".disc.safetensors", ".disc.json", ".safetensors", ".json"):
        if p.name.endswith(suffix):
            return p.with_name(p.name[: -len(suffix)])
    return p


def disc_stem(path: str | os.PathLike) -> Path:
    """Generator stem / file or discriminator file -> the discriminator's stem ``NAME.disc``."""
    stem = _stem(path)
    return stem.with_name(stem.name + ".disc")


def save_discriminator(D: Discriminator, path: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``NAME.disc.safetensors`` + ``NAME.disc.json`` (atomically) for stem ``NAME``."""
    config = {"format": DISC_FORMAT, "version": DISC_FORMAT_VERSION, "network": "stylegan2.Discriminator",
              "init_kwargs": D.init_kwargs}
    return save_state_native(D.state_dict(), config, disc_stem(path))


def load_discriminator(path: str | os.PathLike) -> Discriminator:
    """Load a discriminator saved by :func:`save_discriminator` (eval mode, CPU).

    ``path`` may be the generator's stem (``models/toy``) or a ``.disc`` file.

    Raises:
        CheckpointError: missing, corrupt, or not fitting its config.
    """
    import json

    stem = disc_stem(path)
    weights, cfg_path = native_paths(stem)
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{cfg_path}: missing discriminator config") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{cfg_path}: not valid JSON ({exc})") from None
    if not isinstance(cfg, dict) or cfg.get("format") != DISC_FORMAT or not isinstance(cfg.get("init_kwargs"), dict):
        raise CheckpointError(f"{cfg_path}: not a dragkit discriminator config")
    try:
        D = Discriminator(**cfg["init_kwargs"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{cfg_path}: cannot build the discriminator ({exc})") from None
    load_state_strict(D, read_state(stem), str(weights))
    return D.eval().requires_grad_(False)


def export_networks(trainer: Any, path: str | os.PathLike, metadata: Mapping[str, Any] | None = None,
                    dtype: torch.dtype | None = None) -> list[Path]:
    """Export a :class:`~dragkit.train.loop.Trainer`'s ``G_ema`` (native) and ``D`` (beside it).

    Args:
        trainer: the run.
        path: stem, e.g. ``models/toy`` (a ``.safetensors``/``.json`` suffix is dropped).
        metadata: JSON-able extras for the generator's config (training data, kimg...).
        dtype: storage dtype of the generator's float tensors (e.g. float16 to halve the file).

    Returns the four paths written.
    """
    stem = _stem(path)
    stem.parent.mkdir(parents=True, exist_ok=True)
    G = copy.deepcopy(trainer.G_ema).cpu().eval()
    written = list(save_native(G, stem, metadata=metadata, dtype=dtype))
    D = copy.deepcopy(trainer.D).cpu().eval()
    written += list(save_discriminator(D, stem))
    return written
