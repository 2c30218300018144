"""Small helpers shared by the CLI, the session and the server."""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def tensor_to_uint8(img: torch.Tensor) -> np.ndarray:
    """``(1, C, H, W)`` or ``(C, H, W)`` in [-1, 1] -> ``(H, W, C)`` uint8 (NVIDIA's rounding)."""
    if img.ndim == 4:
        img = img[0]
    x = (img.detach().to(torch.float32).permute(1, 2, 0) * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return x.cpu().numpy()


def tensor_to_pil(img: torch.Tensor) -> Image.Image:
    """Generator output -> RGB (or L) PIL image."""
    arr = tensor_to_uint8(img)
    return Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)


def atomic_write_bytes(dest: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``dest`` via a temporary file and ``os.replace``."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        # mkstemp creates 0600; give the file the mode a plain open() would.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return dest


def _umask() -> int:
    """The process umask (read without changing it for longer than a call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_image_atomic(img: Image.Image, dest: str | os.PathLike[str]) -> Path:
    """Save a PIL image (format from the extension) without leaving partial files."""
    dest = Path(dest)
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}.get(dest.suffix.lower())
    if fmt is None:
        from .errors import DragkitError

        raise DragkitError(f"{dest}: unsupported image extension (use .png, .jpg or .webp)")
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return atomic_write_bytes(dest, buf.getvalue())
