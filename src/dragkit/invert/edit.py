"""An inversion on disk: a session file and the files beside it.

``save_inversion(inv, "edit.dragkit.json", model="faces128")`` writes::

    edit.dragkit.json            the DragSession (drag/session.py's format, unchanged) on the W+ codes,
                                 plus an "inversion" block (ignored by DragSession.set_state)
    edit.latent.npy              the W+ codes (1, num_ws, w_dim) float32, for a spec's "latent"
    edit.photo.png               the photo as the model sees it (the aligned crop)
    edit.recon.png               the reconstruction
    edit.generator.safetensors   only when the inversion tuned a generator (PTI, or optimised noise
    edit.generator.json          maps): that generator, native format, float32 - it belongs to this edit

The session's ``model.name`` is then the tuned generator's file name
(relative to the session file), otherwise the model as given.  The
``inversion`` block records the base model, the generator file and its
SHA-256, the photo's description, the crop's matrix, the settings and the
measured PSNR/SSIM.  :func:`load_inversion` opens it again: it loads the
tuned generator from the session's own folder only (a plain file name,
never a path elsewhere), checks its SHA-256, and restores the session.

Everything is computed before anything is written; the files are written
under temporary names in the same folder and renamed into place only when
all are complete (the session last), so a failure leaves nothing new
behind and an older edit of the same name as it was.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DragkitError

__all__ = ["INVERSION_FORMAT", "EditFiles", "edit_files", "edit_paths", "save_inversion", "load_inversion",
           "read_inversion_block", "session_from_image"]

INVERSION_FORMAT = "dragkit-inversion"
INVERSION_VERSION = 1
_MAX_COMPANION = 64 * 2**20


def edit_paths(out: str | os.PathLike[str]) -> dict[str, Path]:
    """The files of an edit whose session is ``out`` (``X.dragkit.json`` or ``X.json``)."""
    p = Path(out)
    name = p.name
    if name.endswith(".dragkit.json"):
        stem = name[: -len(".dragkit.json")]
    elif name.endswith(".json"):
        stem = name[: -len(".json")]
    else:
        raise DragkitError(f"--out {out}: the session file is JSON; name it NAME.dragkit.json")
    if not stem:
        raise DragkitError(f"--out {out}: needs a name before .dragkit.json")
    d = p.parent
    return {
        "session": p,
        "latent": d / f"{stem}.latent.npy",
        "photo": d / f"{stem}.photo.png",
        "reconstruction": d / f"{stem}.recon.png",
        "generator": d / f"{stem}.generator.safetensors",
        "generator_config": d / f"{stem}.generator.json",
    }


def _png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG")
    return buf.getvalue()


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class EditFiles:
    """What an edit of a photo writes beside its session, held by the :class:`DragSession` that edits it.

    A session made by :meth:`DragSession.from_image` (or reopened by
    :func:`load_inversion`) holds one in ``session.edit_files``; its
    :meth:`DragSession.save` then calls :meth:`write`, so the tuned
    generator, the pivot and the two images travel with every save of the
    session (its drags, points and undo history are the session's own).

    Attributes:
        block: the ``inversion`` block without the file fields (they are filled in by :meth:`write`).
        blobs: encoded ``latent`` (the pivot, .npy), ``photo`` and ``reconstruction`` (.png); None = not kept.
        tuned: the session's generator belongs to the edit and is written beside the session.
    """

    def __init__(self, block: dict[str, Any], blobs: dict[str, bytes | None], tuned: bool) -> None:
        self.block = block
        self.blobs = blobs
        self.tuned = bool(tuned)

    def write(self, session: Any, out: str | os.PathLike[str]) -> dict[str, Path]:
        """Write ``session`` (its current state) as ``out`` and the edit's files beside it, all or nothing.

        Returns:
            ``{'session': ..., 'latent': ..., 'photo': ..., 'reconstruction': ..., ['generator', 'generator_config']}``
            (the files written).

        Raises:
            DragkitError: bad ``out`` name, or a file cannot be written (nothing of this call is left then,
                and an older edit of the same name is as it was).
        """
        from .. import formats

        session.end_drag()
        paths = edit_paths(out)
        for key in ("session", "latent", "photo", "reconstruction", "generator"):
            if paths[key].is_dir():
                raise DragkitError(f"{paths[key]} is a folder")
        blobs = {k: v for k, v in self.blobs.items() if v is not None}
        gen_ref = paths["generator"].name if self.tuned else None
        G = session.G
        old_name = getattr(G, "model_name", None)
        try:
            G.model_name = gen_ref or str(self.block["base_model"])
            state = session.get_state()
        finally:
            G.model_name = old_name
        block = dict(self.block)
        block.update({"generator": gen_ref, "generator_sha256": None,
                      **{k: (paths[k].name if k in blobs else None) for k in ("latent", "photo", "reconstruction")}})
        order = [k for k in ("latent", "photo", "reconstruction") if k in blobs]
        order += (["generator", "generator_config"] if gen_ref else []) + ["session"]
        # Everything goes to temporary names first and is renamed into place only when all of it is
        # written (the session last), so a failure leaves an older edit of the same name as it was.
        folder = paths["session"].parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tmp_stem = Path(tempfile.mkdtemp(prefix=".dragkit-edit-", dir=folder))
        except OSError as exc:
            raise DragkitError(f"cannot write the edit {paths['session']}: {exc.strerror or exc}") from None
        temps: dict[str, Path] = {}
        try:
            for key, data in blobs.items():
                temps[key] = tmp_stem / paths[key].name
                temps[key].write_bytes(data)
            if gen_ref:
                meta = dict(getattr(G, "dragkit_metadata", {}) or {})
                meta["edit"] = {"tuned_for": paths["session"].name, "base_model": str(self.block["base_model"]),
                                "how": "pivotal tuning" if (self.block.get("settings") or {}).get("pti")
                                else "projection with optimised noise maps"}
                w, c = formats.save_native(G, tmp_stem / "generator", metadata=meta)  # float32: renders as measured
                temps["generator"], temps["generator_config"] = w, c
                block["generator_sha256"] = _sha256(w.read_bytes())
            state["inversion"] = block
            temps["session"] = tmp_stem / paths["session"].name
            temps["session"].write_bytes(json.dumps(state, separators=(",", ":")).encode())
            mode = 0o666 & ~_umask()
            for key in order:
                os.chmod(temps[key], mode)
                os.replace(temps[key], paths[key])
        except OSError as exc:
            raise DragkitError(f"cannot write the edit {paths['session']}: {exc.strerror or exc}") from None
        finally:
            shutil.rmtree(tmp_stem, ignore_errors=True)
        session.inversion = block
        return {k: paths[k] for k in order}


def edit_files(inv: Any, model: str) -> EditFiles:
    """The :class:`EditFiles` of an :class:`~dragkit.invert.pipeline.Inversion` of base model ``model``."""
    al = inv.alignment
    ph = inv.photo
    block = {
        "format": INVERSION_FORMAT,
        "version": INVERSION_VERSION,
        "base_model": str(model),
        "generator": None, "generator_sha256": None, "latent": None, "photo": None, "reconstruction": None,
        "source": {"file": Path(ph.source).name if ph.source and not ph.source.startswith("<") else ph.source,
                   "format": ph.format, "mode": ph.mode, "stored_size": list(ph.stored_size),
                   "exif_rotated": ph.exif_rotated, "grayscale": ph.grayscale},
        "alignment": al.to_json() if al is not None else None,
        "psnr": inv.psnr, "ssim": inv.ssim,
        "psnr_projection": inv.psnr_projection, "ssim_projection": inv.ssim_projection,
        "pti_locality_psnr": inv.pti_result.locality_psnr if inv.pti_result is not None else None,
        "settings": inv.config.to_dict(),
        "seconds": inv.seconds,
        "warnings": list(inv.warnings),
    }
    blobs: dict[str, bytes | None] = {
        "latent": _npy(inv.ws.detach().cpu().numpy()),
        "photo": _png(inv.target),
        "reconstruction": _png(inv.reconstruction),
    }
    return EditFiles(block, blobs, inv.tuned)


def save_inversion(inv: Any, out: str | os.PathLike[str], *, model: str, options: Any | None = None) -> dict[str, Path]:
    """Write an :class:`~dragkit.invert.pipeline.Inversion` as a new session and its companion files.

    Args:
        inv: the inversion.
        out: the session file, ``NAME.dragkit.json``.
        model: the base model as the user named it (registry name or path), recorded in the session.
        options: :class:`~dragkit.drag.session.DragOptions` for the session (default settings when None).

    Returns:
        ``{'session': ..., 'latent': ..., 'photo': ..., 'reconstruction': ..., ['generator', 'generator_config']}``.

    Raises:
        DragkitError: bad ``out`` name, or a file cannot be written (nothing of this call is left then).
    """
    from ..drag.session import DragSession

    s = DragSession.from_latent(inv.G, inv.ws, options=options)
    s.edit_files = edit_files(inv, model)
    return s.edit_files.write(s, out)


def session_from_image(
    G: Any,
    photo: Any,
    config: Any | None = None,
    *,
    D: Any = "auto",
    model: str | None = None,
    options: Any | None = None,
    progress: Any | None = None,
    cancel: Any | None = None,
):
    """What :meth:`DragSession.from_image` does: invert ``photo`` into ``G`` and open a session on it.

    The session's generator is ``G`` itself, or the edit's tuned copy (PTI,
    optimised noise maps); ``session.inversion_result`` is the
    :class:`~dragkit.invert.pipeline.Inversion` (PSNR, target, reconstruction,
    warnings) and ``session.save(path)`` writes the edit's files with it.

    Raises:
        PhotoError: unreadable or unusable photo; with alignment, no usable face (``NoFaceError``).
        InversionCancelled: ``cancel()`` returned True.
        DragkitError: bad settings, or dlib missing when aligning.
    """
    from ..drag.session import DragSession
    from .pipeline import discriminator_for, invert_photo

    base = model or getattr(G, "model_name", None) or "model"
    if isinstance(D, str) and D == "auto":
        D = discriminator_for(base) if model or getattr(G, "model_name", None) else None
        if D is not None:
            D = D.to(G.device)
    inv = invert_photo(G, photo, config, D=D, progress=progress, cancel=cancel)
    s = DragSession.from_latent(inv.G, inv.ws, options=options)
    s.edit_files = edit_files(inv, base)
    s.inversion = dict(s.edit_files.block)
    s.inversion_result = inv
    return s


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def read_inversion_block(state: Any, source: str = "session") -> dict[str, Any] | None:
    """The ``inversion`` block of a session state, validated (None when the session is not an inversion)."""
    if not isinstance(state, dict):
        raise DragkitError(f"{source}: not a dragkit session file")
    block = state.get("inversion")
    if block is None:
        return None
    if not isinstance(block, dict) or block.get("format") != INVERSION_FORMAT:
        raise DragkitError(f"{source}: malformed inversion block")
    if int(block.get("version", 0)) > INVERSION_VERSION:
        raise DragkitError(f"{source}: inversion version {block.get('version')} is newer than this dragkit supports")
    gen = block.get("generator")
    if gen is not None:
        if not isinstance(gen, str) or Path(gen).name != gen or gen in (".", "..") or not gen.endswith(".safetensors"):
            raise DragkitError(f"{source}: the tuned generator must be a .safetensors file beside the session, "
                               f"got {gen!r}")
    return block


def load_inversion(path: str | os.PathLike[str], device: str = "cpu", model: str | None = None):
    """Open a session written by :func:`save_inversion` (or any session file) with the right generator.

    The tuned generator, when there is one, comes from the session's own
    folder and must match the SHA-256 recorded at save time; otherwise the
    model is ``model`` or the one the session names.

    Returns:
        ``(session, block)``: the :class:`~dragkit.drag.session.DragSession` and the inversion block (or None).

    Raises:
        DragkitError: not a session, a missing or altered generator file, or a model that does not fit.
    """
    from ..drag.session import DragSession
    from ..models import load_model

    p = Path(path)
    try:
        state = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DragkitError(f"{p}: no such session file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DragkitError(f"{p}: not a dragkit session file ({exc})") from None
    block = read_inversion_block(state, str(p))
    if block is not None and block.get("generator"):
        gpath = p.parent / block["generator"]
        try:
            data = gpath.read_bytes()
        except OSError:
            raise DragkitError(f"{p}: its tuned generator {gpath} is missing") from None
        if block.get("generator_sha256") and _sha256(data) != block["generator_sha256"]:
            raise DragkitError(f"{gpath}: does not match the SHA-256 recorded in {p.name} (replaced or damaged)")
        G = load_model(gpath, device=device)
    else:
        name = model or (state.get("model") or {}).get("name") or (block or {}).get("base_model")
        if not name:
            raise DragkitError(f"{p}: the session names no model; pass one")
        G = load_model(name, device=device)
    s = DragSession.load(p, G)
    if block is not None:
        blobs: dict[str, bytes | None] = {}
        for key in ("latent", "photo", "reconstruction"):
            name = block.get(key)
            f = p.parent / name if isinstance(name, str) and Path(name).name == name else None
            try:  # our own small files (copied as bytes, never decoded here); a missing one is not kept
                blobs[key] = f.read_bytes() if f is not None and f.stat().st_size <= _MAX_COMPANION else None
            except OSError:
                blobs[key] = None
        keep = {k: v for k, v in block.items() if k not in ("generator", "generator_sha256")}
        s.edit_files = EditFiles(keep, blobs, tuned=bool(block.get("generator")))
    return s, block
