"""Training data: image zips/folders, and the procedural toy world.

Both sources hand the trainer uint8 batches ``(N, 3, R, R)`` chosen by the
iteration number and the run seed alone, so a resumed run sees exactly the
images an uninterrupted run would have seen.
"""
from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
import numpy as np
import torch

from ..errors import DragkitError

__all__ = ["ImageDataset", "ToyWorldSource", "open_source", "parse_range", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")


def parse_range(spec: str | None) -> tuple[int, int] | None:
    """``'0:19000'`` -> ``(0, 19000)`` (start inclusive, stop exclusive); None stays None.

    Either end may be empty (``':1000'``, ``'500:'``); a missing stop is
    returned as -1 (= to the end).
    """
    if spec is None or spec == "":
        return None
    parts = spec.split(":")
    if len(parts) != 2:
        raise DragkitError(f"--data-range must look like START:STOP (e.g. 0:19000), got {spec!r}")
    try:
        start = int(parts[0]) if parts[0] else 0
        stop = int(parts[1]) if parts[1] else -1
    except ValueError:
        raise DragkitError(f"--data-range must look like START:STOP (e.g. 0:19000), got {spec!r}") from None
    if start < 0 or (stop != -1 and stop <= start):
        raise DragkitError(f"--data-range {spec!r} is empty or negative")
    return start, stop


class ImageDataset:
    """A zip or folder of PNG / JPEG / WebP images, all square and the same size.

    Images are the files with an image extension, in sorted order of their
    path inside the zip or folder (``dataset.json`` and other files are
    ignored); ``data_range=(start, stop)`` keeps positions ``start..stop-1``
    of that order (for CelebA ``00000.webp``.. the position is the number).

    Every image's header is read when the data set is opened, so a file
    that is not an image at all fails at once; one that is damaged further
    in fails when it is first decoded.  Either way the error is a
    :class:`~dragkit.errors.DragkitError` naming the file.

    Args:
        path: ``.zip`` file or folder.
        data_range: ``(start, stop)``; ``stop = -1`` means to the end.
        resolution: expected resolution; default: that of the first image.
    """

    def __init__(self, path: str | os.PathLike, data_range: tuple[int, int] | None = None,
                 resolution: int | None = None, check_headers: bool = True) -> None:
        self.path = Path(path)
        self._zip: zipfile.ZipFile | None = None
        if self.path.is_dir():
            names = sorted(
                str(p.relative_to(self.path)).replace(os.sep, "/")
                for p in self.path.rglob("*")
                if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            )
        elif self.path.is_file():
            try:
                self._zip = zipfile.ZipFile(self.path)
            except (zipfile.BadZipFile, OSError) as exc:
                raise DragkitError(f"{self.path}: not a readable zip file ({exc})") from None
            names = sorted(
                n for n in self._zip.namelist()
                if not n.endswith("/") and os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS
            )
        else:
            raise DragkitError(f"training data not found: {self.path}")
        total = len(names)
        if data_range is not None:
            start, stop = data_range
            stop = total if stop == -1 else stop
            if stop > total:
                raise DragkitError(f"{self.path}: --data-range {start}:{stop} exceeds the {total} images")
            names = names[start:stop]
        if not names:
            raise DragkitError(f"{self.path}: no PNG/JPEG/WebP images found")
        self.names: list[str] = names
        if check_headers:
            self._check_headers()
        if resolution is None:
            first = self._open(0)
            resolution = first.size[0]
        self.resolution = int(resolution)
        if self.resolution < 4 or self.resolution & (self.resolution - 1):
            raise DragkitError(f"{self.path}: image resolution must be a power of two, got {self.resolution}")

    def __len__(self) -> int:
        return len(self.names)

    def _read(self, i: int) -> bytes:
        name = self.names[i]
        try:
            if self._zip is not None:
                return self._zip.read(name)
            return (self.path / name).read_bytes()
        except (OSError, zipfile.BadZipFile, KeyError) as exc:
            raise DragkitError(f"{self._where(i)}: cannot read ({exc})") from None

    def _where(self, i: int) -> str:
        return f"{self.path}:{self.names[i]}" if self._zip is not None else str(self.path / self.names[i])

    def _open(self, i: int):
        from PIL import Image, UnidentifiedImageError

        try:
            return Image.open(io.BytesIO(self._read(i)))
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise DragkitError(f"corrupt image {self._where(i)}: {exc}") from None

    def _check_headers(self) -> None:
        size = None
        for i in range(len(self.names)):
            img = self._open(i)
            if img.size[0] != img.size[1]:
                raise DragkitError(f"image {self._where(i)} is {img.size[0]}x{img.size[1]}; training images must be square")
            if size is None:
                size = img.size
            elif img.size != size:
                raise DragkitError(
                    f"image {self._where(i)} is {img.size[0]}x{img.size[1]}, but {self._where(0)} is "
                    f"{size[0]}x{size[1]}; all training images must have the same size"
                )

    def load(self, i: int) -> np.ndarray:
        """Image ``i`` as ``(R, R, 3)`` uint8 RGB.  Raises DragkitError naming a bad file.

        Decoded through :func:`dragkit.images.read_image`, which checks the
        size from the header first (a decompression bomb costs nothing).
        """
        from ..images import read_image

        R = self.resolution
        img = read_image(self._read(i), what=f"image {self._where(i)}", size=(R, R))
        try:
            img = img.convert("RGB")
            arr = np.asarray(img, dtype=np.uint8)
        except (OSError, ValueError, SyntaxError) as exc:
            raise DragkitError(f"corrupt image {self._where(i)}: {exc}") from None
        if arr.shape != (self.resolution, self.resolution, 3):
            raise DragkitError(
                f"image {self._where(i)} is {arr.shape[1]}x{arr.shape[0]}, expected "
                f"{self.resolution}x{self.resolution}"
            )
        return arr

    def batch(self, iteration: int, batch_size: int, seed: int, xflip: bool,
              part: slice | None = None) -> torch.Tensor:
        """The real batch of ``iteration``: ``(N, 3, R, R)`` uint8, a function of (seed, iteration).

        ``part``: only these positions of the batch (one process's share of a
        distributed run's global batch); the others are not decoded.
        """
        rng = np.random.default_rng([int(seed), 0x5EED, int(iteration)])
        idx = rng.integers(0, len(self), size=batch_size)
        flips = rng.random(batch_size) < 0.5 if xflip else np.zeros(batch_size, dtype=bool)
        part = part or slice(None)
        arrs = []
        for i, f in zip(idx[part], flips[part]):
            a = self.load(int(i))
            arrs.append(a[:, ::-1] if f else a)
        return torch.from_numpy(np.ascontiguousarray(np.stack(arrs).transpose(0, 3, 1, 2)))

    def grid(self, count: int) -> torch.Tensor:
        """The first ``count`` images (for the reals grid): ``(N, 3, R, R)`` uint8."""
        arrs = [self.load(i) for i in range(min(count, len(self)))]
        return torch.from_numpy(np.stack(arrs).transpose(0, 3, 1, 2).copy())

    def describe(self) -> str:
        return f"{self.path} ({len(self)} images, {self.resolution} px)"


class ToyWorldSource:
    """Endless procedural toy-world images (:mod:`dragkit.train.toy`), drawn on the fly.

    Iteration ``k`` of a run uses images ``k * N .. k * N + N - 1`` of the
    toy data set ``seed``: every training image is new, and a run is
    reproducible.  ``write_toy_dataset(..., seed)`` writes the same images.
    """

    def __init__(self, seed: int = 0, resolution: int = 64) -> None:
        if resolution < 16 or resolution & (resolution - 1):
            raise DragkitError(f"toy world resolution must be a power of two >= 16, got {resolution}")
        self.seed = int(seed)
        self.resolution = int(resolution)

    def __len__(self) -> int:  # unbounded; a large number for display
        return 2**31

    def batch(self, iteration: int, batch_size: int, seed: int, xflip: bool,
              part: slice | None = None) -> torch.Tensor:
        from .toy import toy_image

        base = int(iteration) * batch_size
        arrs = [toy_image(self.seed, base + j, self.resolution)[0] for j in range(batch_size)[part or slice(None)]]
        return torch.from_numpy(np.stack(arrs).transpose(0, 3, 1, 2).copy())

    def grid(self, count: int) -> torch.Tensor:
        from .toy import toy_image

        arrs = [toy_image(self.seed + 1_000_000, j, self.resolution)[0] for j in range(count)]
        return torch.from_numpy(np.stack(arrs).transpose(0, 3, 1, 2).copy())

    def describe(self) -> str:
        return f"procedural toy world (seed {self.seed}, {self.resolution} px, drawn on the fly)"


def open_source(spec: str, data_range: tuple[int, int] | None = None,
                resolution: int | None = None) -> ImageDataset | ToyWorldSource:
    """``'toy'`` / ``'toy:SEED'`` -> :class:`ToyWorldSource`; a path -> :class:`ImageDataset`."""
    if spec == "toy" or spec.startswith("toy:"):
        seed = 0
        if spec.startswith("toy:"):
            try:
                seed = int(spec[4:])
            except ValueError:
                raise DragkitError(f"--data toy:SEED needs an integer seed, got {spec!r}") from None
        if data_range is not None:
            raise DragkitError("--data-range applies to image data sets, not to the procedural toy world")
        return ToyWorldSource(seed, resolution or 64)
    ds = ImageDataset(spec, data_range=data_range)
    if resolution is not None and resolution != ds.resolution:
        raise DragkitError(f"{spec}: images are {ds.resolution} px but --resolution is {resolution}")
    return ds


def to_float(images: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """uint8 ``(N, 3, R, R)`` -> float32 in [-1, 1] on ``device``."""
    return images.to(device, non_blocking=True).to(torch.float32) / 127.5 - 1.0


def save_grid(images: torch.Tensor, path: str | os.PathLike, cols: int | None = None) -> None:
    """Save ``(N, 3, R, R)`` images (uint8, or float in [-1, 1]) as one PNG grid, atomically."""
    from PIL import Image

    from .checkpoint import atomic_write_bytes

    if images.dtype != torch.uint8:
        images = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    n, c, h, w = images.shape
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    canvas = np.zeros((rows * h, cols * w, c), dtype=np.uint8)
    arr = images.cpu().numpy().transpose(0, 2, 3, 1)
    for i in range(n):
        r, q = divmod(i, cols)
        canvas[r * h:(r + 1) * h, q * w:(q + 1) * w] = arr[i]
    buf = io.BytesIO()
    Image.fromarray(canvas.squeeze(-1) if c == 1 else canvas).save(buf, format="PNG")
    atomic_write_bytes(Path(path), buf.getvalue())
