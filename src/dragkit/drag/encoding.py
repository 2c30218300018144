"""Exact, compact JSON encodings of a session's arrays (latents and masks).

A latent is float32 little-endian bytes in base64, a mask ``numpy.packbits``
in base64, each with its shape.  Decoding untrusted text checks the shape and
the text's length before a byte is decoded (:mod:`.schema` bounds the sizes).
"""
from __future__ import annotations

import base64
import math
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import DragkitError

__all__ = ["encode_tensor", "decode_tensor", "encode_mask", "decode_mask", "b64_chars"]


def b64_chars(nbytes: int) -> int:
    """Length of the base64 text of ``nbytes`` bytes."""
    return 4 * ((nbytes + 2) // 3)


def encode_tensor(t: torch.Tensor) -> dict[str, Any]:
    """``{"shape", "dtype": "float32", "data"}`` of ``t`` (exact for float32)."""
    a = t.detach().to("cpu", torch.float32).contiguous().numpy()
    return {"shape": list(a.shape), "dtype": "float32",
            "data": base64.b64encode(a.astype("<f4").tobytes()).decode("ascii")}


def decode_tensor(d: Any, what: str, shape: Sequence[int] | None = None) -> torch.Tensor:
    """The float32 CPU tensor of an :func:`encode_tensor` dict.

    With ``shape``, the shape and the text length are checked before a byte
    is decoded.

    Raises:
        DragkitError: ``"<what>: not a valid encoded tensor (...)"``, or NaN/infinity.
    """
    try:
        got = [int(s) for s in d["shape"]]
        data = d["data"]
        if shape is not None:
            if got != list(shape):
                raise ValueError(f"shape {got}, this model needs {list(shape)}")
            if not isinstance(data, str) or len(data) != b64_chars(4 * math.prod(got)):
                raise ValueError("data length does not match the shape")
        raw = base64.b64decode(data, validate=True)
        a = np.frombuffer(raw, dtype="<f4").reshape(got)
    except Exception as exc:
        raise DragkitError(f"{what}: not a valid encoded tensor ({str(exc)[:120]})") from None
    if not np.isfinite(a).all():
        raise DragkitError(f"{what}: contains NaN or infinity")
    return torch.from_numpy(a.astype(np.float32))


def encode_mask(m: np.ndarray | None) -> dict[str, Any] | None:
    """``{"shape", "packbits"}`` of an ``(H, W)`` bool mask (None stays None)."""
    if m is None:
        return None
    return {"shape": list(m.shape), "packbits": base64.b64encode(np.packbits(m.reshape(-1)).tobytes()).decode("ascii")}


def mask_fits(d: Any, size: tuple[int, int]) -> bool:
    """Whether an encoded mask is ``size = (height, width)`` with text of the right length (nothing decoded)."""
    n = size[0] * size[1]
    return list(d["shape"]) == list(size) and isinstance(d["packbits"], str) \
        and len(d["packbits"]) == b64_chars((n + 7) // 8)


def decode_mask(d: Any, what: str, size: tuple[int, int] | None = None) -> np.ndarray | None:
    """The ``(H, W)`` bool array of an :func:`encode_mask` dict; with ``size = (H, W)``
    the shape and length are checked first.

    Raises:
        DragkitError: ``"<what>: not a valid encoded mask (...)"``.
    """
    if d is None:
        return None
    try:
        shape = [int(s) for s in d["shape"]]
        n = math.prod(shape)
        if size is not None and not mask_fits(d, size):
            raise ValueError(f"shape {shape} or its data does not fit the {size[1]}x{size[0]} image")
        bits = np.frombuffer(base64.b64decode(d["packbits"], validate=True), dtype=np.uint8)
        if bits.size * 8 < n:
            raise ValueError("too few bits for the shape")
        m = np.unpackbits(bits)[:n].astype(bool).reshape(shape)
    except Exception as exc:
        raise DragkitError(f"{what}: not a valid encoded mask ({str(exc)[:120]})") from None
    return m
