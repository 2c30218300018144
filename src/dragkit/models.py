"""Model registry: bundled names, the user cache, or a path.

Resolution order for :func:`load_model`:
1. an existing path of any supported format;
2. a bundled model ``dragkit/assets/NAME.safetensors`` (+ ``NAME.json``);
3. a cached model in ``$DRAGKIT_HOME`` (default ``~/.cache/dragkit``):
   ``NAME.safetensors`` (+ json), ``NAME.pkl`` or ``NAME.pt``.
Nothing is ever downloaded.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import ModelNotFoundError
from .formats import SUPPORTED, load_checkpoint
from .nets import Generator
from .threads import tune_threads

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
DEFAULT_MODEL = "toy"


def cache_dir() -> Path:
    """The user model cache, ``$DRAGKIT_HOME`` or ``~/.cache/dragkit``."""
    return Path(os.environ.get("DRAGKIT_HOME") or Path.home() / ".cache" / "dragkit")


@dataclass(frozen=True)
class ModelInfo:
    """One model the registry can load."""

    name: str
    source: str  # 'bundled' or 'cache'
    path: Path
    format: str
    size_bytes: int
    resolution: int | None  # image height H (None: not known without reading the file)
    width: int | None = None  # image width W: H, or H / 2 for a StyleGAN-Human model

    @property
    def size_text(self) -> str:
        """``'512'`` for a square image, ``'512x256'`` (H x W) otherwise, ``'?'`` when unknown."""
        if not self.resolution:
            return "?"
        return str(self.resolution) if self.width in (None, self.resolution) else f"{self.resolution}x{self.width}"


def _native_size(json_path: Path) -> tuple[int | None, int | None]:
    """``(H, W)`` from a native config (None, None when it cannot be read; the file is checked on load)."""
    try:
        with open(json_path, "rb") as f:
            raw = f.read(1 << 20)  # a config is about a kilobyte; never read a huge file to list it
        kwargs = json.loads(raw)["init_kwargs"]
        res = kwargs["img_resolution"]
        if not (isinstance(res, int) and not isinstance(res, bool) and 0 < res <= 1 << 16):
            return None, None
        syn = kwargs.get("synthesis_kwargs") or {}
        square = syn.get("square", True) if isinstance(syn, dict) else True
        return res, (res if square is not False else res // 2)
    except Exception:
        return None, None


def _scan(folder: Path, source: str) -> list[ModelInfo]:
    found: dict[str, ModelInfo] = {}
    if not folder.is_dir():
        return []
    for p in sorted(folder.iterdir()):
        if not p.is_file():
            continue
        suffix = p.suffix.lower()
        if suffix == ".json" or suffix not in SUPPORTED:
            continue
        name = p.stem
        if name.endswith(".disc"):  # discriminators stored beside generators
            continue
        fmt = SUPPORTED[suffix]
        size = p.stat().st_size
        res = width = None
        if fmt == "native":
            cfg = p.with_suffix(".json")
            if not cfg.is_file():
                continue
            size += cfg.stat().st_size
            res, width = _native_size(cfg)
        found.setdefault(name, ModelInfo(name, source, p, fmt, size, res, width))
    return list(found.values())


def list_models() -> list[ModelInfo]:
    """Bundled models first, then cached ones (a cached name never hides a bundled one)."""
    bundled = _scan(ASSETS_DIR, "bundled")
    names = {m.name for m in bundled}
    return bundled + [m for m in _scan(cache_dir(), "cache") if m.name not in names]


def default_model_name() -> str:
    """The app's default: ``faces128`` once bundled, else ``toy``."""
    names = {m.name for m in list_models()}
    return "faces128" if "faces128" in names else DEFAULT_MODEL


def resolve_model(name_or_path: str | os.PathLike[str]) -> Path:
    """Path of the checkpoint behind a name or path; ModelNotFoundError lists what exists."""
    p = Path(name_or_path)
    looks_like_path = p.suffix.lower() in SUPPORTED or os.sep in str(name_or_path) or p.exists()
    if p.exists():
        return p
    if p.suffix == "" and p.with_name(p.name + ".safetensors").exists():
        return p.with_name(p.name + ".safetensors")
    if not looks_like_path:
        for m in list_models():
            if m.name == str(name_or_path):
                return m.path
    available = ", ".join(m.name for m in list_models()) or "(none)"
    what = "no such file" if looks_like_path else "unknown model"
    raise ModelNotFoundError(f"{what} {str(name_or_path)!r}; available models: {available}")


def load_model(name_or_path: str | os.PathLike[str] = DEFAULT_MODEL, device: str | torch.device = "cpu") -> Generator:
    """Load a generator by registry name or path, in eval mode without gradients.

    Raises:
        ModelNotFoundError: unknown name / missing path (message lists models).
        CheckpointError: the file is corrupt, hostile or does not fit.
    """
    tune_threads()  # once: the CLI's thread settings for a shared machine (dragkit/threads.py)
    G = load_checkpoint(resolve_model(name_or_path))
    G.model_name = Path(str(name_or_path)).stem if Path(str(name_or_path)).suffix else str(name_or_path)
    return G.to(device)
