"""The procedural toy world: images with known geometry, and an oracle.

Every toy image shows two objects on a plain grey background: a **disk**
and a horizontal **bar** (a rectangle 2.5 times as long as it is thick),
each of a random saturated colour, size and position, never overlapping
and never touching the border.  Images are drawn anti-aliased with exact
(bar) or radially symmetric (disk) pixel coverage, so the coverage-weighted
centroid of each object is its true centre.  The two shapes differ in
elongation, a coarse feature that a small generator learns early (an
earlier disk-and-square world failed here: at 32 px a generator's squares
came out as squircles that were neither shape).  The world is what the
bundled ``toy`` model is trained on, and its oracle (:func:`measure`) is
what drag tests score against: drag the disk's centre to a target and the
oracle tells where the disk ended up.

Coordinates are ``[x, y]`` pixels, x to the right, y down, pixel centres at
integers (the image spans ``[-0.5, R - 0.5]``).  Sizes are radii (disk) and
half lengths (bar) in pixels.

The geometry ranges are defined at 64 px and scale with the resolution.

Command line (writes a training set, deterministic by seed)::

    python -m dragkit.train.toy --out toy64.zip --count 50000 --seed 0
"""
# Why this module is long (~540 lines): the world and its oracle are one contract (the oracle
# measures exactly what the renderer draws); split apart, a change to one could silently miss the other.
from __future__ import annotations

import argparse
import colorsys
import io
import json
import math
import os
import sys
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = [
    "ToyObject",
    "ToyScene",
    "ObjectMeasurement",
    "ToyMeasurement",
    "sample_scene",
    "render_scene",
    "toy_image",
    "measure",
    "write_toy_dataset",
    "SHAPES",
]

SHAPES = ("disk", "bar")

# Geometry at the reference resolution of 64 px (scaled for others).
_REF_RES = 64
_DISK_RADIUS = (8.0, 13.0)
_BAR_HALF_LENGTH = (11.0, 16.0)
BAR_ASPECT = 2.5  # length / thickness of the bar (always horizontal)
_MARGIN = 3.0  # min distance of any object from the image border
_GAP = 4.0  # min distance between the two objects' outlines
_BG_LEVEL = (0.20, 0.32)  # grey background level range, [0, 1]
_SAT = (0.65, 1.0)
_VAL = (0.80, 1.0)


@dataclass(frozen=True)
class ToyObject:
    """One object of a toy scene.

    Attributes:
        shape: ``'disk'`` or ``'bar'``.
        center: ``(x, y)`` pixels.
        size: radius (disk) or half length (bar; its half thickness is
            ``size / BAR_ASPECT``), pixels.
        color: RGB in [0, 1].
    """

    shape: str
    center: tuple[float, float]
    size: float
    color: tuple[float, float, float]

    @property
    def half_extent(self) -> tuple[float, float]:
        """Half width and half height of the object's bounding box, pixels."""
        if self.shape == "bar":
            return (self.size, self.size / BAR_ASPECT)
        return (self.size, self.size)


@dataclass(frozen=True)
class ToyScene:
    """A full toy scene: background colour and its objects (disk first)."""

    resolution: int
    background: tuple[float, float, float]
    objects: tuple[ToyObject, ...]

    def get(self, shape: str) -> ToyObject:
        """The object of the given shape (``'disk'`` or ``'bar'``)."""
        for obj in self.objects:
            if obj.shape == shape:
                return obj
        raise KeyError(shape)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rect_distance(px: float, py: float, cx: float, cy: float, hx: float, hy: float) -> float:
    """Distance from point ``(px, py)`` to the axis-aligned rectangle (0 inside)."""
    dx = max(abs(px - cx) - hx, 0.0)
    dy = max(abs(py - cy) - hy, 0.0)
    return math.hypot(dx, dy)


def _random_color(rng: np.random.Generator) -> tuple[float, float, float]:
    h = rng.uniform(0.0, 1.0)
    s = rng.uniform(*_SAT)
    v = rng.uniform(*_VAL)
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return (float(r), float(g), float(b))


