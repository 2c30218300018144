"""Tabs' edit sessions: undo/redo history and atomic persistence on disk.

A :class:`Tab` is what one browser tab edits: the current :class:`Edit`, its
undo and redo stacks (snapshots taken *before* each point, mask, drag, seed
or open action), and the user's options.  :class:`SessionStore` writes a
tab to ``ROOT/SID/session.json`` after every completed action, through a
temporary file and ``os.replace``, so a crash or restart leaves either the
old or the new file, never a torn one.  Large values of a snapshot (the
latent) are stored once under ``ROOT/SID/blobs/SHA.json`` and referenced by
hash, so a history of a hundred point clicks costs one latent on disk.

The folders are private (``0700``, files ``0600``: other local users cannot
read a tab by its id), and files are read back only through the schema of
:mod:`.schema` (sizes capped, blob ids in the store's own format), so a
tampered folder can neither point the server at another file nor feed it
values the engine would not accept.  The store holds at most
``max_saved`` tabs and prunes by age whenever a tab is created, not only
at start-up.

Tabs are mutated only on the compute thread (see :mod:`.compute`).
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DragkitError, SpecError
from ..utils import atomic_write_bytes
from .engine import Edit, warm_up
from .schema import APP_FORMAT, APP_VERSION, blob_id, parse_app_session

log = logging.getLogger("dragkit.server")

SID_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
FORMAT = APP_FORMAT
VERSION = APP_VERSION
_BLOB_MIN_CHARS = 2048
#: Largest ``session.json`` / blob file read back, bytes.
MAX_FILE_BYTES = 64 * 1024 * 1024
_DIR_MODE = 0o700
_FILE_MODE = 0o600


def new_sid() -> str:
    return secrets.token_urlsafe(18)


def valid_sid(sid: Any) -> bool:
    return isinstance(sid, str) and bool(SID_RE.match(sid))


class ModelCache:
    """Generators by name, loaded once and shared read-only by all tabs.

    ``allowed(name)`` says which names may be loaded at all: names come from
    browsers and saved files, and must never be a path.
    """

    def __init__(self, max_models: int = 3, allowed: Any = None, loader: Any = None) -> None:
        self._models: OrderedDict[str, Any] = OrderedDict()
        self._max = max_models
        self._lock = threading.Lock()
        self._allowed = allowed
        self._loader = loader  # name -> generator, or None for the registry's load_model (photos.py)

    def get(self, name: str) -> Any:
        from ..models import load_model

        if self._allowed is not None and not (isinstance(name, str) and self._allowed(name)):
            raise DragkitError(f"unknown model {str(name)[:60]!r}")
        with self._lock:
            if name in self._models:
                self._models.move_to_end(name)
                return self._models[name]
        G = (self._loader(name) if self._loader is not None else None) or load_model(name)
        self.add(name, G, warm=True)
        return G

    def add(self, name: str, G: Any, warm: bool = False) -> None:
        """Keep generator ``G`` under ``name`` (frozen; an edit's own tuned copy, or a loaded model)."""
        for p in G.parameters():
            p.requires_grad_(False)
        if warm:
            warm_up(G)
        with self._lock:
            self._models[name] = G
            self._models.move_to_end(name)
            while len(self._models) > self._max:
                self._models.popitem(last=False)


class Tab:
    """One tab's edit, history and run state."""

    def __init__(self, sid: str, edit: Edit | None, max_steps: int, history_limit: int) -> None:
        self.sid = sid
        self.edit = edit
        self.undo_stack: list[dict[str, Any]] = []
        self.redo_stack: list[dict[str, Any]] = []
        self.max_steps = int(max_steps)
        self.history_limit = history_limit
        self.options: dict[str, Any] = edit.options() if edit else {}
        self.running = False
        self.inverting: Any = None  # a photo's inversion in progress (photos.InversionRun)
        self.stop = threading.Event()
        self.image_png: bytes | None = None
        self.image_rev = 0
        self.video_frames: list[np.ndarray] = []
        self.last_steps = 0
        self.credits = 2
        self.credit_lock = threading.Lock()
        self.conn: Any = None
        self.last_used = time.monotonic()

    # -- image cache -----------------------------------------------------
    def refresh_image(self) -> None:
        """Re-render the cached PNG after the latent changed (compute thread)."""
        self.image_png = self.edit.image_png() if self.edit else None
        self.image_rev += 1

    # -- history -----------------------------------------------------------
    def push_undo(self, snap: dict[str, Any]) -> None:
        self.undo_stack.append(snap)
        del self.undo_stack[: -self.history_limit]
        self.redo_stack.clear()

    def set_edit(self, edit: Edit, keep_options: bool = True) -> None:
        """Replace the edit (new seed or model: keeping the user's options; an opened file:
        ``keep_options=False``, the file's options)."""
        self.edit = edit
        if keep_options and self.options:
            _apply_options(edit, self.options)
        self.options = edit.options()

    def restore(self, snap: dict[str, Any], models: ModelCache) -> None:
        if self.edit is not None and snap["model"] == self.edit.model:
            self.edit.restore(snap)
            _apply_options(self.edit, self.options)
        else:
            self.set_edit(Edit.from_snapshot(models.get(snap["model"]), snap))

    def undo(self, models: ModelCache) -> None:
        """Back to the snapshot before the last action (the current one goes on the redo stack)."""
        self._travel(self.undo_stack, self.redo_stack, models, "nothing to undo")

    def redo(self, models: ModelCache) -> None:
        self._travel(self.redo_stack, self.undo_stack, models, "nothing to redo")

    def _travel(self, src: list[dict[str, Any]], dst: list[dict[str, Any]], models: ModelCache, empty: str) -> None:
        if not src:
            raise SpecError(empty)
        current = self.edit.snapshot()
        self.restore(src[-1], models)  # raises (nothing changed) when its generator cannot be loaded
        src.pop()
        dst.append(current)

    def copy_as(self, sid: str, models: ModelCache) -> "Tab":
        """An independent copy under a new id (a duplicated browser tab)."""
        edit = Edit.from_snapshot(models.get(self.edit.model), self.edit.snapshot()) if self.edit else None
        tab = Tab(sid, edit, self.max_steps, self.history_limit)
        tab.options = dict(self.options)
        if edit:
            _apply_options(edit, tab.options)
        tab.undo_stack = copy.deepcopy(self.undo_stack)
        tab.redo_stack = copy.deepcopy(self.redo_stack)
        return tab


def _apply_options(edit: Edit, options: dict[str, Any]) -> None:
    opts = dict(options)
    try:
        if "layers" in opts:  # a model with fewer codes than the last one
            opts["layers"] = min(int(opts["layers"]), edit.num_ws)
        edit.set_options(opts)
    except (DragkitError, TypeError, ValueError) as exc:
        log.warning("dropping options that do not fit %s: %s", edit.model, exc)


def _read_capped(path: Path) -> bytes:
    with open(path, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise DragkitError("saved session is damaged (a file is too large)")
    return data


class SessionStore:
    """Tabs on disk: ``ROOT/SID/session.json`` + ``ROOT/SID/blobs/*.json`` (private to this user).

    Args:
        root: the sessions folder (created ``0700``; made ``0700`` if it exists).
        max_saved: most tabs kept on disk; creating one beyond it deletes the
            least recently saved (never one in ``keep``).
        keep_days: tabs not saved for this long are deleted (0: never).
    """

    def __init__(self, root: str | os.PathLike[str], max_saved: int = 256, keep_days: float = 30) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True, mode=_DIR_MODE)
        _private(self.root, _DIR_MODE)
        self.max_saved = int(max_saved)
        self.keep_days = float(keep_days)

    def _dir(self, sid: str) -> Path:
        if not valid_sid(sid):
            raise SpecError("malformed session id")
        return self.root / sid

    def exists(self, sid: str) -> bool:
        return valid_sid(sid) and (self.root / sid / "session.json").is_file()

    # -- writing -------------------------------------------------------------
    def save(self, tab: Tab) -> None:
        """Write ``tab`` atomically (compute thread)."""
        if tab.edit is None:
            return
        d = self._dir(tab.sid)
        blobs = d / "blobs"
        for folder in (d, blobs):
            folder.mkdir(exist_ok=True, mode=_DIR_MODE)
            _private(folder, _DIR_MODE)
        used: set[str] = set()

        def pack(snap: dict[str, Any]) -> dict[str, Any]:
            engine = {}
            for key, value in snap["engine"].items():
                text = json.dumps(value, separators=(",", ":"))
                if len(text) >= _BLOB_MIN_CHARS:
                    digest = hashlib.sha256(text.encode()).hexdigest()[:40]
                    if digest not in used and not (blobs / f"{digest}.json").exists():
                        atomic_write_bytes(blobs / f"{digest}.json", text.encode(), mode=_FILE_MODE)
                    used.add(digest)
                    engine[key] = {"$blob": digest}
                else:
                    engine[key] = value
            return {**snap, "engine": engine}

        doc = {
            "format": FORMAT,
            "version": VERSION,
            "sid": tab.sid,
            "saved_at": time.time(),
            "options": tab.options,
            "max_steps": tab.max_steps,
            "current": pack(tab.edit.snapshot()),
            "undo": [pack(s) for s in tab.undo_stack],
            "redo": [pack(s) for s in tab.redo_stack],
        }
        atomic_write_bytes(d / "session.json", json.dumps(doc, separators=(",", ":")).encode(), mode=_FILE_MODE)
        for f in blobs.glob("*.json"):  # drop what history no longer references
            if f.stem not in used:
                try:
                    f.unlink()
                except OSError:
                    pass

    # -- reading -------------------------------------------------------------
    def load(self, sid: str, models: ModelCache, history_limit: int) -> Tab:
        """Read a tab written by :meth:`save` (compute thread).

        Raises:
            DragkitError: the files are missing, damaged or do not fit; the
                message names neither a path nor the file's content.
        """
        d = self._dir(sid)
        try:
            doc = parse_app_session(json.loads(_read_capped(d / "session.json").decode("utf-8")), sid)
            blobs: dict[str, Any] = {}

            def unpack(snap: Any) -> dict[str, Any]:
                engine = {}
                for key, value in snap.engine.items():
                    ref = blob_id(value)
                    if ref is not None:
                        if ref not in blobs:  # the id is 40 hex digits: always inside blobs/
                            blobs[ref] = json.loads(_read_capped(d / "blobs" / f"{ref}.json").decode("utf-8"))
                        value = blobs[ref]
                    engine[key] = value
                return {"model": snap.model, "seed": snap.seed, "psi": snap.psi, "engine": engine}

            current = unpack(doc.current)
            edit = Edit.from_snapshot(models.get(current["model"]), current)
            tab = Tab(sid, edit, doc.max_steps, history_limit)
            tab.options = dict(doc.options)
            _apply_options(edit, tab.options)
            tab.options = edit.options()
            tab.undo_stack = [unpack(s) for s in doc.undo[-history_limit:]]
            tab.redo_stack = [unpack(s) for s in doc.redo[-history_limit:]]
        except DragkitError as exc:
            log.warning("saved session %s could not be reopened: %s", sid, exc)
            raise DragkitError(f"saved session {sid} could not be reopened ({exc})") from None
        except (OSError, ValueError, RecursionError) as exc:  # missing/unreadable file, bad JSON
            log.warning("saved session %s could not be reopened: %s", sid, type(exc).__name__)
            raise DragkitError(f"saved session {sid} could not be reopened (damaged or unreadable files)") from None
        return tab

    def count(self) -> int:
        """Entries in the sessions folder (an upper bound of the saved tabs; cheap)."""
        try:
            return sum(1 for _ in os.scandir(self.root))
        except OSError:
            return 0

    def prune(self, max_age_days: float | None = None, keep: set[str] | frozenset[str] = frozenset()) -> int:
        """Delete tabs not saved for ``max_age_days`` (default: ``keep_days``; 0 keeps
        all), then the least recently saved beyond ``max_saved``; never one in
        ``keep``.  Returns how many were deleted."""
        days = self.keep_days if max_age_days is None else max_age_days
        cutoff = time.time() - days * 86400 if days > 0 else None
        saved: list[tuple[float, Path]] = []
        n = 0
        for d in self.root.iterdir():
            f = d / "session.json"
            try:
                if not (d.is_dir() and not d.is_symlink() and valid_sid(d.name) and f.is_file()):
                    continue
                mtime = f.stat().st_mtime
            except OSError:
                continue
            if d.name in keep:
                continue
            if cutoff is not None and mtime < cutoff:
                n += self._remove(d)
            else:
                saved.append((mtime, d))
        saved.sort()
        for _, d in saved[: max(0, len(saved) - self.max_saved)]:
            n += self._remove(d)
        return n

    @staticmethod
    def _remove(d: Path) -> int:
        try:
            shutil.rmtree(d)
            return 1
        except OSError:
            return 0


def _private(path: Path, mode: int) -> None:
    """Make a folder of ours private (older versions created them world-readable)."""
    try:
        st = path.stat()
        if st.st_mode & 0o777 != mode and st.st_uid == os.getuid():
            os.chmod(path, mode)
    except OSError:
        pass
