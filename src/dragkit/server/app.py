"""The FastAPI app: the page, the websocket protocol, downloads.

One websocket per browser tab carries JSON messages both ways (the protocol
is documented in ``docs/app.md``).  Every call into the generator runs on
the shared :class:`~.compute.ComputeQueue`; the event loop only parses,
validates and forwards.  A bad message is answered with an ``error`` frame
and the tab keeps working.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import io
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import numpy as np
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..errors import DragkitError, SpecError
from .compute import ComputeQueue
from .engine import Edit, check_options, mask_to_png, png_to_mask, session_file_model
from .security import GuardMiddleware
from .sessions import ModelCache, SessionStore, Tab, new_sid, valid_sid

log = logging.getLogger("dragkit.server")
STATIC_DIR = Path(__file__).resolve().parent / "static"


@dataclass(frozen=True)
class Limits:
    """What one server accepts; hitting a limit gives a clear error frame."""

    max_points: int = 32
    max_steps: int = 2000  # step cap a user may set
    default_max_steps: int = 300
    max_upload_bytes: int = 8 * 1024 * 1024  # a session file opened from disk
    max_sessions: int = 16  # tabs connected at once
    history: int = 100  # undo levels per tab
    max_video_frames: int = 600
    max_video_bytes: int = 128 * 1024 * 1024  # frames kept per tab for its progress video, at most
    max_fps: float = 30.0  # frames per second sent to one tab, at most
    max_pending: int = 8  # websockets connected but not yet past "hello"
    hello_timeout: float = 10.0  # seconds a new websocket has to say hello
    max_saved: int = 256  # tabs kept on disk (least recently saved go first)
    keep_days: float = 30.0  # tabs not saved for this long are deleted (0: never)

    @property
    def max_message_chars(self) -> int:
        return self.max_upload_bytes * 4 // 3 + 65536


class ProtocolError(DragkitError):
    """A websocket message that does not follow the protocol."""


class LimitError(DragkitError):
    """A request beyond one of the server's :class:`Limits`."""


# --------------------------------------------------------------------------
# message checking


def _need(msg: dict[str, Any], key: str) -> Any:
    if key not in msg:
        raise ProtocolError(f"message {msg.get('type')!r} needs {key!r}")
    return msg[key]


def _xy(value: Any, what: str) -> tuple[float, float]:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    ):
        raise ProtocolError(f"{what} must be [x, y] in pixels, got {json.dumps(value)[:60]}")
    return float(value[0]), float(value[1])


