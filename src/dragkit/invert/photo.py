"""Reading a user's photo safely: one clear error for anything that is not a usable image.

The bytes are read and decoded by :func:`dragkit.images.read_image`, the
one image reader of dragkit (checks before decoding: the byte size, then
format, mode and dimensions from the header, so a decompression bomb is
refused without decoding it; truncated or corrupt data is an error, never
a partly grey image), with the photo's wider formats and limits.  This
module then applies the EXIF orientation and brings every pixel mode to
8-bit RGB:

| mode | outcome |
|---|---|
| RGB | as is (flagged grayscale when its three channels are equal) |
| L, 1, I;16, I | grayscale: replicated to RGB (16-bit scaled to 8), ``grayscale=True`` |
| RGBA, LA, P with transparency | composited over white; a warning when any pixel is transparent |
| P, CMYK | converted to RGB |
| animated GIF/WebP/PNG | the first frame, with a warning |
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ImageError
from ..images import IMAGE_MODES

__all__ = ["PhotoError", "Photo", "read_photo", "MAX_PHOTO_BYTES", "MAX_PHOTO_PIXELS", "MIN_PHOTO_SIDE",
           "PHOTO_FORMATS", "PHOTO_MODES"]

MAX_PHOTO_BYTES = 64 * 1024 * 1024
MAX_PHOTO_PIXELS = 50_000_000  # a 50 MP photo decodes to 150 MB of RGB
MAX_PHOTO_SIDE = 30_000
MIN_PHOTO_SIDE = 16
#: Pillow formats a photo may be in (a camera's multi-picture JPEG, MPO, opens as JPEG: its first picture is used).
PHOTO_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
#: Pixel modes accepted: dragkit.images' (grey, palette, RGB(A), 16-bit grey), print JPEGs' CMYK, 32-bit grey PNG.
PHOTO_MODES = IMAGE_MODES + ("CMYK", "I")


class PhotoError(ImageError):
    """A photo cannot be used: not an image, truncated, too large or too small, no usable face."""


@dataclass
class Photo:
    """A decoded photo.

    Attributes:
        rgb: ``(H, W, 3)`` uint8 RGB, EXIF orientation applied.
        source: where it came from (file name, or ``'<bytes>'``).
        format: the container format PIL found (``'JPEG'``, ``'PNG'``, ...).
        mode: the pixel mode as stored (``'RGB'``, ``'L'``, ``'RGBA'``, ...).
        stored_size: ``(width, height)`` as stored, before EXIF rotation.
        exif_rotated: whether an EXIF orientation other than "up" was applied.
        grayscale: the photo has no colour (losses then compare luminance).
        warnings: what was changed or guessed, one sentence each.
    """

    rgb: np.ndarray
    source: str = "<array>"
    format: str | None = None
    mode: str = "RGB"
    stored_size: tuple[int, int] = (0, 0)
    exif_rotated: bool = False
    grayscale: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of :attr:`rgb`."""
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])


def _check_dims(w: int, h: int, what: str, max_pixels: int) -> None:
    if w < MIN_PHOTO_SIDE or h < MIN_PHOTO_SIDE:
        raise PhotoError(f"{what} is {w}x{h} pixels; a photo must be at least {MIN_PHOTO_SIDE}x{MIN_PHOTO_SIDE}")
    if w > MAX_PHOTO_SIDE or h > MAX_PHOTO_SIDE or w * h > max_pixels:
        raise PhotoError(
            f"{what} is {w}x{h} pixels ({w * h / 1e6:.1f} MP); the limit is {max_pixels / 1e6:.0f} MP "
            f"and {MAX_PHOTO_SIDE} px a side: downscale it first"
        )