def sample_scene(rng: np.random.Generator, resolution: int = 64) -> ToyScene:
    """Draw a random scene (a disk and a horizontal bar) for an image of ``resolution`` px.

    Deterministic given the state of ``rng``.
    """
    scale = resolution / _REF_RES
    grey = float(rng.uniform(*_BG_LEVEL))
    background = (grey, grey, grey)
    radius = float(rng.uniform(*_DISK_RADIUS)) * scale
    hx = float(rng.uniform(*_BAR_HALF_LENGTH)) * scale
    hy = hx / BAR_ASPECT
    margin, gap = _MARGIN * scale, _GAP * scale
    lo_d, hi_d = -0.5 + margin + radius, resolution - 0.5 - margin - radius
    for _ in range(1000):
        dx, dy = rng.uniform(lo_d, hi_d, size=2)
        bx = rng.uniform(-0.5 + margin + hx, resolution - 0.5 - margin - hx)
        by = rng.uniform(-0.5 + margin + hy, resolution - 0.5 - margin - hy)
        if _rect_distance(dx, dy, bx, by, hx, hy) >= radius + gap:
            break
    else:  # pragma: no cover - the ranges always leave room
        raise RuntimeError("could not place the toy objects")
    disk = ToyObject("disk", (float(dx), float(dy)), radius, _random_color(rng))
    bar = ToyObject("bar", (float(bx), float(by)), hx, _random_color(rng))
    return ToyScene(int(resolution), background, (disk, bar))


def _box_coverage(cx: float, cy: float, hx: float, hy: float, resolution: int) -> np.ndarray:
    """Exact pixel coverage ``(R, R)`` of an axis-aligned rectangle."""
    coords = np.arange(resolution, dtype=np.float64)
    ox = np.clip(np.minimum(coords + 0.5, cx + hx) - np.maximum(coords - 0.5, cx - hx), 0.0, 1.0)
    oy = np.clip(np.minimum(coords + 0.5, cy + hy) - np.maximum(coords - 0.5, cy - hy), 0.0, 1.0)
    return oy[:, None] * ox[None, :]


def _coverage(obj: ToyObject, resolution: int) -> np.ndarray:
    """Anti-aliased coverage ``(R, R)`` in [0, 1] of one object."""
    cx, cy = obj.center
    if obj.shape == "disk":
        coords = np.arange(resolution, dtype=np.float64)
        d = np.hypot(coords[None, :] - cx, coords[:, None] - cy)
        # Linear ramp over one pixel: radially symmetric, so the weighted
        # centroid is exactly the centre; area error < 0.1 px^2.
        return np.clip(obj.size + 0.5 - d, 0.0, 1.0)
    if obj.shape == "bar":
        hx, hy = obj.half_extent
        return _box_coverage(cx, cy, hx, hy, resolution)
    raise ValueError(f"unknown shape {obj.shape!r}")


def render_scene(scene: ToyScene) -> np.ndarray:
    """Draw a scene. Returns ``(R, R, 3)`` uint8 RGB."""
    res = scene.resolution
    img = np.empty((res, res, 3), dtype=np.float64)
    img[:] = np.asarray(scene.background)
    for obj in scene.objects:
        a = _coverage(obj, res)[:, :, None]
        img = img * (1.0 - a) + np.asarray(obj.color) * a
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def toy_image(seed: int, index: int, resolution: int = 64) -> tuple[np.ndarray, ToyScene]:
    """Image ``index`` of the toy data set ``seed``: ``((R, R, 3) uint8, scene)``.

    Each image depends only on ``(seed, index, resolution)``, so any subset of
    a data set can be regenerated without the others.
    """
    rng = np.random.default_rng([int(seed), int(index)])
    scene = sample_scene(rng, resolution)
    return render_scene(scene), scene


# ----------------------------------------------------------------------------
# Oracle


