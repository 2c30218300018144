"""The one place where the server touches the drag engine.

Everything the app asks of :class:`dragkit.drag.session.DragSession` goes
through :class:`Edit`, so a change of names in ``drag/`` changes this file
only.  An :class:`Edit` is one tab's picture: a DragSession plus what the
app adds around it (model name, seed, psi).  Its :meth:`Edit.snapshot` is a
JSON-able dict used for undo/redo and for the session files on disk.

Not thread-safe: the server calls every method from its single compute
thread (:mod:`dragkit.server.compute`).
"""
from __future__ import annotations

import dataclasses
import io
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ..drag.options import OPTION_RANGES, check_option
from ..errors import DragkitError, SpecError

# Options the web app lets users set: DragOptions' own table (DESIGN.md,
# "Edit spec"), less noise_mode.  Ranges and messages are the engine's.
OPTION_KINDS: dict[str, tuple] = {k: v for k, v in OPTION_RANGES.items() if k != "noise_mode"}
#: Largest mask PNG accepted from a browser, bytes.
MAX_MASK_BYTES = 4 * 1024 * 1024


def _session_module():
    # Imported lazily: the server package must import (and `dragkit serve
    # --help` must work) even if the drag engine is broken or missing.
    from ..drag import session as session_mod

    return session_mod


def options_to_dict(options: Any) -> dict[str, Any]:
    d = dataclasses.asdict(options)
    return {k: d[k] for k in OPTION_KINDS if k in d}


