"""The drag algorithm: pure functions (:mod:`.core`), block features on a
window (:mod:`.features`) and the stateful :class:`DragSession`.

``DragSession`` and friends are imported lazily so ``import dragkit.drag``
stays cheap.
"""
from __future__ import annotations

from .core import (
    disk_offsets,
    mask_loss,
    motion_supervision_loss,
    needed_feature_box,
    pixel_to_feature,
    sample_features,
    square_offsets,
    stop_distance_for,
    track_points,
)
from .features import block_features

__all__ = [
    "disk_offsets",
    "square_offsets",
    "pixel_to_feature",
    "sample_features",
    "motion_supervision_loss",
    "mask_loss",
    "track_points",
    "needed_feature_box",
    "stop_distance_for",
    "block_features",
    "DragSession",
    "DragOptions",
    "PointPair",
    "StepResult",
]


def __getattr__(name: str):
    if name in ("DragSession", "DragOptions", "PointPair", "StepResult"):
        from . import session

        return getattr(session, name)
    raise AttributeError(f"module 'dragkit.drag' has no attribute {name!r}")
