"""Editing a real photo in the web app: upload, inversion on the compute queue, its files on disk.

``POST /api/sessions/{sid}/upload-image`` takes the photo's bytes as the
request body (a file picked or dropped on the page; at most
``Limits.max_photo_bytes``) and the options as a query validated by
:class:`InvertRequest` (``align``, ``pti``, optional step counts).  The
photo is read and checked first (``dragkit.invert.read_photo``: one clear
``PhotoError``, HTTP 400, nothing changed); then :class:`InversionRun`
inverts it (``DragSession.from_image`` through :class:`~.engine.Edit`) on
the server's shared compute queue, **one optimisation step per turn** under
its own owner ``(sid, "invert")``: other tabs - and this tab's own clicks
and drags - take turns with it step by step.  Each step posts an
``invert_progress`` frame (phase, step/steps, PSNR) to the tab's websocket;
``cancel_invert`` stops it before its next step.  The request answers when
the inversion has ended: 200 with the PSNR (the tab's edit is now the
inverted photo, one undo level), 400 for a photo that cannot be used (no
face, ...), 409 when cancelled; on any failure the open edit is untouched.

**On disk**: the finished inversion is saved with ``session.save`` (the
library's edit files: session, tuned generator, pivot, photo,
reconstruction) into ``SESSIONS/SID/photos/REF/edit.dragkit.json``.  The
tab's edit then names its generator ``photo:SID:REF``; the model cache
resolves such a name from that folder only (a fixed pattern, never a path;
the tuned generator's SHA-256 is checked by ``load_inversion``), so a
restarted server reopens the photo edit, its history and its before/after
images.  Browsers can never ask for a ``photo:`` name (``new``/``open``
accept only the models the server offers).

Why this module is long (~470 lines): the upload route, the request schema,
the queued inversion and its files on disk are one feature whose parts
share the tab's state and the photo's lifecycle (a failure at any stage
leaves the open edit untouched); the inversion itself lives in
:mod:`dragkit.invert`.
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import shutil
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import DragkitError
from .engine import Edit

if TYPE_CHECKING:
    from .server import Server
    from .sessions import Tab

__all__ = ["PhotoStore", "InvertRequest", "InversionRun", "photo_router", "photo_name", "parse_photo_name",
           "PHOTO_PREFIX"]

log = logging.getLogger("dragkit.server")

PHOTO_PREFIX = "photo:"
_REF = r"[0-9a-f]{16}"
_SID = r"[A-Za-z0-9_-]{16,64}"
PHOTO_NAME_RE = re.compile(rf"^photo:({_SID}):({_REF})$")
SESSION_FILE = "edit.dragkit.json"
#: Progress frames per second sent to a tab while it inverts, at most.
PROGRESS_FPS = 10.0


def photo_name(sid: str, ref: str) -> str:
    """How the app names the generator of tab ``sid``'s inverted photo ``ref``."""
    name = f"{PHOTO_PREFIX}{sid}:{ref}"
    assert PHOTO_NAME_RE.match(name), name
    return name


def parse_photo_name(name: Any) -> tuple[str, str] | None:
    """``(sid, ref)`` of a ``photo:SID:REF`` name, None for any other value."""
    m = PHOTO_NAME_RE.match(name) if isinstance(name, str) else None
    return (m.group(1), m.group(2)) if m else None


