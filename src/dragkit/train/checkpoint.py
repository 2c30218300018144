"""Atomic training checkpoints.

A checkpoint is one file written with :func:`torch.save` to a temporary file
in the same folder, flushed to disk and renamed over the old one, so a run
killed at any moment leaves either the previous checkpoint or the new one,
never a torn file.  It holds only tensors, numbers, strings, lists and
dicts, and is read back with ``torch.load(weights_only=True)`` through
:func:`dragkit.formats.torchload.load_weights` (no arbitrary unpickling; a
PyTorch older than the safe floor is refused).
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..utils import atomic_write_bytes as _atomic_write_bytes

__all__ = ["atomic_write_bytes", "save_checkpoint", "load_checkpoint", "CHECKPOINT_NAME"]

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = "dragkit-train-checkpoint"
CHECKPOINT_VERSION = 1


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file, fsync and rename (durable)."""
    return _atomic_write_bytes(path, data, durable=True)


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Atomically write a training state (see :class:`dragkit.train.loop.Trainer`)."""
    buf = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors and plain data only).

    Raises:
        CheckpointError: missing, unreadable, or not a dragkit training checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no training checkpoint at {path}")
    from ..formats.torchload import load_weights

    state = load_weights(path, what="training checkpoints")
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a dragkit training checkpoint")
    if state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: unsupported checkpoint version {state.get('version')}")
    return state