def _to_rgb(im: Any, photo: Photo) -> np.ndarray:
    mode = im.mode
    if mode == "P" or mode == "PA":
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "RGBa", "La") or (mode in ("RGB", "L") and "transparency" in im.info):
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3:4] / 255.0
        if (alpha < 1).any():
            photo.warnings.append("transparent pixels were composited over white")
        rgb = rgba[..., :3] * alpha + 255.0 * (1 - alpha)
        out = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    elif mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if (mode.startswith("I;16") or a.max(initial=0) > 255) else 255.0
        g = np.clip(np.rint(a * (255.0 / hi)), 0, 255).astype(np.uint8)
        out = np.repeat(g[..., None], 3, axis=2)
    elif mode in ("L", "1"):
        g = np.asarray(im.convert("L"), dtype=np.uint8)
        out = np.repeat(g[..., None], 3, axis=2)
    else:  # RGB, CMYK, YCbCr, LAB, HSV, ...
        try:
            out = np.asarray(im.convert("RGB"), dtype=np.uint8)
        except (ValueError, OSError) as exc:
            raise PhotoError(f"{photo.source}: pixel mode {mode} cannot be converted to RGB ({exc})") from None
    return np.ascontiguousarray(out)


def read_photo(
    src: str | os.PathLike[str] | bytes | Any,
    *,
    max_pixels: int = MAX_PHOTO_PIXELS,
    max_bytes: int = MAX_PHOTO_BYTES,
) -> Photo:
    """Decode a photo (a path, the bytes of a file, a PIL image or an ``(H, W, 3|4)`` uint8 array).

    Files and bytes are decoded by :func:`dragkit.images.read_image` (formats
    :data:`PHOTO_FORMATS`, modes :data:`PHOTO_MODES`, at most ``max_bytes`` and
    ``max_pixels``); images already in memory are only converted.

    Returns:
        a :class:`Photo` whose ``rgb`` is ``(H, W, 3)`` uint8.

    Raises:
        PhotoError: not an image (or not a supported format: JPEG, PNG,
            WebP, BMP, GIF), truncated or corrupt, larger than ``max_bytes``
            or ``max_pixels``, or smaller than 16 px a side.
    """
    from PIL import Image, ImageOps

    from ..images import read_image

    if isinstance(src, np.ndarray):
        a = src
        if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] not in (3, 4):
            raise PhotoError(f"expected an (H, W, 3) or (H, W, 4) uint8 array, got {a.dtype} {list(a.shape)}")
        src = Image.fromarray(np.ascontiguousarray(a))
    if isinstance(src, Image.Image):
        photo = Photo(rgb=np.zeros((1, 1, 3), np.uint8), source="<image>", mode=src.mode, stored_size=src.size)
        _check_dims(src.width, src.height, "the image", max_pixels)
        photo.rgb = _to_rgb(src, photo)
        photo.grayscale = _is_gray(photo.rgb)
        return photo
    source = "<upload>" if isinstance(src, (bytes, bytearray, memoryview)) else str(Path(src))
    try:
        im = read_image(src, what="the photo" if source == "<upload>" else f"photo {source}", max_bytes=max_bytes, max_pixels=max_pixels,
                        formats=PHOTO_FORMATS, modes=PHOTO_MODES)
    except ImageError as exc:
        raise PhotoError(str(exc)) from None
    fmt = im.format
    _check_dims(im.width, im.height, "the photo" if source == "<upload>" else f"photo {source}", max_pixels)
    photo = Photo(rgb=np.zeros((1, 1, 3), np.uint8), source=source, format=fmt, mode=im.mode,
                  stored_size=(im.width, im.height))
    if getattr(im, "is_animated", False):  # (n_frames would walk every frame of a hostile file)
        photo.warnings.append("a multi-picture JPEG (MPO): using the first picture" if fmt == "MPO"
                              else f"animated {fmt}: using the first frame")
    try:
        orientation = im.getexif().get(0x0112, 1)
        if orientation not in (1, None):
            im = ImageOps.exif_transpose(im)
            photo.exif_rotated = True
            photo.warnings.append(f"EXIF orientation {orientation} applied")
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError) as exc:
        raise PhotoError(f"{source}: corrupt EXIF data in the {fmt} file ({type(exc).__name__})") from None
    photo.rgb = _to_rgb(im, photo)
    photo.grayscale = photo.mode in ("L", "1", "LA", "I;16", "I;16B", "I;16L", "I") or _is_gray(photo.rgb)
    return photo


def _is_gray(rgb: np.ndarray) -> bool:
    """All three channels equal to within JPEG noise (max difference <= 2 levels)."""
    a = rgb.astype(np.int16)
    return bool(np.abs(a[..., 0] - a[..., 1]).max() <= 2 and np.abs(a[..., 1] - a[..., 2]).max() <= 2)