@dataclass
class ObjectMeasurement:
    """What the oracle measured of one object.

    Attributes:
        shape: ``'disk'`` or ``'bar'`` (decided by shape, never colour).
        center: ``(x, y)`` pixels, coverage-weighted centroid.
        size: radius (disk) or half length (bar) of the ideal shape with
            the measured area, pixels.
        area: coverage-weighted area, pixels^2.
        color: RGB in [0, 1] (median of the object's interior).
        fit: soft IoU of the object's coverage with the ideal shape of the
            same area and centre (1 = perfect).
        elongation: square root of the ratio of the coverage's principal
            second moments (1 for a disk, ``BAR_ASPECT`` for a bar).
        other_fit: the same for the other shape (how confusable it is).
        plausible: shape fit, margin and size all within the world's range.
    """

    shape: str
    center: tuple[float, float]
    size: float
    area: float
    color: tuple[float, float, float]
    fit: float
    other_fit: float
    elongation: float
    plausible: bool

    @property
    def half_extent(self) -> tuple[float, float]:
        """Half width and half height of the ideal shape's bounding box, pixels."""
        if self.shape == "bar":
            return (self.size, self.size / BAR_ASPECT)
        return (self.size, self.size)


@dataclass
class ToyMeasurement:
    """The oracle's reading of one image.

    ``ok`` is True when exactly one plausible disk and one plausible bar
    were found and nothing else of note; ``disk`` / ``bar`` are None when
    that object is missing or implausible, and ``problems`` says why.
    """

    ok: bool
    disk: ObjectMeasurement | None
    bar: ObjectMeasurement | None
    background: tuple[float, float, float]
    problems: list[str] = field(default_factory=list)
    objects: list[ObjectMeasurement] = field(default_factory=list)

    def get(self, shape: str) -> ObjectMeasurement | None:
        if shape not in SHAPES:
            raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")
        return self.disk if shape == "disk" else self.bar


def _as_float_image(image: Any) -> np.ndarray:
    """PIL image / uint8 HWC array / float tensor or array CHW in [-1, 1] -> ``(H, W, 3)`` float64 [0, 1]."""
    try:
        from PIL import Image

        if isinstance(image, Image.Image):
            return np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    except ImportError:  # pragma: no cover
        pass
    if hasattr(image, "detach"):  # torch tensor, NVIDIA convention CHW in [-1, 1]
        t = image.detach().to("cpu").float()
        if t.ndim == 4:
            if t.shape[0] != 1:
                raise ValueError("measure() takes one image; got a batch")
            t = t[0]
        if t.ndim != 3 or t.shape[0] != 3:
            raise ValueError(f"expected a (3, H, W) tensor, got {list(t.shape)}")
        arr = t.numpy().astype(np.float64).transpose(1, 2, 0)
        return np.clip((arr + 1.0) / 2.0, 0.0, 1.0)
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float64) / 255.0
    return np.clip(arr.astype(np.float64), 0.0, 1.0)