def _int(value: Any, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ProtocolError(f"{what} must be a whole number, got {json.dumps(value)[:40]}")
    if not lo <= int(value) <= hi:
        raise ProtocolError(f"{what} must be between {lo} and {hi}, got {int(value)}")
    return int(value)


def _psi(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not -1.0 <= value <= 2.0:
        raise ProtocolError(f"psi must be a number between -1 and 2, got {json.dumps(value)[:40]}")
    return float(value)


def _only(msg: dict[str, Any], *keys: str) -> None:
    extra = set(msg) - {"type", "id", *keys}
    if extra:
        raise ProtocolError(f"message {msg['type']!r} has unknown field(s): {', '.join(sorted(extra))}")


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _b64_png(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ProtocolError("mask must be a base64 PNG string (or null to clear)")
    if value.startswith("data:"):
        value = value.split(",", 1)[-1]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("mask is not valid base64") from None


# --------------------------------------------------------------------------
# the server object


class Server:
    """Shared state of one running app: tabs, models, compute queue, store."""

    def __init__(
        self,
        model: str | None,
        sessions_dir: str | os.PathLike[str],
        limits: Limits,
    ) -> None:
        self.default_model = model
        self.limits = limits
        self.store = SessionStore(sessions_dir, max_saved=limits.max_saved, keep_days=limits.keep_days)
        self.models = ModelCache(allowed=self.offers)
        self.compute = ComputeQueue()
        self.tabs: dict[str, Tab] = {}
        self.live = 0
        self.pending = 0  # websockets that have not said hello yet
        self.last_prune = -1e9

    def model_name(self) -> str:
        if self.default_model:
            return self.default_model
        from ..models import default_model_name

        return default_model_name()

    def offers(self, name: str) -> bool:
        """Whether ``name`` is a model this server offers (a registry name or its own --model)."""
        from ..models import list_models

        return name == self.default_model or name in {m.name for m in list_models()}

    def check_model(self, name: str) -> str:
        """``name`` if it is a model this server offers; never a path from the browser."""
        from ..models import list_models

        if self.offers(name):
            return name
        offered = [m.name for m in list_models()]
        raise DragkitError(f"unknown model {name[:60]!r}; this server offers: {', '.join(offered) or '(none)'}")

    def prune_saved(self) -> None:
        """Bound the sessions folder when a tab is created (compute thread): by count
        whenever it is over ``max_saved``, by age at most once an hour."""
        now = time.monotonic()
        if now - self.last_prune < 3600 and self.store.count() <= self.limits.max_saved:
            return
        self.last_prune = now
        live = {sid for sid, t in self.tabs.items() if t.conn is not None or t.running}
        gone = self.store.prune(keep=live)  # a detached tab in memory is saved again on its next action
        if gone:
            log.info("removed %d saved edit(s) (age or count limit)", gone)

    async def run(self, owner: str, fn: Callable[[], Any]) -> Any:
        return await asyncio.wrap_future(self.compute.submit(owner, fn))

    def evict(self) -> None:
        """Forget detached tabs beyond a bound (they stay on disk)."""
        detached = sorted((t.last_used, sid) for sid, t in self.tabs.items() if t.conn is None and not t.running)
        for _, sid in detached[: max(0, len(detached) - 2 * self.limits.max_sessions)]:
            del self.tabs[sid]

    def models_json(self) -> list[dict[str, Any]]:
        from ..models import list_models

        return [
            {"name": m.name, "source": m.source, "format": m.format, "resolution": m.resolution, "size_bytes": m.size_bytes}
            for m in list_models()
        ]

    async def tab_for(self, sid: str) -> Tab:
        """The tab with id ``sid``, from memory or disk (for downloads)."""
        if not valid_sid(sid):
            raise SpecError("malformed session id")
        tab = self.tabs.get(sid)
        if tab is None:
            if not self.store.exists(sid):
                raise SpecError("no such session")
            tab = await self.run(sid, lambda: self.store.load(sid, self.models, self.limits.history))
            self.tabs.setdefault(sid, tab)
            tab = self.tabs[sid]
            tab.last_used = time.monotonic()
            self.evict()  # a tab loaded for a download is detached: bounded like the others
        return tab


# --------------------------------------------------------------------------
# one websocket connection


class Connection:
    """One browser tab's websocket: parse, dispatch, reply."""

    def __init__(self, ws: WebSocket, server: Server) -> None:
        self.ws = ws
        self.server = server
        self.limits = server.limits
        self.tab: Tab | None = None
        self.loop = asyncio.get_running_loop()
        self.outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.sent_rev = -1
        self.last_frame_at = 0.0
        self.said_hello = False  # counted in server.pending until then
        self.handlers: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = {
            "hello": self.on_hello,
            "ping": self.on_ping,
            "new": self.on_new,
            "options": self.on_options,
            "add_point": self.on_add_point,
            "move_point": self.on_move_point,
            "remove_point": self.on_remove_point,
            "clear_points": self.on_clear_points,
            "set_mask": self.on_set_mask,
            "start": self.on_start,
            "stop": self.on_stop,
            "ack": self.on_ack,
            "undo": self.on_undo,
            "redo": self.on_redo,
            "open": self.on_open,
            "state": self.on_state,
        }

    # -- plumbing ------------------------------------------------------------
    def post(self, msg: dict[str, Any]) -> None:
        """Queue a message for the browser; callable from any thread."""
        try:
            self.loop.call_soon_threadsafe(self.outbox.put_nowait, msg)
        except RuntimeError:  # loop closed: the tab is gone
            pass

    async def _sender(self) -> None:
        while True:
            msg = await self.outbox.get()
            if msg is None:
                return
            await self.ws.send_text(json.dumps(msg, separators=(",", ":")))

    def error(self, message: str, code: str = "bad_request", re: Any = None) -> None:
        frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
        if re is not None:
            frame["re"] = re
        self.outbox.put_nowait(frame)

    async def serve(self) -> None:
        sender = asyncio.create_task(self._sender())
        try:
            while True:
                try:
                    if self.tab is None:  # a connection that never says hello is closed
                        raw = await asyncio.wait_for(self.ws.receive(), timeout=self.limits.hello_timeout)
                    else:
                        raw = await self.ws.receive()
                except asyncio.TimeoutError:
                    await self.ws.close(code=1008, reason='no "hello" in time')
                    return
                except WebSocketDisconnect:
                    return
                if raw["type"] == "websocket.disconnect":
                    return
                text = raw.get("text")
                if text is None:
                    self.error("binary messages are not part of the protocol; send JSON text")
                    continue
                await self.handle_text(text)
                if sender.done():
                    return
        finally:
            self.detach()
            self.outbox.put_nowait(None)
            try:
                await asyncio.wait_for(sender, timeout=2)
            except (asyncio.TimeoutError, Exception):
                sender.cancel()

    async def handle_text(self, text: str) -> None:
        if len(text) > self.limits.max_message_chars:
            self.error(
                f"message too large ({len(text)} characters; limit {self.limits.max_message_chars})",
                code="limit",
            )
            return
        try:
            msg = json.loads(text)
        except ValueError:
            self.error("message is not valid JSON")
            return
        if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
            self.error('message must be a JSON object with a "type"')
            return
        re = msg.get("id")
        if re is not None and not isinstance(re, (str, int)):
            re = None
        handler = self.handlers.get(msg["type"])
        if handler is None:
            self.error(f"unknown message type {msg['type']!r}; known: {', '.join(sorted(self.handlers))}", re=re)
            return
        if self.tab is None and msg["type"] not in ("hello", "ping"):
            self.error('send "hello" first', code="no_session", re=re)
            return
        try:
            await handler(msg)
        except ProtocolError as exc:
            self.error(str(exc), re=re)
        except LimitError as exc:
            self.error(str(exc), code="limit", re=re)
        except DragkitError as exc:
            self.error(str(exc), code="rejected", re=re)
        except Exception as exc:  # keep the tab alive whatever went wrong
            log.exception("error handling %r", msg.get("type"))
            self.error(f"internal error ({exc.__class__.__name__}); the server log has the details",
                       code="internal", re=re)

    def detach(self) -> None:
        tab = self.tab
        if tab is None:
            return
        self.server.live -= 1
        tab.stop.set()
        if tab.conn is self:
            tab.conn = None
        tab.last_used = time.monotonic()
        self.tab = None
        self.server.evict()

    # -- state -----------------------------------------------------------------
    def state_msg(self, re: Any = None, tab: Tab | None = None) -> dict[str, Any]:
        """The tab's full state (compute thread). Includes the image only when it changed."""
        tab = tab or self.tab
        assert tab is not None
        edit = tab.edit
        msg: dict[str, Any] = {
            "type": "state",
            "session": tab.sid,
            "model": edit.model if edit else None,
            "resolution": edit.resolution if edit else None,
            "num_ws": edit.num_ws if edit else None,
            "seed": edit.seed if edit else None,
            "psi": edit.psi if edit else None,
            "options": edit.options() if edit else {},
            "options_resolved": edit.resolved_options() if edit else {},
            "max_steps": tab.max_steps,
            "points": edit.points() if edit else [],
            "mask": None,
            "can_undo": bool(tab.undo_stack),
            "can_redo": bool(tab.redo_stack),
            "running": tab.running,
            "image_rev": tab.image_rev,
            "has_video": bool(tab.video_frames),
            "last_steps": tab.last_steps,
        }
        if edit is not None:
            png = mask_to_png(edit.mask())
            msg["mask"] = _data_url(png) if png else None
            if tab.image_png is None:
                tab.refresh_image()
                msg["image_rev"] = tab.image_rev
            if tab.image_rev != self.sent_rev:
                msg["image"] = _data_url(tab.image_png)
                self.sent_rev = tab.image_rev
        if re is not None:
            msg["re"] = re
        return msg

    async def action(self, msg: dict[str, Any], fn: Callable[[Tab], None], *, undoable: bool = True, image: bool = False) -> None:
        """Run a mutating action on the compute thread, record it, save, reply with state."""
        tab = self.tab
        assert tab is not None
        if tab.running:
            raise DragkitError("a drag is running; stop it first")
        if tab.edit is None and undoable:
            raise DragkitError("no image yet: choose a model")

        def work() -> dict[str, Any]:
            before = tab.edit.snapshot() if tab.edit is not None and undoable else None
            fn(tab)
            if before is not None:
                tab.push_undo(before)
            if image:
                tab.refresh_image()
            self.server.store.save(tab)
            return self.state_msg(msg.get("id"))

        self.outbox.put_nowait(await self.server.run(tab.sid, work))

    # -- handlers --------------------------------------------------------------
    async def on_ping(self, msg: dict[str, Any]) -> None:
        self.outbox.put_nowait({"type": "pong", "re": msg.get("id"), "time": time.time()})

    async def on_state(self, msg: dict[str, Any]) -> None:
        _only(msg)
        tab = self.tab
        assert tab is not None
        self.sent_rev = -1
        self.outbox.put_nowait(await self.server.run(tab.sid, lambda: self.state_msg(msg.get("id"))))

    async def on_hello(self, msg: dict[str, Any]) -> None:
        _only(msg, "session", "model", "seed", "psi")
        if self.tab is not None:
            raise ProtocolError("already said hello on this connection")
        srv, limits = self.server, self.limits
        if srv.live >= limits.max_sessions:
            self.error(
                f"too many open editor tabs ({limits.max_sessions}); close one and reload",
                code="limit",
                re=msg.get("id"),
            )
            await asyncio.sleep(0.2)
            await self.ws.close(code=1013)
            return
        want = msg.get("session")
        if want is not None and not isinstance(want, str):
            raise ProtocolError("session must be a string")
        model = msg.get("model")
        if model is not None and not isinstance(model, str):
            raise ProtocolError("model must be a string")
        seed = _int(msg.get("seed", 0), "seed", 0, 2**32 - 1)
        psi = _psi(msg.get("psi", 0.7))

        resumed = "new"
        tab: Tab | None = None
        if valid_sid(want):
            tab = srv.tabs.get(want)
            if tab is None and srv.store.exists(want):
                try:
                    tab = await srv.run(want, lambda: srv.store.load(want, srv.models, limits.history))
                except DragkitError as exc:
                    self.error(str(exc), code="rejected", re=msg.get("id"))
                    tab = None
                if tab is not None:
                    srv.tabs.setdefault(want, tab)
                    tab = srv.tabs[want]
            if tab is not None and tab.conn is None and tab.running:
                # A reload mid-drag: the old connection's drag is stopping; wait for it.
                for _ in range(100):
                    if not tab.running:
                        break
                    await asyncio.sleep(0.05)
            if tab is not None and (tab.conn is not None or tab.running):
                # The same id open twice (a duplicated tab): give this one a copy.
                src = tab
                tab = await srv.run(want, lambda: src.copy_as(new_sid(), srv.models))
                srv.tabs[tab.sid] = tab
                resumed = "copied"
            elif tab is not None:
                resumed = "resumed"
        if tab is None:
            sid = new_sid()
            tab = Tab(sid, None, limits.default_max_steps, limits.history)
            srv.tabs[sid] = tab
        tab.conn = self
        tab.stop.clear()
        tab.last_used = time.monotonic()
        self.tab = tab
        srv.live += 1
        self.said_hello = True
        srv.pending -= 1
        self.outbox.put_nowait(
            {
                "type": "welcome",
                "re": msg.get("id"),
                "session": tab.sid,
                "resumed": resumed,
                "version": __version__,
                "models": srv.models_json(),
                "default_model": srv.model_name(),
                "limits": asdict(limits),
                "features": {"upload_image": False},
            }
        )
        if tab.edit is None:
            name = model or srv.model_name()
            if model:
                try:
                    srv.check_model(model)
                except DragkitError as exc:
                    self.error(str(exc), code="rejected", re=msg.get("id"))
                    name = srv.model_name()

            def create() -> dict[str, Any]:
                tab.set_edit(Edit.new(srv.models.get(name), name, seed, psi))
                tab.refresh_image()
                srv.prune_saved()
                srv.store.save(tab)
                return self.state_msg(msg.get("id"))

            try:
                self.outbox.put_nowait(await srv.run(tab.sid, create))
            except DragkitError as exc:
                self.error(str(exc), code="rejected", re=msg.get("id"))
                self.outbox.put_nowait(await srv.run(tab.sid, lambda: self.state_msg(msg.get("id"))))
        else:
            self.outbox.put_nowait(await srv.run(tab.sid, lambda: self.state_msg(msg.get("id"))))

    async def on_new(self, msg: dict[str, Any]) -> None:
        _only(msg, "model", "seed", "psi")
        tab = self.tab
        assert tab is not None
        model = msg.get("model") or (tab.edit.model if tab.edit else self.server.model_name())
        if not isinstance(model, str):
            raise ProtocolError("model must be a string")
        self.server.check_model(model)
        seed = _int(msg.get("seed", tab.edit.seed if tab.edit and tab.edit.seed is not None else 0), "seed", 0, 2**32 - 1)
        psi = _psi(msg.get("psi", tab.edit.psi if tab.edit else 0.7))
        models = self.server.models

        def fn(t: Tab) -> None:
            t.set_edit(Edit.new(models.get(model), model, seed, psi))
            t.video_frames = []

        await self.action(msg, fn, undoable=tab.edit is not None, image=True)

    async def on_options(self, msg: dict[str, Any]) -> None:
        _only(msg, "options", "max_steps")
        tab = self.tab
        assert tab is not None
        opts = msg.get("options", {})
        if not isinstance(opts, dict):
            raise ProtocolError("options must be an object")
        clean = check_options(opts, tab.edit.num_ws if tab.edit else None)
        max_steps = None
        if "max_steps" in msg:
            max_steps = _int(msg["max_steps"], "max_steps", 1, self.limits.max_steps)

        def fn(t: Tab) -> None:
            if t.edit is not None:
                t.edit.set_options(clean)
                t.options = t.edit.options()
            if max_steps is not None:
                t.max_steps = max_steps

        await self.action(msg, fn, undoable=False)

    async def on_add_point(self, msg: dict[str, Any]) -> None:
        _only(msg, "handle", "target")
        handle = _xy(_need(msg, "handle"), "handle")
        target = _xy(_need(msg, "target"), "target")
        tab = self.tab
        assert tab is not None
        if tab.edit is not None and len(tab.edit.session.points) >= self.limits.max_points:
            raise LimitError(f"at most {self.limits.max_points} point pairs per image (the server's limit)")
        await self.action(msg, lambda t: t.edit.add_point(handle, target))

    async def on_move_point(self, msg: dict[str, Any]) -> None:
        _only(msg, "index", "handle", "target")
        index = _int(_need(msg, "index"), "index", 0, self.limits.max_points - 1)
        handle = _xy(msg["handle"], "handle") if msg.get("handle") is not None else None
        target = _xy(msg["target"], "target") if msg.get("target") is not None else None
        if handle is None and target is None:
            raise ProtocolError("move_point needs a handle or a target")
        await self.action(msg, lambda t: t.edit.move_point(index, handle, target))

    async def on_remove_point(self, msg: dict[str, Any]) -> None:
        _only(msg, "index")
        index = _int(_need(msg, "index"), "index", 0, self.limits.max_points - 1)
        await self.action(msg, lambda t: t.edit.remove_point(index))

    async def on_clear_points(self, msg: dict[str, Any]) -> None:
        _only(msg)
        await self.action(msg, lambda t: t.edit.clear_points())

    async def on_set_mask(self, msg: dict[str, Any]) -> None:
        _only(msg, "mask")
        value = _need(msg, "mask")
        tab = self.tab
        assert tab is not None
        if tab.edit is None:
            raise DragkitError("no image yet: choose a model")
        # Decoded off the event loop, size checked from the PNG header first.
        mask = None if value is None else await asyncio.to_thread(png_to_mask, _b64_png(value), tab.edit.image_size)
        await self.action(msg, lambda t: t.edit.set_mask(mask))

    async def on_undo(self, msg: dict[str, Any]) -> None:
        _only(msg)
        models = self.server.models
        await self.action(msg, lambda t: t.undo(models), undoable=False, image=True)

    async def on_redo(self, msg: dict[str, Any]) -> None:
        _only(msg)
        models = self.server.models
        await self.action(msg, lambda t: t.redo(models), undoable=False, image=True)

    async def on_open(self, msg: dict[str, Any]) -> None:
        _only(msg, "data", "model")
        data = _need(msg, "data")
        if not isinstance(data, str):
            raise ProtocolError("data must be the session file's text")
        raw = data.encode("utf-8")
        if len(raw) > self.limits.max_upload_bytes:
            raise LimitError(
                f"session file too large ({len(raw) // 1024} KiB; limit {self.limits.max_upload_bytes // 1024} KiB)"
            )
        tab = self.tab
        assert tab is not None
        # Parsed off the event loop (up to 8 MiB of JSON).
        model = msg.get("model") or await asyncio.to_thread(session_file_model, raw) \
            or (tab.edit.model if tab.edit else self.server.model_name())
        if not isinstance(model, str):
            raise ProtocolError("model must be a string")
        self.server.check_model(model)
        models = self.server.models
        max_points = self.limits.max_points

        def fn(t: Tab) -> None:
            try:
                edit = Edit.from_file(models.get(model), model, raw)
            except DragkitError:
                raise
            except Exception as exc:
                log.exception("opening a session file failed")
                raise DragkitError(f"could not open the session file ({exc.__class__.__name__})") from None
            if len(edit.points()) > max_points:
                raise LimitError(f"the session file has {len(edit.points())} point pairs; this server allows "
                                 f"at most {max_points}")
            t.set_edit(edit)
            t.video_frames = []

        await self.action(msg, fn, undoable=tab.edit is not None, image=True)

    async def on_ack(self, msg: dict[str, Any]) -> None:
        tab = self.tab
        assert tab is not None
        with tab.credit_lock:
            tab.credits = min(tab.credits + 1, 2)

    async def on_stop(self, msg: dict[str, Any]) -> None:
        _only(msg)
        tab = self.tab
        assert tab is not None
        if not tab.running:
            raise DragkitError("no drag is running")
        tab.stop.set()

    async def on_start(self, msg: dict[str, Any]) -> None:
        _only(msg, "max_steps")
        tab = self.tab
        assert tab is not None
        if tab.running:
            raise DragkitError("a drag is already running")
        if tab.edit is None:
            raise DragkitError("no image yet: choose a model")
        if not tab.edit.session.points:
            raise DragkitError("place at least one handle and its target first")
        max_steps = _int(msg.get("max_steps", tab.max_steps), "max_steps", 1, self.limits.max_steps)
        # The engine's bounds (radii, points, work per step), before any step is queued.
        await self.server.run(tab.sid, tab.edit.check_drag)
        if tab.running:
            raise DragkitError("a drag is already running")
        tab.running = True
        tab.stop.clear()
        with tab.credit_lock:
            tab.credits = 2
        run = _DragRun(self, tab, max_steps, msg.get("id"))
        fut = self.server.compute.submit_loop(tab.sid, run)
        fut.add_done_callback(run.on_future_done)


class _DragRun:
    """A drag in progress: one call = one optimisation step (compute thread)."""

    def __init__(self, conn: Connection, tab: Tab, max_steps: int, re: Any) -> None:
        self.conn = conn
        self.tab = tab
        self.server = conn.server
        self.max_steps = max_steps
        self.re = re
        self.n = 0
        self.before: dict[str, Any] | None = None
        self.frames: list[np.ndarray] = []
        self.t0 = 0.0
        self.finished = False
        self.min_interval = 1.0 / max(conn.limits.max_fps, 1e-3)
        self.render_seconds = 0.0  # how long the last frame took to render

    def _post(self, msg: dict[str, Any]) -> None:
        conn = self.tab.conn
        if conn is not None:
            conn.post(msg)

    def __call__(self) -> str | None:
        tab = self.tab
        if self.before is None:
            self.before = tab.edit.snapshot()
            self.frames = [np.asarray(tab.edit.image().convert("RGB"))]
            self.t0 = time.perf_counter()
            self._post({"type": "started", "re": self.re, "max_steps": self.max_steps,
                        "points": tab.edit.points()})
        if tab.stop.is_set():
            return self.finish("stopped")
        out = tab.edit.step()
        self.n += 1
        self._maybe_frame(out)
        if out.done:
            return self.finish("reached" if out.reached else "converged", out)
        if self.n >= self.max_steps:
            return self.finish("max_steps", out)
        return None

    def _maybe_frame(self, out: Any) -> None:
        """Send a frame if the browser has drawn the last one (flow control)."""
        tab = self.tab
        conn = tab.conn
        now = time.perf_counter()
        # Rendering a frame costs a full synthesis; spacing frames by twice
        # that keeps rendering to about a third of the compute, however fast
        # the browser acknowledges.
        interval = max(self.min_interval, 2.0 * self.render_seconds)
        if conn is None or now - conn.last_frame_at < interval:
            return
        with tab.credit_lock:
            if tab.credits <= 0:
                return
            tab.credits -= 1
        conn.last_frame_at = now
        img = tab.edit.image().convert("RGB")
        self.render_seconds = time.perf_counter() - now
        lim = self.server.limits
        if len(self.frames) < min(lim.max_video_frames, lim.max_video_bytes // max(1, img.width * img.height * 3)):
            self.frames.append(np.asarray(img))
        buf = io.BytesIO()
        img.save(buf, format="PNG", compress_level=1)
        self._post(
            {
                "type": "frame",
                "step": self.n,
                "points": out.points,
                "targets": [p["target"] for p in tab.edit.points()],
                "distances": out.distances,
                "image": _data_url(buf.getvalue()),
                "elapsed": round(time.perf_counter() - self.t0, 4),
            }
        )

    def finish(self, reason: str, out: Any = None, error: str | None = None) -> str:
        tab = self.tab
        self.finished = True
        try:
            if self.before is not None:
                try:
                    out = tab.edit.finish()  # handles tracked on the final image
                except Exception:
                    log.exception("could not end the drag cleanly")
            if self.n > 0 and self.before is not None:
                tab.push_undo(self.before)
                tab.refresh_image()
                self.frames.append(np.asarray(tab.edit.image().convert("RGB")))
                tab.video_frames = self.frames
                tab.last_steps = self.n
            tab.running = False
            self.server.store.save(tab)
        finally:
            tab.running = False
        seconds = time.perf_counter() - self.t0
        done = {
            "type": "done",
            "re": self.re,
            "reason": reason,
            "steps": self.n,
            "seconds": round(seconds, 3),
            "seconds_per_step": round(seconds / self.n, 4) if self.n else None,
            "points": out.points if out is not None else None,
            "distances": out.distances if out is not None else None,
            "reached": bool(out.reached) if out is not None else False,
        }
        if error:
            done["error"] = error
        self._post(done)
        conn = tab.conn
        if conn is not None:
            conn.post(conn.state_msg(tab=tab))
        return reason

    def on_future_done(self, fut: Any) -> None:
        # Runs on the compute thread. A step that raised: report it, keep the tab.
        if fut.cancelled() or self.finished:
            self.tab.running = False
            return
        exc = fut.exception()
        if exc is not None:
            log.error("drag step failed", exc_info=exc)
            conn = self.tab.conn
            text = str(exc) if isinstance(exc, DragkitError) else f"{exc.__class__.__name__}; see the server log"
            if conn is not None:
                conn.post({"type": "error", "code": "internal", "re": self.re,
                           "message": f"the drag failed: {text}"})
            try:
                self.finish("error", error=text)
            except Exception:
                self.tab.running = False


# --------------------------------------------------------------------------
# the app


def create_app(
    model: str | None = None,
    *,
    sessions_dir: str | os.PathLike[str] | None = None,
    token: str | None = None,
    allowed_hosts: set[str] | None = None,
    limits: Limits | None = None,
    preload: bool = False,
) -> FastAPI:
    """Build the app.

    Args:
        model: model for new tabs (default: ``models.default_model_name()``).
        sessions_dir: where tabs are saved (default ``$DRAGKIT_HOME/sessions``).
        token: if set, every HTTP request and websocket must carry it.
        allowed_hosts: accepted ``Host`` header names (None: any), against
            DNS rebinding when serving on loopback.
        limits: see :class:`Limits`.
        preload: load and warm up the default model at start-up.
    """
    from ..models import cache_dir

    limits = limits or Limits()
    server = Server(model, sessions_dir or cache_dir() / "sessions", limits)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if preload:
            # Load and warm the default model before the first tab asks for it.
            server.compute.submit("preload", lambda: server.models.get(server.model_name()))
        yield
        server.compute.close()

    app = FastAPI(title="dragkit", version=__version__, docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.server = server

    def page(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-store"})

    app.add_api_route("/", page, methods=["GET"], include_in_schema=False)

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        return {"ok": True, "version": __version__, "default_model": server.model_name(), "live_tabs": server.live}

    @app.get("/api/models")
    def models() -> dict[str, Any]:
        return {"models": server.models_json(), "default": server.model_name()}

    def err(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def tab_or_error(sid: str) -> Tab | JSONResponse:
        try:
            return await server.tab_for(sid)
        except DragkitError as exc:
            return err(404, str(exc))

    @app.get("/api/sessions/{sid}/image.png")
    async def image_png(sid: str) -> Response:
        tab = await tab_or_error(sid)
        if isinstance(tab, JSONResponse):
            return tab
        if tab.edit is None:
            return err(404, "no image yet")

        def get() -> bytes:
            if tab.image_png is None:
                tab.refresh_image()
            return tab.image_png

        png = await server.run(sid, get)
        name = f"dragkit-{tab.edit.model}-{tab.edit.seed if tab.edit.seed is not None else 'edit'}.png"
        return Response(png, media_type="image/png", headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @app.get("/api/sessions/{sid}/session.dragkit.json")
    async def session_file(sid: str) -> Response:
        tab = await tab_or_error(sid)
        if isinstance(tab, JSONResponse):
            return tab
        if tab.edit is None:
            return err(404, "no image yet")
        data = await server.run(sid, lambda: tab.edit.file_bytes())
        return Response(data, media_type="application/json",
                        headers={"Content-Disposition": 'attachment; filename="edit.dragkit.json"'})

    @app.get("/api/sessions/{sid}/progress.{ext}")
    async def progress_video(sid: str, ext: str) -> Response:
        if ext not in ("mp4", "gif"):
            return err(404, "progress video is .mp4 or .gif")
        tab = await tab_or_error(sid)
        if isinstance(tab, JSONResponse):
            return tab
        frames = list(tab.video_frames)
        if not frames:
            return err(404, "no drag yet in this session: run one, then download its video")
        from .video import encode_video

        try:
            data, media = await asyncio.to_thread(encode_video, frames, ext)
        except DragkitError as exc:
            return err(503, str(exc))
        return Response(data, media_type=media,
                        headers={"Content-Disposition": f'attachment; filename="dragkit-progress.{ext}"'})

    @app.post("/api/sessions/{sid}/upload-image")
    async def upload_image(sid: str) -> Response:
        # Hook for real photos: needs GAN inversion (dragkit.invert), which
        # does not exist yet.  Refuse clearly instead of pretending.
        return err(501, "editing your own photo needs GAN inversion, which dragkit does not have yet")

    @app.websocket("/ws")
    async def websocket(ws: WebSocket) -> None:
        await ws.accept()
        if server.pending >= limits.max_pending:  # connections that have not said hello are bounded too
            await ws.close(code=1013, reason="too many connections waiting to say hello")
            return
        conn = Connection(ws, server)
        server.pending += 1
        try:
            await conn.serve()
        finally:
            if not conn.said_hello:
                server.pending -= 1

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(GuardMiddleware, token=token, allowed_hosts=allowed_hosts)
    return app
