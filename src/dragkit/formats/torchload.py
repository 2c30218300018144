"""``torch.load`` of untrusted ``.pt`` files: only on a safe PyTorch, only weights.

``torch.load(weights_only=True)`` is the allow-list unpickler of PyTorch;
public advisories say it allowed code execution before 2.6
(CVE-2025-32434) and memory corruption before 2.10 (CVE-2026-24747).
:func:`load_weights` therefore refuses to run on older PyTorch, names any
global outside the allow-list *before* loading (PyTorch's own message
would suggest ``weights_only=False``, which is exactly what must not be
done with an untrusted file), and checks every tensor it returns against
its storage (:func:`~.arch.check_tensor_backing`).

``.pkl`` files never reach ``torch.load`` (see :mod:`.legacy_storage`).
"""
from __future__ import annotations

import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any, Iterable

import torch

from ..errors import CheckpointError
from .arch import check_tensor_backing

__all__ = ["SAFE_TORCH", "torch_is_safe", "require_safe_torch", "load_weights"]

#: The oldest PyTorch whose ``torch.load(weights_only=True)`` has no known advisory.
SAFE_TORCH = "2.10"
_MAX_ITEMS = 1_000_000


def torch_is_safe(version: str | None = None) -> bool:
    """Whether ``version`` (default: the running PyTorch) is at least :data:`SAFE_TORCH`."""
    from torch.torch_version import TorchVersion

    return TorchVersion(version or torch.__version__) >= SAFE_TORCH


def require_safe_torch(source: str) -> None:
    """Raise :class:`CheckpointError` when the running PyTorch is older than :data:`SAFE_TORCH`."""
    if not torch_is_safe():
        raise CheckpointError(
            f"{source}: refusing to read a .pt file with PyTorch {torch.__version__}: its torch.load has known "
            f"code-execution / memory-corruption advisories (CVE-2025-32434, CVE-2026-24747); "
            f"upgrade to torch>={SAFE_TORCH}"
        )



_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _loader_reason(text: str) -> str:
    """The one useful line of a weights-only refusal, without PyTorch's advice to turn the check off."""
    text = _ANSI.sub("", text)
    m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if m:
        return f"global '{m.group(1)}'"
    m = re.search(r"WeightsUnpickler error: ([^\n]+)", text)
    line = m.group(1) if m else (text.strip().splitlines() or ["no details"])[0]
    line = re.split(r"\. Please use|\. Re-running|weights_only", line)[0].strip()
    return line[:200] or "a construct the safe loader does not allow"


def load_weights(path: str | os.PathLike[str], allowed: Iterable[type] = (), what: str = ".pt checkpoints") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, refusing anything but data.

    Args:
        allowed: extra classes that only hold data (``argparse.Namespace``).
        what: how the refusal names the files (``'.pt checkpoints'``).

    Raises:
        CheckpointError: old PyTorch, a refused global (named, before loading),
            an unreadable file, or a tensor claiming more than its storage.
    """
    p = Path(path)
    source = str(p)
    require_safe_torch(source)
    allowed = tuple(allowed)
    try:
        f = open(p, "rb")
    except OSError as exc:
        raise CheckpointError(f"{source}: cannot read ({exc.strerror or exc})") from None
    with f:
        try:
            with torch.serialization.safe_globals(list(allowed)):
                unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(f)
        except Exception:  # not a zip checkpoint (legacy format, garbage): torch.load decides below
            unsafe = []
        if unsafe:
            raise CheckpointError(
                f"refusing to load global '{sorted(unsafe)[0]}' from {source} (only tensors are allowed in {what}; "
                "dragkit never runs code from a file)"
            )
        f.seek(0)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with torch.serialization.safe_globals(list(allowed)):
                    obj = torch.load(f, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            reason = _loader_reason(str(exc))
            if reason.startswith("global "):
                raise CheckpointError(f"refusing to load {reason} from {source} (only tensors are allowed in {what}; "
                                      "dragkit never runs code from a file)") from None
            raise CheckpointError(f"{source}: not a readable torch checkpoint (refused: {reason})") from None
        except Exception as exc:  # torch raises RuntimeError/EOFError/... for truncated zips
            text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise CheckpointError(
                f"{source}: not a readable torch checkpoint (truncated or corrupt: {type(exc).__name__}: {text})"
            ) from None
    _check_tensors(obj, source)
    return obj


def _check_tensors(obj: Any, source: str) -> None:
    """Every tensor in the loaded tree fits its storage (walk bounded, shared objects once)."""
    seen: set[int] = set()
    stack: list[tuple[Any, str, int]] = [(obj, "", 0)]
    while stack:
        o, where, depth = stack.pop()
        if isinstance(o, torch.Tensor):
            check_tensor_backing(o, where or "tensor", source)
            continue
        if id(o) in seen or depth > 64:
            if depth > 64:
                raise CheckpointError(f"{source}: checkpoint nests too deeply")
            continue
        seen.add(id(o))
        if len(seen) > _MAX_ITEMS:
            raise CheckpointError(f"{source}: checkpoint holds more than {_MAX_ITEMS:,} objects")
        if isinstance(o, dict):
            stack.extend((v, f"{where}.{k}" if where else str(k), depth + 1) for k, v in o.items())
        elif isinstance(o, (list, tuple)):
            stack.extend((v, f"{where}[{i}]", depth + 1) for i, v in enumerate(o))
        elif hasattr(o, "__dict__") and not isinstance(o, type):
            stack.extend((v, f"{where}.{k}", depth + 1) for k, v in vars(o).items())
