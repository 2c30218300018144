"""Small helpers shared by the CLI, the session and the server."""
from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterator
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


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str], suffix: str = ".tmp", durable: bool = False,
                mode: int | None = None) -> Iterator[Path]:
    """A temporary path beside ``dest`` that replaces ``dest`` if the block succeeds.

    The caller writes the temporary file (any way it likes); on leaving the
    block without an exception it gets ``mode`` (default: the mode a plain
    ``open()`` would give; ``0o600`` for private files - the temporary file
    is private from its creation), and ``os.replace`` puts it at ``dest``, so a reader sees the old
    file or the new one, never a torn one.  On an exception the temporary
    file is removed and ``dest`` is untouched.  ``durable``: fsync the file
    and the folder too (training checkpoints: a power cut keeps one of them).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix, dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        # mkstemp creates 0600; give the file the mode asked for, or a plain open()'s.
        os.chmod(tmp, (0o666 & ~_umask()) if mode is None else mode)
        if durable:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if durable:
        try:  # make the rename itself durable
            dfd = os.open(dest.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:  # pragma: no cover - not supported everywhere
            pass


def atomic_write_bytes(dest: str | os.PathLike[str], data: bytes, durable: bool = False,
                       mode: int | None = None) -> Path:
    """Write ``data`` to ``dest`` via a temporary file and ``os.replace`` (see :func:`atomic_path`)."""
    dest = Path(dest)
    with atomic_path(dest, durable=durable, mode=mode) as tmp:
        tmp.write_bytes(data)
    return dest


def read_capped(path: str | os.PathLike[str], max_bytes: int, error: type[Exception], name: str,
                too_large: str) -> bytes:
    """A file's bytes, reading at most ``max_bytes + 1`` of them (a huge file is never read whole).

    Raises:
        error: ``"{name}: cannot read (reason)"`` when the OS refuses, or ``too_large`` when the
            file holds more than ``max_bytes``.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise error(f"{name}: cannot read ({exc.strerror or type(exc).__name__})") from None
    if len(data) > max_bytes:
        raise error(too_large)
    return data


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


def _cpu_flags() -> set[str]:
    """The ``flags`` of ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def native_bf16(device: str | torch.device = "cpu") -> bool:
    """Whether ``device`` computes in bfloat16 natively (so bf16 autocast is a speed-up).

    CUDA: compute capability 8.0 or newer (Ampere, Hopper, ...).  CPU: the
    cores have AVX-512 BF16 or AMX-BF16, by PyTorch's own capability probes;
    where a probe is missing (older torch), by the ``avx512_bf16`` /
    ``amx_bf16`` flags of ``/proc/cpuinfo``.  Never guessed from the model
    name, and not oneDNN's ``_is_mkldnn_bf16_supported``, which also says
    yes on plain AVX-512 (emulated bf16, slower than fp32).  The one rule for
    the trainer's ``--amp`` default and the drag's ``precision='auto'``.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type != "cpu":
        return False
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    try:
        if any(fn is not None and bool(fn()) for fn in probes):
            return True
    except Exception:  # pragma: no cover - probe failing in an odd build
        pass
    return None in probes and bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())


#: Largest output scale (``--scale``, the app's download choice) and largest output side it may give.
MAX_SCALE = 16
MAX_SCALED_SIDE = 8192


def check_scale(value: object, size: tuple[int, int] | None = None, what: str = "--scale") -> int:
    """An output scale: a whole number ``1 .. MAX_SCALE``; with ``size`` (H, W), also
    at most :data:`MAX_SCALED_SIDE` pixels on the larger side once scaled.

    Raises:
        DragkitError: ``"--scale must be a whole number between 1 and 16, got 0"``.
    """
    from .errors import DragkitError

    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer)) \
        and float(value).is_integer() and 1 <= int(value) <= MAX_SCALE
    if not ok:
        raise DragkitError(f"{what} must be a whole number between 1 and {MAX_SCALE}, got {value!r:.40}")
    k = int(value)
    if size is not None and max(size) * k > MAX_SCALED_SIDE:
        raise DragkitError(f"{what} {k} would make a {size[1] * k}x{size[0] * k} image; "
                           f"at most {MAX_SCALED_SIDE} pixels a side")
    return k


def upscale(img: Image.Image, k: int) -> Image.Image:
    """``img`` enlarged ``k`` times with nearest-neighbour (crisp pixels for small models)."""
    if k == 1:
        return img
    return img.resize((img.size[0] * k, img.size[1] * k), Image.NEAREST)