class PhotoStore:
    """The inverted photos' files: ``ROOT/SID/photos/REF/edit.*`` (``ROOT`` is the sessions folder)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def folder(self, name: str) -> Path:
        parsed = parse_photo_name(name)
        if parsed is None:
            raise DragkitError("not an inverted photo")
        sid, ref = parsed
        return self.root / sid / "photos" / ref

    def session_path(self, name: str) -> Path:
        return self.folder(name) / SESSION_FILE

    def exists(self, name: str) -> bool:
        return parse_photo_name(name) is not None and self.session_path(name).is_file()

    def block(self, name: str) -> dict[str, Any]:
        """The inversion block of a saved photo edit (validated)."""
        from ..invert.edit import read_inversion_block

        path = self.session_path(name)
        try:
            with open(path, "rb") as f:
                raw = f.read(16 * 2**20 + 1)
            if len(raw) > 16 * 2**20:
                raise DragkitError("too large")
            block = read_inversion_block(json.loads(raw.decode("utf-8")), "saved photo")
        except (OSError, ValueError, DragkitError):
            raise DragkitError("an inverted photo of this tab is missing or damaged") from None
        if block is None:
            raise DragkitError("an inverted photo of this tab is missing or damaged")
        return block

    def load_generator(self, name: str, base: Any) -> Any:
        """The generator of photo ``name``: its tuned copy (SHA-256 checked), or ``base(model)`` without one.

        Raises:
            DragkitError: the files are missing, damaged or altered (one line, no path).
        """
        block = self.block(name)
        if not block.get("generator"):
            return base(str(block["base_model"]))
        from ..invert.edit import load_inversion

        try:
            s, _ = load_inversion(self.session_path(name))
        except DragkitError as exc:
            log.warning("inverted photo %s could not be reopened: %s", name, exc)
            raise DragkitError("an inverted photo of this tab could not be reopened (its files are damaged "
                               "or were replaced)") from None
        return s.G

    def image(self, name: str, which: str) -> bytes:
        """``photo`` (the photo as the model sees it) or ``reconstruction``, PNG bytes."""
        block = self.block(name)
        file = block.get(which)
        if not isinstance(file, str) or Path(file).name != file or not file.endswith(".png"):
            raise DragkitError(f"this photo edit has no {which} image")
        try:
            return (self.folder(name) / file).read_bytes()
        except OSError:
            raise DragkitError(f"this photo edit has no {which} image") from None

    def prune(self, sid: str, keep: set[str], max_photos: int) -> None:
        """Delete this tab's oldest photo folders beyond ``max_photos`` that no snapshot in ``keep`` names."""
        d = self.root / sid / "photos"
        try:
            entries = sorted((p.stat().st_mtime, p) for p in d.iterdir() if p.is_dir() and not p.is_symlink())
        except OSError:
            return
        excess = len(entries) - max_photos
        for _, p in entries:
            if excess <= 0:
                break
            if re.fullmatch(_REF, p.name) and photo_name(sid, p.name) in keep:
                continue  # still in the tab's edit or history
            shutil.rmtree(p, ignore_errors=True)
            excess -= 1


def names_in_use(tab: "Tab") -> set[str]:
    """The ``photo:`` names the tab's edit and its history refer to."""
    snaps = [*tab.undo_stack, *tab.redo_stack]
    names = {s.get("model") for s in snaps}
    if tab.edit is not None:
        names.add(tab.edit.model)
    return {n for n in names if parse_photo_name(n)}


# --------------------------------------------------------------------------
# the request


