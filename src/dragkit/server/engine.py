"""The one place where the server touches the drag engine.

Everything the app asks of :class:`dragkit.drag.session.DragSession` goes
through :class:`Edit`, so a change of names in ``drag/`` changes this file
only.  An :class:`Edit` is one tab's picture: a DragSession (which holds the
latent, points, mask, options, seed and psi) and the name of its model.
Results are the engine's own :class:`~dragkit.drag.session.StepResult`
(distances, per-point ``arrived`` and the stop distance come from there),
options are checked by :meth:`DragOptions.replace`, point indices and
coordinates by the session.  :meth:`Edit.snapshot` is a JSON-able dict used
for the tab's undo/redo history and its files on disk; the sessions are made
with ``history=False``, since the tab's history is the app's one undo system.

Not thread-safe: the server calls every method from its single compute
thread (:mod:`dragkit.server.compute`).
"""
from __future__ import annotations

import io
import json
import logging
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from PIL import Image

from ..drag.options import OPTION_NAMES, option_limits
from ..errors import DragkitError

if TYPE_CHECKING:
    from ..drag.session import DragSession, StepResult

log = logging.getLogger("dragkit.server")

#: Options the web app lets users set: the engine's, less noise_mode.
APP_OPTIONS: tuple[str, ...] = tuple(n for n in OPTION_NAMES if n != "noise_mode")
#: Largest mask PNG accepted from a browser, bytes.
MAX_MASK_BYTES = 4 * 1024 * 1024


def _session_class() -> "type[DragSession]":
    # Imported lazily: the server package must import (and `dragkit serve
    # --help` must work) even if the drag engine is broken or missing.
    from ..drag.session import DragSession

    return DragSession


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


def warm_up(G: Any) -> None:
    """One throwaway drag step, so a user's first Start does not pay PyTorch's start-up costs."""
    try:
        s = _session_class()(G, seed=0, history=False)
        H, W = s.image_size  # a point inside the image, also a non-square (H x H/2) one
        cx, cy = W // 2, H // 2
        s.add_point(handle=(cx, cy), target=(min(cx + 4, W - 1), cy))
        s.step()
        s.image()
    except Exception:  # a model the drag cannot use fails later, with its real error
        log.warning("warm-up drag failed for %s", G.model_name, exc_info=True)


