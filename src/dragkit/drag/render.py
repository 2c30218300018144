"""Drawing points on images and writing progress videos (GIF or MP4)."""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw

from ..errors import DragkitError
from ..utils import atomic_path, atomic_write_bytes

__all__ = ["annotate", "write_video", "VIDEO_SUFFIXES"]

VIDEO_SUFFIXES = (".gif", ".mp4")

HANDLE = (255, 40, 40)
TARGET = (40, 120, 255)
TRAIL = (255, 255, 255)


def annotate(
    img: Image.Image,
    handles: Sequence[Sequence[float]],
    targets: Sequence[Sequence[float]],
    origins: Sequence[Sequence[float]] | None = None,
) -> Image.Image:
    """Draw handles (red), targets (blue) and arrows handle -> target on a copy of ``img``.

    ``origins`` (the handles' starting positions) adds a white trail from
    each origin to its handle.  Marker sizes scale with the image.
    """
    out = img.convert("RGB").copy()
    d = ImageDraw.Draw(out)
    s = max(out.size[0] / 256, 0.25)
    r = max(1.0, 3.0 * s)
    lw = max(1, round(1.5 * s))
    for i, (h, t) in enumerate(zip(handles, targets)):
        if origins is not None:
            d.line([tuple(origins[i]), tuple(h)], fill=TRAIL, width=lw)
        d.line([tuple(h), tuple(t)], fill=HANDLE, width=lw)
        # arrow head at the target
        hx, hy = h
        tx, ty = t
        vx, vy = tx - hx, ty - hy
        n = max((vx * vx + vy * vy) ** 0.5, 1e-9)
        ux, uy = vx / n, vy / n
        a = 3 * r
        left = (tx - a * ux + 0.5 * a * uy, ty - a * uy - 0.5 * a * ux)
        right = (tx - a * ux - 0.5 * a * uy, ty - a * uy + 0.5 * a * ux)
        if n > a:
            d.polygon([(tx, ty), left, right], fill=HANDLE)
        d.ellipse([tx - r, ty - r, tx + r, ty + r], outline=TARGET, fill=TARGET)
        d.ellipse([hx - r, hy - r, hx + r, hy + r], outline=HANDLE, fill=HANDLE)
    return out


def write_video(frames: Sequence[Image.Image], dest: str | os.PathLike[str], fps: int = 10) -> Path:
    """Write frames as ``.gif`` (Pillow) or ``.mp4`` (imageio's ffmpeg plugin), atomically."""
    dest = Path(dest)
    suffix = dest.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise DragkitError(f"{dest}: unsupported video extension (use .mp4 or .gif)")
    if not frames:
        raise DragkitError("no frames to write")
    frames = [f.convert("RGB") for f in frames]
    if suffix == ".gif":
        buf = io.BytesIO()
        frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:],
                       duration=max(1, round(1000 / fps)), loop=0)
        return atomic_write_bytes(dest, buf.getvalue())
    import numpy as np
    try:
        import imageio.v2 as imageio
    except ImportError as exc:  # pragma: no cover
        raise DragkitError(f"writing .mp4 needs imageio and imageio-ffmpeg ({exc}); use .gif instead") from None
    try:
        with atomic_path(dest, suffix=".mp4") as tmp:
            # x264 wants even sizes; pad up to a multiple of 16 like imageio would, but without a warning.
            w, h = frames[0].size
            W, H = -(-w // 16) * 16, -(-h // 16) * 16
            with imageio.get_writer(str(tmp), format="FFMPEG", mode="I", fps=fps, codec="libx264",
                                    pixelformat="yuv420p", macro_block_size=1, quality=8) as writer:
                for f in frames:
                    a = np.asarray(f)
                    if (W, H) != (w, h):
                        a = np.pad(a, ((0, H - h), (0, W - w), (0, 0)), mode="edge")
                    writer.append_data(a)
    except Exception as exc:
        if isinstance(exc, DragkitError):
            raise
        raise DragkitError(f"{dest}: could not write the video ({exc})") from exc
    return dest