class InvertRequest(BaseModel):
    """The query of ``upload-image``: what to do with the photo (steps: None = the library's defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    align: bool = False
    pti: bool = False
    w_steps: Optional[int] = Field(default=None, ge=0)
    wplus_steps: Optional[int] = Field(default=None, ge=0)
    pti_steps: Optional[int] = Field(default=None, ge=0)

    def config(self, max_steps: int) -> Any:
        """The library's :class:`~dragkit.invert.InvertConfig`.

        Raises:
            DragkitError: a step count above ``max_steps`` (the server's ``Limits.max_invert_steps``).
        """
        from ..invert import InvertConfig

        cfg = InvertConfig(align=self.align, pti=self.pti)
        for field_name, target, attr in (("w_steps", cfg.projection, "w_steps"),
                                         ("wplus_steps", cfg.projection, "wplus_steps"),
                                         ("pti_steps", cfg.pti_config, "steps")):
            v = getattr(self, field_name)
            if v is None:
                continue
            if v > max_steps:
                raise DragkitError(f"{field_name} must be at most {max_steps} (the server's limit), got {v}")
            setattr(target, attr, v)
        if cfg.projection.w_steps + cfg.projection.wplus_steps == 0:
            raise DragkitError("w_steps and wplus_steps cannot both be 0")
        return cfg


def _query(request: Request) -> InvertRequest:
    q = dict(request.query_params)
    if len(q) != len(request.query_params.multi_items()):
        raise HTTPException(422, "each option may be given once")
    try:
        return InvertRequest.model_validate(q)
    except ValidationError as exc:
        e = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in e["loc"]) or "query"
        if e["type"] == "extra_forbidden":
            raise HTTPException(422, f"unknown option {where[:40]!r}; known: align, pti, w_steps, wplus_steps, "
                                     "pti_steps") from None
        raise HTTPException(422, f"{where}: {e['msg']}") from None


# --------------------------------------------------------------------------
# the run


class InversionRun:
    """One photo's inversion, run one optimisation step per compute-queue turn.

    The library's inversion is one blocking call; it runs in its own thread,
    which computes only while the compute thread has handed it a turn
    (:meth:`__call__`) and hands it back after every step (its ``progress``
    callback).  So exactly one computation runs at a time and the
    round-robin queue stays fair.  The last turn makes the inverted photo
    the tab's edit (:meth:`finish`).
    """

    def __init__(self, server: "Server", tab: "Tab", G: Any, base_model: str, photo: Any, config: Any) -> None:
        self.server = server
        self.tab = tab
        self.G = G
        self.base_model = base_model
        self.photo = photo
        self.config = config
        self.cancel = threading.Event()
        self.abandoned = False
        self.progress: dict[str, Any] = {"phase": "start", "step": 0, "steps": 0, "psnr": None, "elapsed": 0.0}
        self._go = threading.Event()
        self._paused = threading.Event()
        self._thread = threading.Thread(target=self._work, name="dragkit-invert", daemon=True)
        self._done = False
        self._session: Any = None
        self._error: BaseException | None = None
        self._last_post = 0.0
        self.result: dict[str, Any] | None = None

    # -- the inversion's thread ----------------------------------------------
    def _wait_turn(self) -> None:
        from ..invert import InversionCancelled

        while not self._go.wait(0.5):
            if self.abandoned:
                raise InversionCancelled("the server is shutting down")
        self._go.clear()

    def _work(self) -> None:
        try:
            self._wait_turn()
            self._session = Edit.invert_photo(self.G, self.base_model, self.photo, self.config,
                                              progress=self._on_progress, cancel=self.cancel.is_set)
        except BaseException as exc:  # delivered by the compute thread's turn
            self._error = exc
        finally:
            self._done = True
            self._paused.set()

    def _on_progress(self, p: Any) -> None:
        self.progress = {"phase": p.phase, "step": int(p.step), "steps": int(p.steps),
                         "psnr": round(float(p.psnr), 2), "elapsed": round(float(p.elapsed), 2)}
        now = time.monotonic()
        if now - self._last_post >= 1.0 / PROGRESS_FPS or p.step == p.steps:
            self._last_post = now
            conn = self.tab.conn
            if conn is not None:
                conn.post({"type": "invert_progress", **self.progress})
        self._paused.set()  # the step is done: hand the turn back
        self._wait_turn()

    # -- the compute thread ------------------------------------------------
    def __call__(self) -> dict[str, Any] | None:
        """One turn: one optimisation step (None: call again), or the end of the run."""
        if not self._thread.is_alive() and not self._done:
            self._thread.start()
        if not self._done:
            self._paused.clear()
            self._go.set()
            while not self._paused.wait(0.5):
                if not self._thread.is_alive():
                    break
        if not self._done:
            return None
        if self._error is None and self.tab.running:
            return None  # a drag of the old edit is running: the photo replaces it when it ends
        return self.finish()

    def finish(self) -> dict[str, Any]:
        """Make the inverted photo the tab's edit (saved), or report why not (the edit untouched)."""
        tab, srv = self.tab, self.server
        tab.inverting = None
        if self._error is not None:
            raise self._error
        s = self._session
        inv = s.inversion_result
        name = photo_name(tab.sid, secrets.token_hex(8))
        path = srv.photos.session_path(name)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        s.save(path)  # the library's edit files: session, tuned generator, pivot, photo, reconstruction
        try:
            edit = Edit.from_photo_file(s.G, name, path.read_bytes())
        except Exception:
            shutil.rmtree(path.parent, ignore_errors=True)
            raise
        srv.models.add(name, s.G)
        before = tab.edit.snapshot() if tab.edit is not None else None
        tab.set_edit(edit)
        if before is not None:
            tab.push_undo(before)
        tab.video_frames = []
        tab.refresh_image()
        srv.store.save(tab)
        srv.photos.prune(tab.sid, names_in_use(tab), srv.limits.max_photos)
        self.result = {"ok": True, "psnr": round(float(inv.psnr), 2), "ssim": round(float(inv.ssim), 4),
                       "psnr_projection": round(float(inv.psnr_projection), 2), "tuned": bool(inv.tuned),
                       "warnings": list(inv.warnings), "seconds": round(float(inv.seconds["total"]), 2),
                       "height": edit.image_size[0], "width": edit.image_size[1]}
        conn = tab.conn
        if conn is not None:
            conn.post(conn.state(tab=tab))
        return self.result

    def on_future_done(self, fut: Any) -> None:
        """The queue cancelled or finished the run: never leave the tab marked as inverting."""
        if fut.cancelled():
            self.abandoned = True
            self.cancel.set()
        if self.tab.inverting is self:
            self.tab.inverting = None
        conn = self.tab.conn
        if conn is not None and (fut.cancelled() or fut.exception() is not None):
            conn.post(conn.state(tab=self.tab))


def photo_info(tab: "Tab") -> dict[str, Any] | None:
    """What the ``state`` frame says about an edit of a photo (None for a generated image)."""
    edit = tab.edit
    inv = edit.inversion if edit is not None else None
    if not isinstance(inv, dict):
        return None
    settings = inv.get("settings") or {}
    return {"base_model": edit.base_model, "psnr": inv.get("psnr"), "ssim": inv.get("ssim"),
            "psnr_projection": inv.get("psnr_projection"), "pti": bool(settings.get("pti")),
            "align": bool(settings.get("align")), "warnings": list(inv.get("warnings") or [])[:8],
            "files": parse_photo_name(edit.model) is not None}


def inverting_info(tab: "Tab") -> dict[str, Any] | None:
    run = getattr(tab, "inverting", None)
    return dict(run.progress) if run is not None else None


# --------------------------------------------------------------------------
# routes

photo_router = APIRouter()


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise HTTPException(413, f"photo too large ({int(length) // 2**20} MiB; limit {limit // 2**20} MiB)")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise HTTPException(413, f"photo too large (over {limit // 2**20} MiB)")
    if not data:
        raise HTTPException(400, "no photo: send the image file as the request body")
    return bytes(data)


def _server(request: Request) -> "Server":
    return request.app.state.server


@photo_router.post("/api/sessions/{sid}/upload-image")
async def upload_image(sid: str, request: Request) -> dict[str, Any]:
    """Invert the photo in the body into tab ``sid``'s edit (see the module docstring)."""
    from ..invert import InversionCancelled, PhotoError, read_photo

    srv = _server(request)
    try:
        tab = await srv.tab_for(sid)
    except DragkitError as exc:
        raise HTTPException(404, str(exc)) from None
    req = _query(request)
    try:
        config = req.config(srv.limits.max_invert_steps)
    except DragkitError as exc:
        raise HTTPException(422, str(exc)) from None
    if getattr(tab, "inverting", None) is not None:
        raise HTTPException(409, "a photo is already being inverted in this tab; cancel it first")
    data = await _read_body(request, srv.limits.max_photo_bytes)
    try:  # decoded off the event loop; an unusable file is refused before anything is queued
        photo = await asyncio.to_thread(read_photo, data)
    except PhotoError as exc:
        raise HTTPException(400, str(exc)) from None
    base = tab.edit.base_model if tab.edit is not None else srv.model_name()
    try:
        G = await srv.run(tab.sid, lambda: srv.models.get(base))
    except DragkitError as exc:
        raise HTTPException(400, str(exc)) from None
    if getattr(tab, "inverting", None) is not None:  # checked again with no await before it is set
        raise HTTPException(409, "a photo is already being inverted in this tab; cancel it first")
    run = InversionRun(srv, tab, G, base, photo, config)
    tab.inverting = run
    fut = srv.compute.submit_loop((tab.sid, "invert"), run)
    fut.add_done_callback(run.on_future_done)
    conn = tab.conn
    if conn is not None:
        conn.post({"type": "invert_progress", **run.progress})
    try:
        return await asyncio.wrap_future(fut)
    except InversionCancelled:
        raise HTTPException(409, "inversion cancelled; the open edit is unchanged") from None
    except PhotoError as exc:  # NoFaceError is one
        raise HTTPException(400, str(exc)) from None
    except DragkitError as exc:
        raise HTTPException(400, str(exc)) from None
    except Exception as exc:
        log.error("inversion failed", exc_info=exc)
        raise HTTPException(500, f"the inversion failed ({exc.__class__.__name__}); the server log has the "
                                 "details; the open edit is unchanged") from None


@photo_router.get("/api/sessions/{sid}/photo/{which}.png")
async def photo_image(sid: str, which: str, request: Request) -> Response:
    """The before/after view's images of the tab's photo edit: ``photo`` (target) or ``reconstruction``."""
    if which not in ("photo", "reconstruction"):
        raise HTTPException(404, "photo/photo.png or photo/reconstruction.png")
    srv = _server(request)
    try:
        tab = await srv.tab_for(sid)
    except DragkitError as exc:
        raise HTTPException(404, str(exc)) from None
    edit = tab.edit
    if edit is None or parse_photo_name(edit.model) is None:
        raise HTTPException(404, "this tab is not editing a photo")
    try:
        png = await asyncio.to_thread(srv.photos.image, edit.model, which)
    except DragkitError as exc:
        raise HTTPException(404, str(exc)) from None
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})