def check_options(values: dict[str, Any], num_ws: int | None = None) -> dict[str, Any]:
    """Validate user-set options (static ranges; the model's bounds are checked on set); a cleaned copy."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in OPTION_KINDS:
            raise SpecError(f"unknown option {str(key)[:40]!r}; known: {', '.join(OPTION_KINDS)}")
        out[key] = check_option(key, value)
        if key == "layers" and num_ws is not None and out[key] > num_ws:
            raise SpecError(f"option layers must be between 1 and {num_ws}, got {out[key]}")
    return out


def mask_to_png(mask: np.ndarray | None) -> bytes | None:
    """HxW bool -> 1-channel PNG (white = flexible)."""
    if mask is None:
        return None
    buf = io.BytesIO()
    Image.fromarray(np.asarray(mask, dtype=np.uint8) * 255, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def png_to_mask(data: bytes, size: int | Sequence[int]) -> np.ndarray:
    """PNG bytes -> HxW bool (grey level >= 128 is flexible), through :func:`dragkit.images.read_mask`:
    the size (``(H, W)``, e.g. :attr:`Edit.image_size`, or ``H`` for a square image) is checked from the
    header before decoding.  Blocking: call it off the event loop."""
    from ..images import read_mask

    H, W = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    return read_mask(data, (W, H), what="mask", max_bytes=MAX_MASK_BYTES)


@dataclass
class StepOut:
    """One optimisation step as the server reports it."""

    step: int
    points: list[list[float]]  # tracked handles, [x, y] pixels
    distances: list[float]  # handle -> target, pixels
    done: bool
    reached: bool


class Edit:
    """One tab's picture: a DragSession + model name, seed and psi."""

    def __init__(self, G: Any, model: str, session: Any, seed: int | None, psi: float) -> None:
        self.G = G
        self.model = model
        self.session = session
        self.seed = seed
        self.psi = float(psi)

    # -- construction ----------------------------------------------------
    @classmethod
    def new(cls, G: Any, model: str, seed: int, psi: float, options: dict[str, Any] | None = None) -> "Edit":
        mod = _session_module()
        session = mod.DragSession(G, seed=int(seed), psi=float(psi))
        edit = cls(G, model, session, int(seed), psi)
        if options:
            edit.set_options(options)
        return edit

    @classmethod
    def from_snapshot(cls, G: Any, snap: dict[str, Any]) -> "Edit":
        import torch

        mod = _session_module()
        # The zero latent is replaced by set_state; it only builds a session.
        session = mod.DragSession.from_latent(G, torch.zeros(1, int(G.num_ws), int(G.w_dim)))
        session.set_state(snap["engine"])
        return cls(G, snap["model"], session, snap.get("seed"), snap.get("psi", 0.7))

    @classmethod
    def from_file(cls, G: Any, model: str, data: bytes) -> "Edit":
        """Open a session file (what :meth:`file_bytes` wrote) for generator ``G`` (no temporary files)."""
        return cls(G, model, _session_module().DragSession.from_bytes(data, G), None, 0.7)

    # -- reading -----------------------------------------------------------
    @property
    def resolution(self) -> int:
        return int(self.G.img_resolution)

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the picture in pixels."""
        return self.session.image_size

    @property
    def num_ws(self) -> int:
        return int(self.G.num_ws)

    def points(self) -> list[dict[str, list[float]]]:
        return [
            {"handle": [float(p.handle[0]), float(p.handle[1])], "target": [float(p.target[0]), float(p.target[1])]}
            for p in self.session.points
        ]

    def mask(self) -> np.ndarray | None:
        m = self.session.mask
        if m is None:
            return None
        if hasattr(m, "detach"):
            m = m.detach().cpu().numpy()
        return np.asarray(m, dtype=bool)

    def options(self) -> dict[str, Any]:
        """User-set options; None means the engine's default for this model."""
        return options_to_dict(self.session.options)

    def resolved_options(self) -> dict[str, Any]:
        """Options with every default filled in for this model (what the next drag uses)."""
        return options_to_dict(self.session.options.resolved(self.G))

    def image(self) -> Image.Image:
        return self.session.image()

    def image_png(self) -> bytes:
        buf = io.BytesIO()
        self.image().convert("RGB").save(buf, format="PNG")
        return buf.getvalue()

    def snapshot(self) -> dict[str, Any]:
        # The app keeps its own history (every point and mask action, not just
        # drags), so the engine's drag history is left out of snapshots.
        return {"model": self.model, "seed": self.seed, "psi": self.psi,
                "engine": self.session.get_state(include_history=False)}

    def restore(self, snap: dict[str, Any]) -> None:
        """Go back to ``snap`` (same model) but keep the current options."""
        options = self.options()
        self.session.set_state(snap["engine"])
        self.seed, self.psi = snap.get("seed"), float(snap.get("psi", 0.7))
        self.set_options(options)

    def file_bytes(self) -> bytes:
        """The session file (latent + points + mask + options), as ``DragSession.save`` writes it."""
        return self.session.to_bytes()

    def check_drag(self) -> None:
        """Raise SpecError if a drag of the current points and options passes the engine's bounds."""
        self.session.check_drag()

    # -- editing (points are checked by the session: inside 0..H-1) ----------
    def add_point(self, handle: Sequence[float], target: Sequence[float]) -> int:
        return int(self.session.add_point(handle=tuple(handle), target=tuple(target)))

    def move_point(self, index: int, handle: Sequence[float] | None, target: Sequence[float] | None) -> None:
        self._check_index(index)
        self.session.move_point(index, handle=handle, target=target)

    def remove_point(self, index: int) -> None:
        self._check_index(index)
        self.session.remove_point(index)

    def clear_points(self) -> None:
        self.session.clear_points()

    def _check_index(self, index: int) -> None:
        n = len(self.session.points)
        if not 0 <= index < n:
            raise SpecError(f"no point pair #{index}; there are {n}")

    def set_mask(self, mask: np.ndarray | None) -> None:
        self.session.set_mask(None if mask is None or not mask.any() else mask)

    def set_options(self, values: dict[str, Any]) -> None:
        """Change options for the next drag; raises SpecError (nothing changed) if they do not fit."""
        clean = check_options(values, self.num_ws)
        new = dataclasses.replace(self.session.options, **clean)
        new.validate(self.G)
        self.session.options = new

    def step(self) -> StepOut:
        """One optimisation step (tracks the handles first)."""
        return self._out(self.session.step())

    def finish(self) -> StepOut:
        """End the drag: track the handles on the final image, record it in the engine."""
        r = self.session.track() if self.session.dragging else None
        self.session.end_drag()
        if r is None:
            return StepOut(0, [p["handle"] for p in self.points()], self._distances(), True, False)
        return self._out(r)

    def _distances(self) -> list[float]:
        return [math.hypot(p.target[0] - p.handle[0], p.target[1] - p.handle[1]) for p in self.session.points]

    @staticmethod
    def _out(r: Any) -> StepOut:
        return StepOut(
            step=int(r.step),
            points=[[float(p.handle[0]), float(p.handle[1])] for p in r.points],
            distances=[float(d) for d in r.distances],
            done=bool(r.done),
            reached=bool(r.reached),
        )


def session_file_model(data: bytes) -> str | None:
    """The model name recorded in a session file, if any (None if absent)."""
    import json

    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise DragkitError("not a dragkit session file (not JSON)") from None
    if not isinstance(doc, dict):
        raise DragkitError("not a dragkit session file (JSON is not an object)")
    model = doc.get("model")
    if isinstance(model, dict):
        model = model.get("name")
    return model if isinstance(model, str) and model else None


__all__ = [
    "Edit",
    "StepOut",
    "OPTION_KINDS",
    "check_options",
    "mask_to_png",
    "png_to_mask",
    "session_file_model",
]