class Edit:
    """One tab's picture: a DragSession and the name of its model."""

    def __init__(self, G: Any, model: str, session: "DragSession") -> None:
        self.G = G
        self.model = model
        self.session = session

    # -- construction ----------------------------------------------------
    @classmethod
    def new(cls, G: Any, model: str, seed: int, psi: float) -> "Edit":
        return cls(G, model, _session_class()(G, seed=int(seed), psi=float(psi), history=False))

    @classmethod
    def from_snapshot(cls, G: Any, snap: dict[str, Any]) -> "Edit":
        """Rebuild an edit from :meth:`snapshot` (validated by ``DragSession.set_state``)."""
        import torch

        # The zero latent is replaced by set_state; it only builds a session.
        session = _session_class().from_latent(G, torch.zeros(1, int(G.num_ws), int(G.w_dim)), history=False)
        session.set_state(snap["engine"])
        return cls(G, snap["model"], session)

    @classmethod
    def from_file(cls, G: Any, model: str, data: bytes) -> "Edit":
        """Open a session file (what :meth:`file_bytes` wrote) for generator ``G`` (no temporary files)."""
        return cls(G, model, _session_class().from_bytes(data, G, history=False))

    @classmethod
    def invert_photo(cls, G: Any, base_model: str, photo: Any, config: Any, *, progress: Any = None,
                     cancel: Any = None) -> "DragSession":
        """Invert ``photo`` into ``G`` (:meth:`DragSession.from_image`); blocking, one progress call per step.

        Returns the engine's session (its ``G`` the edit's own tuned copy after PTI); :meth:`from_photo_file`
        turns the file it saves into an edit.

        Raises:
            PhotoError, NoFaceError, InversionCancelled, DragkitError: see ``DragSession.from_image``.
        """
        return _session_class().from_image(G, photo, config=config, model=base_model, progress=progress,
                                           cancel=cancel)

    @classmethod
    def from_photo_file(cls, G: Any, name: str, data: bytes) -> "Edit":
        """An edit of an inverted photo from its saved session file (``session.save``'s ``*.dragkit.json``),
        on generator ``G`` (the tuned copy, or the base model); ``name`` is how the app names that generator."""
        return cls(G, name, _session_class().from_bytes(data, G, history=False))

    # -- reading -----------------------------------------------------------
    @property
    def inversion(self) -> dict[str, Any] | None:
        """The inversion block of an edit of a photo (PSNR, settings, base model; docs/invert.md), else None."""
        return self.session.inversion

    @property
    def base_model(self) -> str:
        """The model as the user chose it: for an edit of a photo, the model it was inverted into."""
        inv = self.session.inversion
        base = inv.get("base_model") if isinstance(inv, dict) else None
        return base if isinstance(base, str) and base else self.model

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

    @property
    def seed(self) -> int | None:
        return self.session.seed

    @property
    def psi(self) -> float:
        return float(self.session.psi)

    @property
    def num_points(self) -> int:
        return self.session.num_points

    def status(self) -> "StepResult":
        """The points as they are now, with distances, ``arrived`` and the stop distance (the engine's)."""
        return self.session.status()

    def handles_outside_mask(self) -> list[int]:
        """Pairs whose handle lies on a fixed pixel of the mask (it cannot move; the engine's rule)."""
        return self.session.handles_outside_mask()

    def points(self) -> list[dict[str, list[float]]]:
        return [{"handle": [float(p.handle[0]), float(p.handle[1])], "target": [float(p.target[0]), float(p.target[1])]}
                for p in self.session.points]

    def mask(self) -> np.ndarray | None:
        return self.session.mask

    def options(self) -> dict[str, Any]:
        """User-set options; None means the engine's default for this model."""
        d = self.session.options.to_dict()
        return {k: d[k] for k in APP_OPTIONS}

    def resolved_options(self) -> dict[str, Any]:
        """Options with every default filled in for this model (what the next drag uses)."""
        d = self.session.options.resolved(self.G).to_dict()
        return {k: d[k] for k in APP_OPTIONS}

    def option_limits(self) -> dict[str, Any]:
        """What each option may be for this model (:func:`~dragkit.drag.options.option_limits`), JSON."""
        limits = option_limits(self.G)
        return {k: limits[k].to_json() for k in APP_OPTIONS}

    def image(self) -> Image.Image:
        return self.session.image()

    def image_png(self) -> bytes:
        buf = io.BytesIO()
        self.image().convert("RGB").save(buf, format="PNG")
        return buf.getvalue()

    def snapshot(self) -> dict[str, Any]:
        """``{model, seed, psi, engine}``: everything this edit is, JSON-able (an undo level)."""
        return {"model": self.model, "seed": self.seed, "psi": self.psi,
                "engine": self.session.get_state(include_history=False)}

    def restore(self, snap: dict[str, Any]) -> None:
        """Go back to ``snap`` (same model) but keep the current options."""
        options = self.options()
        self.session.set_state(snap["engine"])
        self.set_options(options)

    def file_bytes(self) -> bytes:
        """The session file (latent + points + mask + options), as ``DragSession.save`` writes it."""
        return self.session.to_bytes()

    def check_drag(self) -> None:
        """Raise SpecError unless a drag of the current points and options passes the engine's bounds."""
        self.session.check_drag()

    # -- editing (points and indices are checked by the session) ------------
    def add_point(self, handle: Sequence[float], target: Sequence[float]) -> int:
        return self.session.add_point(handle=handle, target=target)

    def move_point(self, index: int, handle: Sequence[float] | None, target: Sequence[float] | None) -> None:
        self.session.move_point(index, handle=handle, target=target)

    def remove_point(self, index: int) -> None:
        self.session.remove_point(index)

    def clear_points(self) -> None:
        self.session.clear_points()

    def set_mask(self, mask: np.ndarray | None) -> None:
        self.session.set_mask(None if mask is None or not mask.any() else mask)

    def set_options(self, values: dict[str, Any]) -> None:
        """Change options for the next drag; raises SpecError (nothing changed) if they do not fit."""
        self.session.options = self.session.options.replace(values, self.G, names=APP_OPTIONS)

    def step(self) -> "StepResult":
        """One optimisation step (tracks the handles first)."""
        return self.session.step()

    def finish(self) -> "StepResult":
        """End the drag: track the handles on the final image (the engine's ``finish``)."""
        return self.session.finish()


def session_file_model(data: bytes) -> str | None:
    """The model name recorded in a session file, if any (None if absent)."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise DragkitError("not a dragkit session file (not JSON)") from None
    if not isinstance(doc, dict):
        raise DragkitError("not a dragkit session file (JSON is not an object)")
    model = doc.get("model")
    if isinstance(model, dict):
        model = model.get("name")
    return model if isinstance(model, str) and model else None


__all__ = ["Edit", "APP_OPTIONS", "mask_to_png", "png_to_mask", "session_file_model", "warm_up"]
