"""Boxes on a map, for windowed synthesis runs.

A box is ``(x0, y0, x1, y1)`` in a map's own pixel grid, end exclusive
(columns ``x0 .. x1 - 1``, rows ``y0 .. y1 - 1``).  Map sizes are
``(width, height)`` here, as boxes put x first.
"""
from __future__ import annotations

import torch

__all__ = ["Box", "dilate", "crop", "contains", "check_box"]

Box = tuple[int, int, int, int]


def dilate(box: Box, r: int, size: tuple[int, int]) -> Box:
    """``box`` grown by ``r`` pixels on every side, clipped to a ``(width, height)`` map."""
    x0, y0, x1, y1 = box
    return max(x0 - r, 0), max(y0 - r, 0), min(x1 + r, size[0]), min(y1 + r, size[1])


def crop(x: torch.Tensor, have: Box, want: Box) -> torch.Tensor:
    """The part ``want`` of ``x (N, C, h, w)``, a map that covers the box ``have`` (``want`` inside it)."""
    return x[:, :, want[1] - have[1] : want[3] - have[1], want[0] - have[0] : want[2] - have[0]]


def contains(outer: Box, inner: Box) -> bool:
    """Whether ``inner`` lies inside ``outer``."""
    return outer[0] <= inner[0] and outer[1] <= inner[1] and inner[2] <= outer[2] and inner[3] <= outer[3]


def check_box(box: Box, size: tuple[int, int], what: str = "box") -> Box:
    """``box`` as ints if it is a non-empty box inside a ``(width, height)`` map, else ValueError."""
    x0, y0, x1, y1 = (int(v) for v in box)
    if not (0 <= x0 < x1 <= size[0] and 0 <= y0 < y1 <= size[1]):
        raise ValueError(f"{what} {tuple(box)} is not inside the {size[0]}x{size[1]} (width x height) map")
    return x0, y0, x1, y1
