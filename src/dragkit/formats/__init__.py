"""Checkpoint readers and the one writer (native).

Formats are chosen by file extension and then verified by content:
``.safetensors``/``.json`` native, ``.pkl`` NVIDIA pickle (restricted
unpickler, never runs code from the file), ``.pt``/``.pth`` rosinality
(``torch.load(weights_only=True)`` on PyTorch >= 2.10 only).  Every reader
checks the architecture it finds (:mod:`.arch`) and allocates no more than
the file holds (docs/security.md).
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import CheckpointError
from ..nets import Generator
from .native import load_native, native_paths, save_native

__all__ = ["load_checkpoint", "load_discriminator", "detect_format", "checked_checkpoint", "save_native", "load_native",
           "native_paths", "SUPPORTED"]

SUPPORTED = {
    ".safetensors": "native",
    ".json": "native",
    ".pkl": "nvidia-pkl",
    ".pt": "rosinality",
    ".pth": "rosinality",
}


def detect_format(path: str | os.PathLike[str]) -> str:
    """Return ``'native'``, ``'nvidia-pkl'`` or ``'rosinality'`` from the extension."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUPPORTED:
        raise CheckpointError(
            f"{path}: unsupported checkpoint extension {suffix or '(none)'!r}; "
            "expected .safetensors/.json (native), .pkl (NVIDIA) or .pt/.pth (rosinality)"
        )
    return SUPPORTED[suffix]


def checked_checkpoint(path: str | os.PathLike[str]) -> tuple[Path, str]:
    """``(path, format)`` of a checkpoint that is there to read: the format from :func:`detect_format`,
    and the file (a native checkpoint: its weights or its config) present, not a folder, not empty.

    Raises:
        CheckpointError: unsupported extension, missing, a directory, or an empty file.
    """
    p = Path(path)
    fmt = detect_format(p)
    if fmt == "native":
        weights, cfg = native_paths(p)
        if not weights.exists() and not cfg.exists():
            raise CheckpointError(f"{p}: no such checkpoint")
        return p, fmt
    if not p.exists():
        raise CheckpointError(f"{p}: no such checkpoint")
    if p.is_dir():
        raise CheckpointError(f"{p}: is a directory, not a checkpoint")
    if p.stat().st_size == 0:
        raise CheckpointError(f"{p}: empty file (0 bytes)")
    return p, fmt


def load_checkpoint(path: str | os.PathLike[str]) -> Generator:
    """Load a generator from any supported checkpoint file (eval mode, CPU)."""
    p, fmt = checked_checkpoint(path)
    if fmt == "native":
        return load_native(p)
    if fmt == "nvidia-pkl":
        from .nvidia_pkl import load_nvidia_pkl

        return load_nvidia_pkl(p)
    from .rosinality import load_rosinality

    return load_rosinality(p)


def load_discriminator(path: str | os.PathLike[str]):
    """The discriminator stored with a generator checkpoint, or None when there is none.

    Native: ``NAME.disc.safetensors`` + ``NAME.disc.json`` beside ``NAME``;
    NVIDIA pickle: its ``D``; rosinality ``.pt``: None (its discriminator
    uses other names and is not converted).

    Raises:
        CheckpointError: the discriminator exists but is corrupt, hostile or unsupported.
    """
    p = Path(path)
    fmt = detect_format(p)
    if fmt == "native":
        from .native import has_native_discriminator, load_native_discriminator

        return load_native_discriminator(p) if has_native_discriminator(p) else None
    if fmt == "nvidia-pkl":
        from .nvidia_pkl import load_nvidia_pkl_discriminator

        return load_nvidia_pkl_discriminator(p)
    return None
