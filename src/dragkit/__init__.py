"""dragkit: DragGAN as real software.

Public API (re-exports only)::

    from dragkit import load_model, DragSession
"""
from __future__ import annotations

from .threads import set_wait_policy as _set_wait_policy

# Before torch loads: OpenMP threads that sleep instead of spinning (a shared
# machine's drag steps are several times faster; dragkit/threads.py).
_set_wait_policy()

__version__ = "0.1.0"

__all__ = ["__version__", "load_model", "DragSession"]


def __getattr__(name: str):
    # Lazy re-exports keep `import dragkit` cheap and avoid import cycles.
    if name == "load_model":
        from .models import load_model

        return load_model
    if name == "DragSession":
        from .drag.session import DragSession

        return DragSession
    raise AttributeError(f"module 'dragkit' has no attribute {name!r}")
