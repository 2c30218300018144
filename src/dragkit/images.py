"""The one way dragkit reads an image it did not make: :func:`read_image`.

Masks of edit specs, masks painted in the web app and photos to invert
(:func:`dragkit.invert.read_photo`, which reads through here with its own
formats and limits) all come from outside.  A few hundred kilobytes of PNG can declare
13000 x 13000 pixels and decompress to 660 MB, so an image is checked
from its header - format, mode, width and height - *before* a single
pixel is decoded, and its bytes are capped before the header is even
parsed.  Decoding then allocates at most ``width * height * bands`` bytes.
Servers call these functions off their event loop (they are plain
blocking functions).
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Sequence, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import ImageError
from .utils import read_capped

__all__ = ["read_image", "read_mask", "MAX_IMAGE_BYTES", "MAX_IMAGE_PIXELS", "IMAGE_FORMATS"]

#: Largest encoded image accepted, bytes.
MAX_IMAGE_BYTES = 32 * 1024 * 1024
#: Most pixels an image may declare (4096 x 4096).
MAX_IMAGE_PIXELS = 4096 * 4096
#: Formats decoded at all (Pillow's other decoders are never reached).
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")
#: Pixel modes accepted (8/16-bit grey, palette, RGB(A)); 32-bit int/float and CMYK are not.
IMAGE_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "I;16", "I;16B", "I;16L")

Source = Union[bytes, bytearray, memoryview, str, os.PathLike]


def _read_bytes(source: Source, what: str, max_bytes: int) -> bytes:
    too_large = f"{what} is too large (over {max_bytes // 1024} KiB)"
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        p = Path(source)
        if not p.is_file():
            raise ImageError(f"{what}: {'not a file' if p.exists() else 'no such file'}")
        data = read_capped(p, max_bytes, ImageError, what, too_large)
    if len(data) > max_bytes:
        raise ImageError(too_large)
    if not data:
        raise ImageError(f"{what} is empty")
    return data


def read_image(
    source: Source,
    *,
    what: str = "image",
    size: tuple[int, int] | None = None,
    max_bytes: int = MAX_IMAGE_BYTES,
    max_pixels: int = MAX_IMAGE_PIXELS,
    formats: Sequence[str] = IMAGE_FORMATS,
    modes: Sequence[str] = IMAGE_MODES,
) -> Image.Image:
    """Decode an untrusted PNG, JPEG or WebP image, checking it before decoding.

    Args:
        source: encoded bytes or a path.
        what: how messages name the image (``'mask'``, ``'mask edit/m.png'``).
        size: ``(width, height)`` it must have, checked from the header.
        max_bytes, max_pixels: caps on the encoded size and the declared pixels.
        formats, modes: Pillow format names decoded at all, and pixel modes accepted (defaults
            :data:`IMAGE_FORMATS`, :data:`IMAGE_MODES`; photos widen them, see ``dragkit.invert.photo``).

    Returns:
        The decoded first frame, in its stored mode (one of ``modes``).

    Raises:
        ImageError: too many bytes, not one of ``formats``, an unsupported
            mode, more pixels than allowed, the wrong size, or corrupt data.
            Nothing is decoded in the first five cases.
    """
    data = _read_bytes(source, what, max_bytes)
    formats = tuple(formats)
    kinds = ", ".join(formats[:-1]) + " or " + formats[-1] if len(formats) > 1 else formats[0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning: our own limits apply below
            im = Image.open(io.BytesIO(data), formats=formats)  # reads the header only
    except Image.DecompressionBombError:  # Pillow's own cap (2 x its MAX_IMAGE_PIXELS), from the header
        raise ImageError(f"{what} declares more pixels than an image can have here (a decompression bomb); "
                         f"at most {max_pixels:,} pixels are accepted") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise ImageError(f"{what} is not a readable {kinds} image") from None
    w, h = im.size
    if size is not None and (w, h) != tuple(size):
        raise ImageError(f"{what} must be {size[0]}x{size[1]} pixels, got {w}x{h}")
    if w < 1 or h < 1 or w * h > max_pixels:
        raise ImageError(f"{what} is {w}x{h} pixels; at most {max_pixels:,} pixels are accepted")
    if im.mode not in modes:
        raise ImageError(f"{what} has pixel mode {im.mode!r}; use 8-bit grey, RGB or RGBA")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im.load()
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{what} is not a readable {kinds} image (corrupt data: {type(exc).__name__})") from None
    return im


def read_mask(source: Source, size: int | tuple[int, int], *, what: str = "mask",
              max_bytes: int = MAX_IMAGE_BYTES) -> np.ndarray:
    """A mask image -> ``(H, W)`` bool, white (grey level >= 128) = flexible.

    ``size`` is ``H`` (square) or ``(W, H)``; any other size is refused from
    the header, before decoding.

    Raises:
        ImageError: as :func:`read_image`.
    """
    wh = (size, size) if isinstance(size, int) else tuple(size)
    im = read_image(source, what=what, size=wh, max_bytes=max_bytes)  # type: ignore[arg-type]
    if im.mode in ("I;16", "I;16B", "I;16L"):
        return np.asarray(im, dtype=np.uint16) >= 32768
    return np.asarray(im.convert("L")) >= 128
