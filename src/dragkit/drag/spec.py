"""The edit spec of ``dragkit drag --spec edit.json``: parse and validate it.

Everything is checked before any computation, and every problem is one
:class:`~dragkit.errors.SpecError` whose message names the key at fault.
See docs/DESIGN.md ("Edit spec") and docs/drag.md.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import SpecError
from .options import MAX_POINTS, DragOptions, check_psi, check_seed, check_steps
from .points import check_inside, parse_xy

__all__ = ["EditSpec", "parse_spec", "load_spec", "SPEC_KEYS"]

#: Largest spec file read (real ones are a few hundred bytes).
MAX_SPEC_BYTES = 1 << 20
SPEC_KEYS = ("model", "seed", "psi", "latent", "points", "mask", "max_steps", "options")
POINT_KEYS = ("handle", "target")


@dataclass
class EditSpec:
    """A validated edit spec (paths resolved against the spec file's folder)."""

    model: str | None
    seed: int
    psi: float
    latent: Path | None
    points: list[tuple[tuple[float, float], tuple[float, float]]]
    mask: Path | None
    max_steps: int
    options: DragOptions = field(default_factory=DragOptions)


def _number(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise SpecError(f"{what} must be a number, got {json.dumps(v)}")
    if not math.isfinite(v):
        raise SpecError(f"{what} must be finite, got {v}")
    return float(v)


def parse_spec(data: Any, base_dir: str | os.PathLike[str] = ".") -> EditSpec:
    """Validate a decoded spec (no model needed; see :func:`check_against_model`)."""
    if not isinstance(data, dict):
        raise SpecError("the spec must be a JSON object")
    unknown = sorted(set(data) - set(SPEC_KEYS))
    if unknown:
        raise SpecError(f"unknown key(s) {', '.join(map(repr, unknown))} in spec; known keys: {', '.join(SPEC_KEYS)}")
    base = Path(base_dir)
    model = data.get("model")
    if model is not None and (not isinstance(model, str) or not model):
        raise SpecError(f"model must be a model name or path, got {json.dumps(model)}")
    if "latent" in data and data["latent"] is not None and ("seed" in data or "psi" in data):
        raise SpecError("give either latent or seed/psi, not both")
    seed = check_seed(data.get("seed", 0))
    psi = check_psi(data.get("psi", 0.7))
    latent = data.get("latent")
    if latent is not None:
        if not isinstance(latent, str) or not latent.endswith(".npy"):
            raise SpecError(f"latent must be the path of a .npy file, got {json.dumps(latent)}")
        latent = base / latent
    points_raw = data.get("points")
    if not isinstance(points_raw, list) or not points_raw:
        raise SpecError("points must be a non-empty list of {\"handle\": [x, y], \"target\": [x, y]}")
    if len(points_raw) > MAX_POINTS:
        raise SpecError(f"points: at most {MAX_POINTS} point pairs per drag, got {len(points_raw)}")
    points = []
    for i, p in enumerate(points_raw):
        if not isinstance(p, dict):
            raise SpecError(f"points[{i}] must be an object with handle and target")
        bad = sorted(set(p) - set(POINT_KEYS))
        if bad:
            raise SpecError(f"unknown key(s) {', '.join(map(repr, bad))} in points[{i}]; known keys: handle, target")
        for k in POINT_KEYS:
            if k not in p:
                raise SpecError(f"points[{i}] has no {k}")
        points.append((parse_xy(p["handle"], f"points[{i}].handle"), parse_xy(p["target"], f"points[{i}].target")))
    mask = data.get("mask")
    if mask is not None:
        if not isinstance(mask, str) or not mask:
            raise SpecError(f"mask must be the path of an image, got {json.dumps(mask)}")
        mask = base / mask
    max_steps = check_steps(data.get("max_steps", 300))
    opts_raw = data.get("options")
    options = DragOptions.from_dict({} if opts_raw is None else opts_raw)
    return EditSpec(model=model, seed=seed, psi=psi, latent=latent, points=points, mask=mask,
                    max_steps=max_steps, options=options)


def load_spec(path: str | os.PathLike[str]) -> EditSpec:
    """Read and validate a spec file (``NaN``/``Infinity`` literals are rejected)."""
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"{p}: no such spec file")
    if p.stat().st_size > MAX_SPEC_BYTES:
        raise SpecError(f"{p}: too large for an edit spec (over {MAX_SPEC_BYTES // 1024} KiB)")

    def bad_constant(name: str) -> Any:
        raise SpecError(f"{p}: {name} is not a valid number in the spec")

    try:
        data = json.loads(p.read_text(encoding="utf-8"), parse_constant=bad_constant)
    except UnicodeDecodeError:
        raise SpecError(f"{p}: not a UTF-8 JSON file") from None
    except json.JSONDecodeError as exc:
        raise SpecError(f"{p}: invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise SpecError(f"{p}: invalid JSON (nests too deeply)") from None
    return parse_spec(data, p.parent)


def _hw(size: int | Sequence[int]) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def load_mask_image(path: Path, size: int | Sequence[int]) -> np.ndarray:
    """A mask image -> ``(H, W)`` bool, white (>= 128) = flexible; must be the image's size.

    ``size`` is ``(H, W)`` (``dragkit.drag.options.image_size(G)``) or ``H``
    for a square image.  Read with :func:`dragkit.images.read_mask`: the
    size is checked from the header before anything is decoded (a
    decompression bomb costs nothing).

    Raises:
        ImageError: unreadable, or another size ("must be WxH pixels").
    """
    from ..images import read_mask

    H, W = _hw(size)
    return read_mask(path, (W, H), what=f"mask {path}")


def load_latent_npy(path: Path, num_ws: int, w_dim: int) -> np.ndarray:
    """A ``.npy`` latent -> ``(1, num_ws, w_dim)`` float32 (W ``(1, w_dim)`` is broadcast)."""
    if not path.is_file():
        raise SpecError(f"latent {path}: no such file")
    try:  # memory-mapped: a header declaring a huge shape allocates nothing
        a = np.load(path, allow_pickle=False, mmap_mode="r")
    except Exception as exc:
        raise SpecError(f"latent {path}: not a readable .npy array ({str(exc)[:120]})") from None
    if not np.issubdtype(a.dtype, np.floating):
        raise SpecError(f"latent {path}: expected floats, got {a.dtype}")
    if a.shape in ((w_dim,), (1, w_dim)):
        a = np.broadcast_to(a.reshape(1, 1, w_dim), (1, num_ws, w_dim))
    elif a.shape == (num_ws, w_dim):
        a = a[None]
    if a.shape != (1, num_ws, w_dim):
        raise SpecError(f"latent {path} has shape {list(a.shape)}; this model needs [1, {num_ws}, {w_dim}]")
    if not np.isfinite(a).all():
        raise SpecError(f"latent {path} contains NaN or infinity")
    return np.ascontiguousarray(a, dtype=np.float32)


def check_points(spec: EditSpec, size: int | Sequence[int]) -> None:
    """Every point inside the image: ``0 <= x <= W - 1``, ``0 <= y <= H - 1``.

    ``size`` is ``(H, W)`` or ``H`` for a square image.

    Raises:
        SpecError: naming the first point outside (``points[0].target [40, 3] lies outside the
            32x64 (width x height) image ...``).
    """
    H, W = _hw(size)
    for i, (h, t) in enumerate(spec.points):
        for name, xy in (("handle", h), ("target", t)):
            check_inside(xy, W, H, f"points[{i}].{name}")
