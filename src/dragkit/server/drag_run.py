"""A drag in progress: one compute-queue turn = one optimisation step.

:func:`start_drag` queues a :class:`DragRun` as a loop job on the shared
compute thread (:mod:`.compute`), so tabs dragging at once take turns step
by step.  The run sends ``started``, live ``frame``s (flow-controlled: at
most two unacknowledged, at most ``max_fps`` per second, spaced by twice
their render time) and ``done``, then the tab's state.  The drag ends at
the engine's stop rule (``reached``), the step cap (``max_steps``), the
user's Stop or a closed tab (``stopped``), or a failure (``error``); it
is then one undo level of the tab.
"""
from __future__ import annotations

import io
import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DragkitError
from . import frames

if TYPE_CHECKING:
    from ..drag.session import StepResult
    from .connection import Connection
    from .sessions import Tab

__all__ = ["DragRun", "start_drag"]

log = logging.getLogger("dragkit.server")


def start_drag(conn: "Connection", tab: "Tab", max_steps: int, re: Any) -> None:
    """Mark ``tab`` running and queue its drag (the caller checked the engine's bounds)."""
    if tab.running:
        raise DragkitError("a drag is already running")
    tab.running = True
    tab.stop.clear()
    with tab.credit_lock:
        tab.credits = 2
    run = DragRun(conn, tab, max_steps, re)
    fut = conn.server.compute.submit_loop(tab.sid, run)
    fut.add_done_callback(run.on_future_done)


class DragRun:
    """The state of one drag; each call is one step (compute thread)."""

    def __init__(self, conn: "Connection", tab: "Tab", max_steps: int, re: Any) -> None:
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
        """One step; returns the reason once the drag is over (None: call again)."""
        tab = self.tab
        edit = tab.edit
        assert edit is not None
        if self.before is None:
            self.before = edit.snapshot()
            self.frames = [np.asarray(edit.image().convert("RGB"))]
            self.t0 = time.perf_counter()
            self._post(frames.started_frame(self.re, self.max_steps, edit.points()))
        if tab.stop.is_set():
            return self.finish("stopped")
        result = edit.step()
        self.n += 1
        self._maybe_frame(result)
        if result.done:  # the engine's stop rule: every handle arrived
            return self.finish("reached")
        if self.n >= self.max_steps:
            return self.finish("max_steps")
        return None

    def _maybe_frame(self, result: "StepResult") -> None:
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
        self._post(frames.progress_frame(result, buf.getvalue(), time.perf_counter() - self.t0))

    def finish(self, reason: str, error: str | None = None) -> str:
        """End the drag (handles tracked on the final image), record it, save, report."""
        tab = self.tab
        self.finished = True
        result = None
        try:
            if self.before is not None:
                try:
                    result = tab.edit.finish()
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
        self._post(frames.done_frame(self.re, reason, self.n, time.perf_counter() - self.t0, result, error))
        conn = tab.conn
        if conn is not None:
            conn.post(conn.state(tab=tab))
        return reason

    def on_future_done(self, fut: Any) -> None:
        """Runs on the compute thread. A step that raised: report it, keep the tab."""
        if fut.cancelled() or self.finished:
            self.tab.running = False
            return
        exc = fut.exception()
        if exc is not None:
            log.error("drag step failed", exc_info=exc)
            text = str(exc) if isinstance(exc, DragkitError) else f"{exc.__class__.__name__}; see the server log"
            self._post(frames.error_frame(f"the drag failed: {text}", "internal", self.re))
            try:
                self.finish("error", error=text)
            except Exception:
                self.tab.running = False
