"""What each client message does: one handler per message type of :mod:`.protocol`.

A handler gets its connection and the validated message model; it checks
what depends on the tab (the engine checks points and options, the
server's :class:`~.settings.Limits` the rest), runs the change on the
compute thread through :meth:`Connection.action` and answers with the
tab's state.  Adding a message type: a model in :mod:`.protocol`, a
handler here registered with ``@handles("type")``, a row in
``docs/app.md`` (``tests/test_server.py`` checks that every type has both).
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from typing import Any, Awaitable, Callable

from .. import __version__
from ..drag.options import check_steps
from ..errors import DragkitError, SpecError
from . import protocol as p
from .connection import Connection
from .drag_run import start_drag
from .engine import Edit, png_to_mask, session_file_model
from .protocol import LimitError, ProtocolError
from .sessions import Tab, new_sid, valid_sid

__all__ = ["HANDLERS", "handles"]

log = logging.getLogger("dragkit.server")

Handler = Callable[[Connection, Any], Awaitable[None]]
#: ``type`` -> handler, for every type in :data:`.protocol.MESSAGE_TYPES`.
HANDLERS: dict[str, Handler] = {}


def handles(kind: str) -> Callable[[Handler], Handler]:
    """Register the handler of message type ``kind``."""
    assert kind in p.MESSAGE_TYPES, kind

    def register(fn: Handler) -> Handler:
        HANDLERS[kind] = fn
        return fn

    return register


def _need_edit(tab: Tab) -> Edit:
    if tab.edit is None:
        raise DragkitError("no image yet: choose a model")
    return tab.edit


def _max_steps(conn: Connection, value: Any) -> int:
    try:
        return check_steps(value, lo=1, hi=conn.limits.max_steps)
    except SpecError as exc:
        raise ProtocolError(str(exc)) from None


# --------------------------------------------------------------------------
# hello: resume a tab, copy it (the same id open twice), or start a new one


async def resume_tab(conn: Connection, sid: str, re: Any) -> Tab | None:
    """The tab ``sid`` if it exists (memory or disk) and is free, waiting for a drag the
    previous connection left running to stop; None if there is none (the error, if its
    files could not be read, is sent)."""
    try:
        tab = await conn.server.load_tab(sid)
    except DragkitError as exc:
        conn.error(str(exc), code="rejected", re=re)
        return None
    if tab is not None and tab.conn is None and tab.running:
        for _ in range(100):  # a reload mid-drag: the old connection's drag is stopping
            if not tab.running:
                break
            await asyncio.sleep(0.05)
    return tab


async def copy_tab(conn: Connection, src: Tab) -> Tab:
    """An independent copy of ``src`` under a new id (a duplicated browser tab)."""
    srv = conn.server
    tab = await srv.run(src.sid, lambda: src.copy_as(new_sid(), srv.models))
    srv.tabs[tab.sid] = tab
    return tab


def new_tab(conn: Connection) -> Tab:
    """A tab with no edit yet (:func:`first_image` makes one)."""
    tab = Tab(new_sid(), None, conn.limits.default_max_steps, conn.limits.history)
    conn.server.tabs[tab.sid] = tab
    return tab


async def first_image(conn: Connection, tab: Tab, msg: p.Hello) -> None:
    """The first image of a new tab (the server's default model if ``msg.model`` is not offered)."""
    srv = conn.server
    name = msg.model or srv.model_name()
    if msg.model:
        try:
            srv.check_model(msg.model)
        except DragkitError as exc:
            conn.error(str(exc), code="rejected", re=msg.id)
            name = srv.model_name()

    def create() -> dict[str, Any]:
        tab.set_edit(Edit.new(srv.models.get(name), name, msg.seed, msg.psi))
        tab.refresh_image()
        srv.prune_saved()
        srv.store.save(tab)
        return conn.state(msg.id)

    try:
        conn.send(await srv.run(tab.sid, create))
    except DragkitError as exc:
        conn.error(str(exc), code="rejected", re=msg.id)
        await conn.reply_state(msg.id)


@handles("hello")
async def hello(conn: Connection, msg: p.Hello) -> None:
    if conn.tab is not None:
        raise ProtocolError("already said hello on this connection")
    srv, limits = conn.server, conn.limits
    if srv.live >= limits.max_sessions:
        conn.error(f"too many open editor tabs ({limits.max_sessions}); close one and reload", code="limit",
                   re=msg.id)
        await asyncio.sleep(0.2)
        try:
            await conn.ws.close(code=1013)
        except Exception:  # the tab went first (it read the refusal and closed): a refusal is not an error
            pass
        return
    resumed, tab = "new", None
    if valid_sid(msg.session):
        tab = await resume_tab(conn, msg.session, msg.id)
        if tab is not None and (tab.conn is not None or tab.running):
            tab, resumed = await copy_tab(conn, tab), "copied"
        elif tab is not None:
            resumed = "resumed"
    tab = tab or new_tab(conn)
    conn.attach(tab)
    conn.send({"type": "welcome", "re": msg.id, "session": tab.sid, "resumed": resumed, "version": __version__,
               "models": srv.models_json(), "default_model": srv.model_name(), "limits": limits.to_json(),
               "features": {"upload_image": True}})
    if tab.edit is None:
        await first_image(conn, tab, msg)
    else:
        await conn.reply_state(msg.id)


# --------------------------------------------------------------------------
# the picture


@handles("ping")
async def ping(conn: Connection, msg: p.Ping) -> None:
    conn.send({"type": "pong", "re": msg.id, "time": time.time()})


@handles("state")
async def state(conn: Connection, msg: p.State) -> None:
    await conn.reply_state(msg.id, resend_image=True)


@handles("new")
async def new(conn: Connection, msg: p.New) -> None:
    tab = conn.tab
    assert tab is not None
    edit = tab.edit
    model = conn.server.check_model(msg.model or (edit.base_model if edit else conn.server.model_name()))
    seed = msg.seed if msg.seed is not None else (edit.seed if edit and edit.seed is not None else 0)
    psi = msg.psi if msg.psi is not None else (edit.psi if edit else 0.7)
    models = conn.server.models

    def fn(t: Tab) -> None:
        t.set_edit(Edit.new(models.get(model), model, seed, psi))
        t.video_frames = []

    await conn.action(msg.id, fn, undoable=edit is not None, image=True)


@handles("open")
async def open_file(conn: Connection, msg: p.Open) -> None:
    raw = msg.data.encode("utf-8")
    limit = conn.limits.max_upload_bytes
    if len(raw) > limit:
        raise LimitError(f"session file too large ({len(raw) // 1024} KiB; limit {limit // 1024} KiB)")
    tab = conn.tab
    assert tab is not None
    # Parsed off the event loop (up to 8 MiB of JSON).
    model = msg.model or await asyncio.to_thread(session_file_model, raw) \
        or (tab.edit.base_model if tab.edit else conn.server.model_name())
    conn.server.check_model(model)
    models, max_points = conn.server.models, conn.limits.max_points

    def fn(t: Tab) -> None:
        try:
            edit = Edit.from_file(models.get(model), model, raw)
        except DragkitError:
            raise
        except Exception as exc:
            log.exception("opening a session file failed")
            raise DragkitError(f"could not open the session file ({exc.__class__.__name__})") from None
        if edit.num_points > max_points:
            raise LimitError(f"the session file has {edit.num_points} point pairs; this server allows "
                             f"at most {max_points}")
        t.set_edit(edit, keep_options=False)  # the file's options (method, flags, radii...) with its edit
        t.video_frames = []

    await conn.action(msg.id, fn, undoable=tab.edit is not None, image=True)


@handles("options")
async def options(conn: Connection, msg: p.Options) -> None:
    max_steps = _max_steps(conn, msg.max_steps) if msg.max_steps is not None else None
    values = dict(msg.options)

    def fn(t: Tab) -> None:
        if t.edit is not None:
            t.edit.set_options(values)  # the engine checks them (DragOptions.replace)
            t.options = t.edit.options()
        elif values:
            raise DragkitError("no image yet: choose a model")
        if max_steps is not None:
            t.max_steps = max_steps

    await conn.action(msg.id, fn, undoable=False)


# --------------------------------------------------------------------------
# points and mask (the engine checks coordinates and indices)


@handles("add_point")
async def add_point(conn: Connection, msg: p.AddPoint) -> None:
    tab = conn.tab
    assert tab is not None
    if tab.edit is not None and tab.edit.num_points >= conn.limits.max_points:
        raise LimitError(f"at most {conn.limits.max_points} point pairs per image (the server's limit)")
    await conn.action(msg.id, lambda t: t.edit.add_point(msg.handle, msg.target))


@handles("move_point")
async def move_point(conn: Connection, msg: p.MovePoint) -> None:
    await conn.action(msg.id, lambda t: t.edit.move_point(msg.index, msg.handle, msg.target))


@handles("remove_point")
async def remove_point(conn: Connection, msg: p.RemovePoint) -> None:
    await conn.action(msg.id, lambda t: t.edit.remove_point(msg.index))


@handles("clear_points")
async def clear_points(conn: Connection, msg: p.ClearPoints) -> None:
    await conn.action(msg.id, lambda t: t.edit.clear_points())


def _b64_png(value: str) -> bytes:
    if value.startswith("data:"):
        value = value.split(",", 1)[-1]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("mask is not valid base64") from None


@handles("set_mask")
async def set_mask(conn: Connection, msg: p.SetMask) -> None:
    tab = conn.tab
    assert tab is not None
    edit = _need_edit(tab)
    # Decoded off the event loop, size checked from the PNG header first.
    mask = None if msg.mask is None else await asyncio.to_thread(png_to_mask, _b64_png(msg.mask), edit.image_size)
    await conn.action(msg.id, lambda t: t.edit.set_mask(mask))


# --------------------------------------------------------------------------
# history and the drag


@handles("undo")
async def undo(conn: Connection, msg: p.Undo) -> None:
    models = conn.server.models
    await conn.action(msg.id, lambda t: t.undo(models), undoable=False, image=True)


@handles("redo")
async def redo(conn: Connection, msg: p.Redo) -> None:
    models = conn.server.models
    await conn.action(msg.id, lambda t: t.redo(models), undoable=False, image=True)


@handles("start")
async def start(conn: Connection, msg: p.Start) -> None:
    tab = conn.tab
    assert tab is not None
    if tab.running:
        raise DragkitError("a drag is already running")
    edit = _need_edit(tab)
    if not edit.num_points:
        raise DragkitError("place at least one handle and its target first")
    max_steps = _max_steps(conn, msg.max_steps if msg.max_steps is not None else tab.max_steps)
    # The engine's bounds (radii, points, work per step), before any step is queued.
    await conn.server.run(tab.sid, edit.check_drag)
    start_drag(conn, tab, max_steps, msg.id)


@handles("stop")
async def stop(conn: Connection, msg: p.Stop) -> None:
    tab = conn.tab
    assert tab is not None
    if not tab.running:
        raise DragkitError("no drag is running")
    tab.stop.set()


@handles("ack")
async def ack(conn: Connection, msg: p.Ack) -> None:
    tab = conn.tab
    assert tab is not None
    with tab.credit_lock:
        tab.credits = min(tab.credits + 1, 2)


@handles("cancel_invert")
async def cancel_invert(conn: Connection, msg: p.CancelInvert) -> None:
    tab = conn.tab
    assert tab is not None
    run = tab.inverting
    if run is None:
        raise DragkitError("no photo is being inverted")
    run.cancel.set()  # the upload request answers "cancelled"; the tab's state follows
    conn.send({"type": "invert_progress", **run.progress, "cancelling": True, "re": msg.id})
