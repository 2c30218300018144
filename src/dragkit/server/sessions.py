"""Tabs' edit sessions: undo/redo history and atomic persistence on disk.

A :class:`Tab` is what one browser tab edits: the current :class:`Edit`, its
undo and redo stacks (snapshots taken *before* each point, mask, drag, seed
or open action), and the user's options.  :class:`SessionStore` writes a
tab to ``ROOT/SID/session.json`` after every completed action, through a
temporary file and ``os.replace``, so a crash or restart leaves either the
old or the new file, never a torn one.  Large values of a snapshot (the
latent) are stored once under ``ROOT/SID/blobs/SHA.json`` and referenced by
hash, so a history of a hundred point clicks costs one latent on disk.

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
from .engine import Edit

log = logging.getLogger("dragkit.server")

SID_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
FORMAT = "dragkit-app-session"
VERSION = 1
_BLOB_MIN_CHARS = 2048


def new_sid() -> str:
    return secrets.token_urlsafe(18)


def valid_sid(sid: Any) -> bool:
    return isinstance(sid, str) and bool(SID_RE.match(sid))


class ModelCache:
    """Generators by name, loaded once and shared read-only by all tabs."""

    def __init__(self, max_models: int = 3) -> None:
        self._models: OrderedDict[str, Any] = OrderedDict()
        self._max = max_models
        self._lock = threading.Lock()

    def get(self, name: str) -> Any:
        from ..models import load_model

        with self._lock:
            if name in self._models:
                self._models.move_to_end(name)
                return self._models[name]
        G = load_model(name)
        for p in G.parameters():
            p.requires_grad_(False)
        _warm_up(G)
        with self._lock:
            self._models[name] = G
            while len(self._models) > self._max:
                self._models.popitem(last=False)
        return G


def _warm_up(G: Any) -> None:
    """One throwaway drag step, so a user's first Start does not pay PyTorch's start-up costs."""
    from ..drag.session import DragSession

    try:
        s = DragSession(G, seed=0)
        c = G.img_resolution // 2
        s.add_point(handle=(c, c), target=(min(c + 4, G.img_resolution - 1), c))
        s.step()
        s.image()
    except Exception:  # a model the drag cannot use fails later, with its real error
        log.warning("warm-up drag failed for %s", getattr(G, "model_name", "?"), exc_info=True)


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

    def set_edit(self, edit: Edit) -> None:
        """Replace the edit (new seed, model, opened file), keeping the user's options."""
        self.edit = edit
        if self.options:
            _apply_options(edit, self.options)
        self.options = edit.options()

    def restore(self, snap: dict[str, Any], models: ModelCache) -> None:
        if self.edit is not None and snap["model"] == self.edit.model:
            self.edit.restore(snap)
            _apply_options(self.edit, self.options)
        else:
            self.set_edit(Edit.from_snapshot(models.get(snap["model"]), snap))

    def undo(self, models: ModelCache) -> None:
        if not self.undo_stack:
            raise SpecError("nothing to undo")
        snap = self.undo_stack.pop()
        self.redo_stack.append(self.edit.snapshot())
        self.restore(snap, models)

    def redo(self, models: ModelCache) -> None:
        if not self.redo_stack:
            raise SpecError("nothing to redo")
        snap = self.redo_stack.pop()
        self.undo_stack.append(self.edit.snapshot())
        self.restore(snap, models)

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
    if "layers" in opts:  # a model with fewer codes than the last one
        opts["layers"] = min(int(opts["layers"]), edit.num_ws)
    try:
        edit.set_options(opts)
    except DragkitError as exc:
        log.warning("dropping options that do not fit %s: %s", edit.model, exc)


class SessionStore:
    """Tabs on disk: ``ROOT/SID/session.json`` + ``ROOT/SID/blobs/*.json``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

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
        blobs.mkdir(parents=True, exist_ok=True)
        used: set[str] = set()

        def pack(snap: dict[str, Any]) -> dict[str, Any]:
            engine = {}
            for key, value in snap["engine"].items():
                text = json.dumps(value, separators=(",", ":"))
                if len(text) >= _BLOB_MIN_CHARS:
                    digest = hashlib.sha256(text.encode()).hexdigest()[:40]
                    if digest not in used and not (blobs / f"{digest}.json").exists():
                        atomic_write_bytes(blobs / f"{digest}.json", text.encode())
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
        atomic_write_bytes(d / "session.json", json.dumps(doc, separators=(",", ":")).encode())
        for f in blobs.glob("*.json"):  # drop what history no longer references
            if f.stem not in used:
                try:
                    f.unlink()
                except OSError:
                    pass

    # -- reading -------------------------------------------------------------
    def load(self, sid: str, models: ModelCache, history_limit: int) -> Tab:
        """Read a tab written by :meth:`save` (compute thread)."""
        d = self._dir(sid)
        try:
            doc = json.loads((d / "session.json").read_text())
            if doc.get("format") != FORMAT:
                raise ValueError("not an app session")

            def unpack(snap: dict[str, Any]) -> dict[str, Any]:
                engine = {}
                for key, value in snap["engine"].items():
                    if isinstance(value, dict) and set(value) == {"$blob"}:
                        value = json.loads((d / "blobs" / f"{value['$blob']}.json").read_text())
                    engine[key] = value
                return {**snap, "engine": engine}

            current = unpack(doc["current"])
            edit = Edit.from_snapshot(models.get(current["model"]), current)
            tab = Tab(sid, edit, int(doc.get("max_steps", 300)), history_limit)
            tab.options = dict(doc.get("options") or {})
            _apply_options(edit, tab.options)
            tab.options = edit.options()
            tab.undo_stack = [unpack(s) for s in doc.get("undo", [])]
            tab.redo_stack = [unpack(s) for s in doc.get("redo", [])]
        except DragkitError:
            raise
        except Exception as exc:
            raise DragkitError(f"saved session {sid} could not be reopened ({exc.__class__.__name__}: {exc})") from None
        return tab

    def prune(self, max_age_days: float) -> int:
        """Delete sessions not saved for ``max_age_days``; returns how many."""
        cutoff = time.time() - max_age_days * 86400
        n = 0
        for d in self.root.iterdir():
            f = d / "session.json"
            try:
                if d.is_dir() and valid_sid(d.name) and f.is_file() and f.stat().st_mtime < cutoff:
                    shutil.rmtree(d)
                    n += 1
            except OSError:
                pass
        return n
