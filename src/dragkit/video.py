"""The one video encoder: frames -> GIF (Pillow) or MP4 (H.264, imageio-ffmpeg).

``dragkit drag --video`` writes a file (:func:`write_video`, atomically);
the web app serves bytes (:func:`encode_video`).  Both go through the same
frame preparation and writers.
"""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Sequence, Union

import numpy as np
from PIL import Image

from .errors import DragkitError
from .utils import atomic_path

__all__ = ["VIDEO_SUFFIXES", "MEDIA_TYPES", "encode_video", "write_video"]

VIDEO_SUFFIXES = (".gif", ".mp4")
MEDIA_TYPES = {"gif": "image/gif", "mp4": "video/mp4"}

Frame = Union[np.ndarray, Image.Image]


def _prepare(frames: Sequence[Frame], min_side: int, hold: float, fps: float) -> list[np.ndarray]:
    """``(H, W, 3)`` uint8 frames: upscaled (nearest, a whole factor) to at least ``min_side``
    pixels high, padded (edge) to even sides for H.264's yuv420p, the last one repeated
    for ``hold`` seconds."""
    if not frames:
        raise DragkitError("no frames to write")
    seq = []
    for f in frames:
        a = np.asarray(f.convert("RGB") if isinstance(f, Image.Image) else f, dtype=np.uint8)
        k = max(1, -(-int(min_side) // a.shape[0])) if min_side else 1
        if k > 1:
            a = a.repeat(k, axis=0).repeat(k, axis=1)
        h, w = a.shape[:2]
        if h % 2 or w % 2:
            a = np.pad(a, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        seq.append(np.ascontiguousarray(a))
    return seq + [seq[-1]] * int(round(hold * fps))


def _gif(seq: list[np.ndarray], out: io.BytesIO | Path, fps: float) -> None:
    images = [Image.fromarray(a) for a in seq]
    images[0].save(out, format="GIF", save_all=True, append_images=images[1:],
                   duration=max(1, round(1000 / fps)), loop=0)


def _mp4(seq: list[np.ndarray], path: Path, fps: float) -> None:
    try:
        import imageio_ffmpeg
    except ImportError:
        raise DragkitError("MP4 needs the imageio-ffmpeg package; a .gif works without it") from None
    h, w = seq[0].shape[:2]
    try:
        writer = imageio_ffmpeg.write_frames(
            str(path), (w, h), fps=fps, codec="libx264", pix_fmt_out="yuv420p", macro_block_size=1,
            output_params=["-movflags", "+faststart"], quality=8,
        )
        writer.send(None)
        for a in seq:
            writer.send(a)
        writer.close()
    except Exception as exc:
        raise DragkitError(f"could not encode the MP4 ({exc.__class__.__name__}: {str(exc)[:200]}); "
                           "a .gif works without ffmpeg") from None


def encode_video(frames: Sequence[Frame], ext: str, fps: float = 15, *, min_side: int = 0,
                 hold: float = 0.0) -> bytes:
    """Frames (``(H, W, 3)`` uint8 arrays or PIL images) -> the bytes of a ``'gif'`` or ``'mp4'``.

    Args:
        min_side: upscale small frames (nearest) to at least this height.
        hold: seconds the last frame is shown longer.

    Raises:
        DragkitError: no frames, an unknown ``ext``, or no MP4 encoder.
    """
    ext = ext.lower().lstrip(".")
    if ext not in MEDIA_TYPES:
        raise DragkitError(f"unsupported video format {ext[:10]!r} (use mp4 or gif)")
    seq = _prepare(frames, min_side, hold, fps)
    if ext == "gif":
        buf = io.BytesIO()
        _gif(seq, buf, fps)
        return buf.getvalue()
    fd, name = tempfile.mkstemp(suffix=".mp4", prefix="dragkit-video-")  # ffmpeg writes MP4 to a file
    os.close(fd)
    try:
        _mp4(seq, Path(name), fps)
        return Path(name).read_bytes()
    finally:
        try:
            os.unlink(name)
        except OSError:
            pass


def write_video(frames: Sequence[Frame], dest: str | os.PathLike[str], fps: float = 10, *, min_side: int = 0,
                hold: float = 0.0) -> Path:
    """Write frames to ``dest`` (``.gif`` or ``.mp4``, by its extension), atomically.

    Raises:
        DragkitError: an unsupported extension, no frames, or no MP4 encoder
            (the message names ``dest``); ``dest`` is then untouched.
    """
    dest = Path(dest)
    suffix = dest.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise DragkitError(f"{dest}: unsupported video extension (use .mp4 or .gif)")
    try:
        seq = _prepare(frames, min_side, hold, fps)
        with atomic_path(dest, suffix=suffix) as tmp:
            (_gif if suffix == ".gif" else _mp4)(seq, tmp, fps)
    except DragkitError as exc:
        raise DragkitError(f"{dest}: {exc}") from None
    return dest
