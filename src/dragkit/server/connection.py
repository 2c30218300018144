"""One browser tab's websocket: read, validate, dispatch, answer.

A text frame is decoded and validated by :mod:`.protocol` (one schema per
message type), then handed to its handler in :data:`.handlers.HANDLERS`.
Whatever goes wrong becomes one ``error`` frame (:mod:`.frames`) and the
tab keeps working: :class:`~.protocol.ProtocolError` is ``bad_request``,
:class:`~.protocol.LimitError` ``limit``, any other
:class:`~dragkit.errors.DragkitError` (the engine refusing an action)
``rejected``, and anything else ``internal`` (logged).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Callable

from fastapi import WebSocket, WebSocketDisconnect

from ..errors import DragkitError
from . import frames
from .protocol import LimitError, ProtocolError, decode, message_id, validate
from .server import Server
from .sessions import Tab

__all__ = ["Connection"]

log = logging.getLogger("dragkit.server")


class Connection:
    """One browser tab's websocket (``self.tab`` is None until ``hello``)."""

    def __init__(self, ws: WebSocket, server: Server) -> None:
        self.ws = ws
        self.server = server
        self.limits = server.limits
        self.tab: Tab | None = None
        self.loop = asyncio.get_running_loop()
        self.outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.sent_rev = -1  # the image revision this connection last got
        self.last_frame_at = 0.0
        self.said_hello = False  # counted in server.pending until then

    # -- sending -------------------------------------------------------------
    def post(self, msg: dict[str, Any]) -> None:
        """Queue a frame for the browser; callable from any thread."""
        try:
            self.loop.call_soon_threadsafe(self.outbox.put_nowait, msg)
        except RuntimeError:  # loop closed: the tab is gone
            pass

    def send(self, msg: dict[str, Any]) -> None:
        """Queue a frame (event loop only)."""
        self.outbox.put_nowait(msg)

    def error(self, message: str, code: str = "bad_request", re: Any = None) -> None:
        self.send(frames.error_frame(message, code, re))

    async def _sender(self) -> None:
        while True:
            msg = await self.outbox.get()
            if msg is None:
                return
            await self.ws.send_text(json.dumps(msg, separators=(",", ":")))

    # -- receiving -----------------------------------------------------------
    async def serve(self) -> None:
        """Read messages until the socket closes (a connection that never says hello is closed)."""
        sender = asyncio.create_task(self._sender())
        try:
            while True:
                try:
                    if self.tab is None:
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
            self.send(None)  # type: ignore[arg-type]
            try:
                await asyncio.wait_for(sender, timeout=2)
            except (asyncio.TimeoutError, Exception):
                sender.cancel()

    async def handle_text(self, text: str) -> None:
        """One text frame: validate it, then run its handler; every failure is one error frame."""
        from .handlers import HANDLERS

        re = None
        try:
            raw = decode(text, self.limits.max_message_chars)
            re = message_id(raw)
            msg = validate(raw)
            if self.tab is None and msg.type not in ("hello", "ping"):
                self.error('send "hello" first', code="no_session", re=re)
                return
            await HANDLERS[msg.type](self, msg)
        except ProtocolError as exc:
            self.error(str(exc), re=re)
        except LimitError as exc:
            self.error(str(exc), code="limit", re=re)
        except DragkitError as exc:
            self.error(str(exc), code="rejected", re=re)
        except Exception as exc:  # keep the tab alive whatever went wrong
            log.exception("error handling a message")
            self.error(f"internal error ({exc.__class__.__name__}); the server log has the details",
                       code="internal", re=re)

    def attach(self, tab: Tab) -> None:
        """Make ``tab`` this connection's (after hello)."""
        tab.conn = self
        tab.stop.clear()
        tab.last_used = time.monotonic()
        self.tab = tab
        self.server.live += 1
        self.said_hello = True
        self.server.pending -= 1

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

    # -- state ---------------------------------------------------------------
    def state(self, re: Any = None, tab: Tab | None = None, resend_image: bool = False) -> dict[str, Any]:
        """The tab's ``state`` frame (compute thread); the image only when this connection
        has not had its current revision (or ``resend_image``)."""
        tab = tab or self.tab
        assert tab is not None
        if tab.edit is not None and tab.image_png is None:
            tab.refresh_image()
        with_image = tab.edit is not None and (resend_image or tab.image_rev != self.sent_rev)
        if with_image:
            self.sent_rev = tab.image_rev
        return frames.state_frame(tab, with_image, re)

    async def reply_state(self, re: Any, resend_image: bool = False) -> None:
        tab = self.tab
        assert tab is not None
        self.send(await self.server.run(tab.sid, lambda: self.state(re, resend_image=resend_image)))

    async def action(self, re: Any, fn: Callable[[Tab], None], *, undoable: bool = True, image: bool = False) -> None:
        """Run a mutating action on the compute thread, record it in the tab's history, save, reply with state.

        Args:
            fn: the change, given the tab (compute thread).
            undoable: snapshot the edit first and push it on the undo stack.
            image: the latent changes: re-render the cached image.
        """
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
            return self.state(re)

        self.send(await self.server.run(tab.sid, work))
