"""The drag algorithm: pure functions (:mod:`.core`), block features on a
window (:mod:`.features`) and the stateful :class:`DragSession`.

Every public name of :mod:`.core` is re-exported.  ``DragSession`` and
friends are imported lazily so ``import dragkit.drag`` stays cheap.
"""
from __future__ import annotations

from . import core
from .core import *  # noqa: F401,F403  (the pure functions; core.__all__ lists them)
from .features import block_features

_LAZY = ("DragSession", "DragOptions", "PointPair", "StepResult")

__all__ = [*core.__all__, "block_features", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        from . import session

        return getattr(session, name)
    raise AttributeError(f"module 'dragkit.drag' has no attribute {name!r}")