def _label(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected components of a boolean mask: ``(labels (H, W) int, count)``, 0 = none."""
    h, w = mask.shape
    big = h * w + 1
    lab = np.where(mask, np.arange(1, h * w + 1).reshape(h, w), big)
    while True:
        p = np.pad(lab, 1, constant_values=big)
        nb = np.minimum.reduce([p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:], lab])
        nb = np.where(mask, nb, big)
        if np.array_equal(nb, lab):
            break
        lab = nb
    out = np.zeros((h, w), dtype=np.int64)
    uniq = np.unique(lab[mask])
    for i, u in enumerate(uniq, start=1):
        out[lab == u] = i
    return out, len(uniq)


def _dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    for _ in range(steps):
        p = np.pad(mask, 1)
        mask = p[1:-1, 1:-1] | p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:] | \
            p[:-2, :-2] | p[:-2, 2:] | p[2:, :-2] | p[2:, 2:]
    return mask


def _erode(mask: np.ndarray) -> np.ndarray:
    p = np.pad(mask, 1)
    return mask & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]


def _size_from_area(shape: str, area: float) -> float:
    """Radius (disk) or half length (bar) of the ideal shape of this area."""
    if shape == "disk":
        return math.sqrt(area / math.pi)
    return math.sqrt(area * BAR_ASPECT / 4.0)


def _elongation(alpha: np.ndarray, cx: float, cy: float, area: float) -> float:
    """sqrt(major / minor principal second moment) of a coverage map."""
    ys, xs = np.mgrid[0:alpha.shape[0], 0:alpha.shape[1]]
    dx, dy = xs - cx, ys - cy
    # A pixel is a unit square, not a point: add its own variance (1/12).
    sxx = float((alpha * dx * dx).sum() / area) + 1.0 / 12.0
    syy = float((alpha * dy * dy).sum() / area) + 1.0 / 12.0
    sxy = float((alpha * dx * dy).sum() / area)
    tr, det = sxx + syy, sxx * syy - sxy * sxy
    disc = math.sqrt(max(tr * tr / 4.0 - det, 0.0))
    lo = max(tr / 2.0 - disc, 1e-9)
    return math.sqrt((tr / 2.0 + disc) / lo)


def _ideal(shape: str, cx: float, cy: float, area: float, h: int, w: int) -> np.ndarray:
    obj = ToyObject(shape, (cx, cy), _size_from_area(shape, area), (0.0, 0.0, 0.0))
    res = max(h, w)
    return _coverage(obj, res)[:h, :w]


def _soft_iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.minimum(a, b).sum() / max(np.maximum(a, b).sum(), 1e-9))


# Plausibility limits, relative to the world's ranges at the image's resolution.
_MIN_FIT = 0.85
_MIN_FIT_MARGIN = 0.10
_SIZE_SLACK = (0.6, 1.5)
_FG_THRESHOLD = 0.18  # colour distance from the background that counts as "object"
_MIN_BLOB_FRACTION = 0.25  # blobs smaller than this x the smallest object are noise


def measure(image: Any) -> ToyMeasurement:
    """Find the disk and the bar of a toy-world image and measure them.

    Args:
        image: a PIL image, an ``(H, W, 3)`` uint8 (or float [0, 1]) array, or
            a ``(3, H, W)`` / ``(1, 3, H, W)`` tensor in [-1, 1] (generator
            output).  Any resolution; the plausible size range scales with
            ``W / 64``.

    Returns:
        A :class:`ToyMeasurement`.  Centres are accurate to a few hundredths
        of a pixel on drawn images.  An object that is missing, does not look
        like a disk or a bar, or has an implausible size, is reported as
        None with a line in ``problems``; ``ok`` is then False.

    How: the background colour is the median of the border pixels; pixels
    far from it in colour form connected blobs; each blob's colour is the
    median of its interior, and each pixel's coverage is its colour's
    projection onto the background -> object colour line.  The coverage
    gives the centroid and area; the shape is whichever ideal shape of that
    area and centre overlaps the coverage best.
    """
    img = _as_float_image(image)
    h, w, _ = img.shape
    scale = w / _REF_RES
    border = np.concatenate([img[0], img[-1], img[1:-1, 0], img[1:-1, -1]], axis=0)
    bg = np.median(border, axis=0)
    diff = img - bg
    dist = np.sqrt((diff**2).sum(axis=2))
    fg = dist > _FG_THRESHOLD
    labels, n = _label(fg)
    min_area = min(math.pi * _DISK_RADIUS[0] ** 2, 4 * _BAR_HALF_LENGTH[0] ** 2 / BAR_ASPECT) * scale**2
    problems: list[str] = []
    blobs = []
    for i in range(1, n + 1):
        comp = labels == i
        if comp.sum() >= _MIN_BLOB_FRACTION * min_area:
            blobs.append(comp)
    blobs.sort(key=lambda m: -int(m.sum()))
    # Each blob owns the pixels within 2 px of it (edge pixels below threshold).
    regions = [_dilate(b, 2) for b in blobs]
    measured: list[ObjectMeasurement] = []
    for k, (comp, region) in enumerate(zip(blobs, regions)):
        others = np.zeros_like(region)
        for j, b in enumerate(blobs):
            if j != k:
                others |= _dilate(b, 1)
        region = region & ~others
        core = _erode(_erode(comp))
        if core.sum() < 4:
            core = comp
        color = np.median(img[core], axis=0)
        axis = color - bg
        norm2 = float((axis**2).sum())
        if norm2 < _FG_THRESHOLD**2:
            continue
        alpha = np.clip((diff @ axis) / norm2, 0.0, 1.0) * region
        area = float(alpha.sum())
        ys, xs = np.mgrid[0:h, 0:w]
        cx = float((alpha * xs).sum() / area)
        cy = float((alpha * ys).sum() / area)
        fits = {s: _soft_iou(alpha, _ideal(s, cx, cy, area, h, w)) for s in SHAPES}
        shape = max(SHAPES, key=lambda s: fits[s])
        other = "bar" if shape == "disk" else "disk"
        size = _size_from_area(shape, area)
        lo, hi = (_DISK_RADIUS if shape == "disk" else _BAR_HALF_LENGTH)
        size_ok = _SIZE_SLACK[0] * lo * scale <= size <= _SIZE_SLACK[1] * hi * scale
        fit_ok = fits[shape] >= _MIN_FIT and fits[shape] - fits[other] >= _MIN_FIT_MARGIN
        measured.append(
            ObjectMeasurement(
                shape=shape, center=(cx, cy), size=size, area=area,
                color=tuple(float(v) for v in color), fit=fits[shape], other_fit=fits[other],
                elongation=_elongation(alpha, cx, cy, area),
                plausible=bool(size_ok and fit_ok),
            )
        )
        if not fit_ok:
            problems.append(
                f"blob at ({cx:.1f}, {cy:.1f}) is neither a clear disk nor a clear bar "
                f"(fit {fits[shape]:.2f} {shape}, {fits[other]:.2f} {other})"
            )
        elif not size_ok:
            problems.append(f"{shape} at ({cx:.1f}, {cy:.1f}) has implausible size {size:.1f} px")
    found: dict[str, ObjectMeasurement | None] = {}
    for s in SHAPES:
        cands = [m for m in measured if m.shape == s and m.plausible]
        if not cands:
            problems.append(f"no plausible {s} found")
            found[s] = None
        else:
            if len(cands) > 1:
                problems.append(f"{len(cands)} {s}s found")
            found[s] = max(cands, key=lambda m: m.area)
    if len(measured) > 2:
        problems.append(f"{len(measured)} objects found, expected 2")
    ok = not problems
    return ToyMeasurement(
        ok=ok, disk=found["disk"], bar=found["bar"],
        background=tuple(float(v) for v in bg), problems=problems, objects=measured,
    )


# ----------------------------------------------------------------------------
# Data set writer


def _png_bytes(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def write_toy_dataset(
    out: str | os.PathLike, count: int, seed: int = 0, resolution: int = 64,
    start: int = 0, progress: bool = False,
) -> Path:
    """Write ``count`` toy images as a zip (``out`` ends in ``.zip``) or a folder.

    Files are ``00000.png``, ``00001.png``, ... plus ``dataset.json`` with
    ``resolution``, ``count``, ``seed`` and every image's scene geometry
    (``scenes``).  Image ``i`` is :func:`toy_image` ``(seed, start + i)``, so
    the output is deterministic by seed.  The zip is written to a temporary
    file and renamed into place, so a killed run leaves nothing half-written.
    """
    out = Path(out)
    if count < 1:
        raise ValueError("count must be >= 1")
    width = max(5, len(str(count - 1)))
    scenes = []
    meta: dict[str, Any] = {
        "resolution": int(resolution), "count": int(count), "seed": int(seed), "start": int(start),
        "generator": "dragkit.train.toy", "scenes": scenes,
    }

    def items():
        for i in range(count):
            arr, scene = toy_image(seed, start + i, resolution)
            scenes.append(scene.to_dict())
            if progress and (i + 1) % 1000 == 0:
                print(f"{i + 1}/{count}", file=sys.stderr)
            yield f"{i:0{width}d}.png", _png_bytes(arr)

    if out.suffix.lower() == ".zip":
        from ..utils import atomic_path  # lazily: the world itself needs only numpy

        with atomic_path(out) as tmp:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
                for name, data in items():
                    zf.writestr(name, data)
                zf.writestr("dataset.json", json.dumps(meta))
    else:
        out.mkdir(parents=True, exist_ok=True)
        for name, data in items():
            (out / name).write_bytes(data)
        (out / "dataset.json").write_text(json.dumps(meta))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dragkit.train.toy --out DIR|FILE.zip --count N --seed S``."""
    p = argparse.ArgumentParser(prog="python -m dragkit.train.toy", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="output .zip or folder")
    p.add_argument("--count", type=int, default=50000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resolution", type=int, default=64)
    args = p.parse_args(argv)
    write_toy_dataset(args.out, args.count, args.seed, args.resolution, progress=True)
    print(args.out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
