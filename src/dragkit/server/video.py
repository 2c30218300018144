"""The progress video of a drag: frames -> MP4 (H.264) or GIF bytes."""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np

from ..errors import DragkitError

MIN_SIDE = 256  # small models are upscaled (nearest) so the video is watchable
FPS = 15


def _upscale(frame: np.ndarray) -> np.ndarray:
    h = frame.shape[0]
    k = max(1, -(-MIN_SIDE // h))
    if k > 1:
        frame = frame.repeat(k, axis=0).repeat(k, axis=1)
    # H.264 in yuv420p needs even sides.
    return frame[: frame.shape[0] // 2 * 2, : frame.shape[1] // 2 * 2]


def encode_video(frames: list[np.ndarray], ext: str) -> tuple[bytes, str]:
    """``frames`` (each ``(H, W, 3)`` uint8) -> ``(bytes, media type)``; ext 'mp4' or 'gif'.

    The last frame is held for half a second so the result is visible.
    Raises DragkitError if no encoder is available.
    """
    import imageio.v3 as iio

    if not frames:
        raise DragkitError("no frames to encode")
    seq = [_upscale(np.asarray(f, dtype=np.uint8)) for f in frames]
    seq += [seq[-1]] * (FPS // 2)
    if ext == "gif":
        buf = io.BytesIO()
        iio.imwrite(buf, np.stack(seq), extension=".gif", duration=1000 / FPS, loop=0)
        return buf.getvalue(), "image/gif"
    fd, tmp = tempfile.mkstemp(suffix=".mp4", prefix="dragkit-video-")
    os.close(fd)
    try:
        try:
            _write_ffmpeg(tmp, seq)
        except DragkitError:
            raise
        except Exception as exc:
            raise DragkitError(f"could not encode MP4 ({exc.__class__.__name__}: {exc}); try the GIF") from None
        return Path(tmp).read_bytes(), "video/mp4"
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _write_ffmpeg(path: str, seq: list[np.ndarray]) -> None:
    try:
        import imageio_ffmpeg
    except ImportError:
        raise DragkitError("MP4 needs the imageio-ffmpeg package; the GIF works without it") from None
    h, w = seq[0].shape[:2]
    writer = imageio_ffmpeg.write_frames(
        path, (w, h), fps=FPS, codec="libx264", pix_fmt_out="yuv420p", macro_block_size=1,
        output_params=["-movflags", "+faststart"], quality=8,
    )
    writer.send(None)
    for f in seq:
        writer.send(np.ascontiguousarray(f))
    writer.close()
