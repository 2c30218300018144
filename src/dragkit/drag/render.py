"""Drawing points on images (the progress videos are written by :mod:`dragkit.video`)."""
from __future__ import annotations

from typing import Sequence

from PIL import Image, ImageDraw

from ..utils import upscale
from ..video import VIDEO_SUFFIXES, write_video  # noqa: F401  (their home is dragkit.video)

__all__ = ["annotate"]

HANDLE = (255, 40, 40)
TARGET = (40, 120, 255)
TRAIL = (255, 255, 255)


def annotate(
    img: Image.Image,
    handles: Sequence[Sequence[float]],
    targets: Sequence[Sequence[float]],
    origins: Sequence[Sequence[float]] | None = None,
    scale: int = 1,
) -> Image.Image:
    """Draw handles (red), targets (blue) and arrows handle -> target on a copy of ``img``.

    Points are ``[x, y]`` pixels of ``img``.  ``origins`` (the handles'
    starting positions) adds a white trail from each origin to its handle.
    ``scale``: the image is first enlarged that many times (nearest
    neighbour) and the marks are drawn at the enlarged size, so they stay
    sharp on a small model (pixel ``p``'s centre lands at ``(p + 0.5) k - 0.5``).
    Marker sizes scale with the (enlarged) image.
    """
    k = int(scale)
    out = upscale(img.convert("RGB"), k).copy()

    def at(p: Sequence[float]) -> tuple[float, float]:
        return ((p[0] + 0.5) * k - 0.5, (p[1] + 0.5) * k - 0.5)

    handles = [at(h) for h in handles]
    targets = [at(t) for t in targets]
    origins = None if origins is None else [at(o) for o in origins]
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
