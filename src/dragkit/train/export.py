"""Exporting a trained run: G_ema in the native format, D beside it.

``export_networks(trainer, "models/toy")`` writes

* ``models/toy.safetensors`` + ``models/toy.json`` - the EMA generator,
  loadable by :func:`dragkit.formats.native.load_native` and the registry;
* ``models/toy.disc.safetensors`` + ``models/toy.disc.json`` - the
  discriminator (for inversion and fine-tuning later), loadable by
  :func:`load_discriminator` (:func:`dragkit.formats.native.load_native_discriminator`),
  safetensors only, never pickle.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from ..formats.native import (DISC_FORMAT, disc_stem, native_stem, load_native_discriminator as load_discriminator,
                              save_discriminator, save_native)

__all__ = ["DISC_FORMAT", "disc_stem", "save_discriminator", "load_discriminator", "export_networks",
           "export_checkpoint", "run_metadata"]


def run_metadata(cfg: Mapping[str, Any], kimg: float, train_seconds: float) -> dict[str, Any]:
    """What an exported model records about the run that made it."""
    return {
        "trained_with": "dragkit train",
        "data": cfg.get("data"),
        "data_range": cfg.get("data_range"),
        "kimg": round(float(kimg), 3),
        "seed": cfg.get("seed"),
        "preset": cfg.get("preset"),
        "init_from": cfg.get("init_from"),
        "init_kimg": cfg.get("init_kimg") or None,
        "train_seconds": round(float(train_seconds), 1),
    }


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
    stem = native_stem(path)
    stem.parent.mkdir(parents=True, exist_ok=True)
    G = copy.deepcopy(trainer.G_ema).cpu().eval()
    written = list(save_native(G, stem, metadata=metadata, dtype=dtype))
    D = copy.deepcopy(trainer.D).cpu().eval()
    written += list(save_discriminator(D, stem))
    return written


def export_checkpoint(checkpoint: str | os.PathLike, path: str | os.PathLike,
                      dtype: torch.dtype | None = None) -> list[Path]:
    """Export the ``G_ema`` and ``D`` of a training checkpoint file, without building a trainer.

    Reads the checkpoint only, so it is safe while the run goes on writing
    newer ones (each write is atomic).  Returns the four paths written.
    """
    from ..nets import Generator
    from ..nets.discriminator import Discriminator
    from .checkpoint import load_checkpoint

    state = load_checkpoint(checkpoint)
    G = Generator(**state["G_init_kwargs"])
    G.load_state_dict(state["G_ema"])
    D = Discriminator(**state["D_init_kwargs"])
    D.load_state_dict(state["D"])
    stem = native_stem(path)
    stem.parent.mkdir(parents=True, exist_ok=True)
    meta = run_metadata(state["config"], state["cur_nimg"] / 1000, state.get("elapsed", 0.0))
    written = list(save_native(G.eval(), stem, metadata=meta, dtype=dtype))
    written += list(save_discriminator(D.eval(), stem))
    return written
