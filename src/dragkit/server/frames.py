"""The server's side of the websocket protocol: the frames it sends.

Every frame is a JSON object with a ``type``; the answer to a client message
carries ``re`` (the message's ``id``).  Drag results come from the engine
as they are (:meth:`dragkit.drag.session.StepResult.to_json`): distances,
per-point ``arrived`` and the resolved ``stop_distance`` are the engine's,
so the page never re-derives its stop rule.  ``docs/app.md`` lists every
field.
"""
from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from .engine import mask_to_png
from .photos import inverting_info, photo_info

if TYPE_CHECKING:
    from ..drag.session import StepResult
    from .sessions import Tab

__all__ = ["DONE_REASONS", "ERROR_CODES", "data_url", "error_frame", "state_frame", "started_frame",
           "progress_frame", "done_frame"]

#: Why a drag ended: every handle arrived, the step cap, the user's Stop, a failure.
DONE_REASONS = ("reached", "max_steps", "stopped", "error")
#: ``error`` frame codes: a malformed message, a refused action, a server limit,
#: no ``hello`` yet, a bug (the server log has it).
ERROR_CODES = ("bad_request", "rejected", "limit", "no_session", "internal")


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _re(frame: dict[str, Any], re: Any) -> dict[str, Any]:
    if re is not None:
        frame["re"] = re
    return frame


def error_frame(message: str, code: str = "bad_request", re: Any = None) -> dict[str, Any]:
    assert code in ERROR_CODES, code
    return _re({"type": "error", "code": code, "message": message}, re)


def state_frame(tab: "Tab", with_image: bool, re: Any = None) -> dict[str, Any]:
    """The tab's full state (compute thread); the image only ``with_image``.

    Besides the edit (model, seed, options, points, mask, history flags) it
    carries the engine's view of the points - ``distances``, ``arrived``,
    ``stop_distance`` - and ``option_limits``, the bounds of each option for
    this model.
    """
    edit = tab.edit
    msg: dict[str, Any] = {
        "type": "state",
        "session": tab.sid,
        "model": None, "resolution": None, "width": None, "height": None, "num_ws": None, "seed": None, "psi": None,
        "options": {}, "options_resolved": {}, "option_limits": {},
        "max_steps": tab.max_steps,
        "points": [], "distances": [], "arrived": [], "stop_distance": None,
        "mask": None, "handles_outside_mask": [],
        "can_undo": bool(tab.undo_stack),
        "can_redo": bool(tab.redo_stack),
        "running": tab.running,
        "image_rev": tab.image_rev,
        "has_video": bool(tab.video_frames),
        "last_steps": tab.last_steps,
        "photo": None, "inverting": None,
    }
    msg["inverting"] = inverting_info(tab)
    if edit is not None:
        status = edit.status().to_json()
        png = mask_to_png(edit.mask())
        msg.update(
            model=edit.base_model, photo=photo_info(tab), resolution=edit.resolution, height=edit.image_size[0], width=edit.image_size[1],
            num_ws=edit.num_ws, seed=edit.seed, psi=edit.psi,
            options=edit.options(), options_resolved=edit.resolved_options(), option_limits=edit.option_limits(),
            points=edit.points(), distances=status["distances"], arrived=status["arrived"],
            stop_distance=status["stop_distance"], mask=data_url(png) if png else None,
            handles_outside_mask=edit.handles_outside_mask(),
        )
        if with_image:
            msg["image"] = data_url(tab.image_png)
    return _re(msg, re)


def started_frame(re: Any, max_steps: int, points: list[dict[str, Any]]) -> dict[str, Any]:
    return _re({"type": "started", "max_steps": max_steps, "points": points}, re)


def progress_frame(result: "StepResult", image_png: bytes, elapsed: float) -> dict[str, Any]:
    """A live ``frame``: the step's result (points tracked before its update) and the image after it."""
    r = result.to_json()
    return {"type": "frame", "step": r["step"], "points": r["points"], "targets": r["targets"],
            "distances": r["distances"], "arrived": r["arrived"], "stop_distance": r["stop_distance"],
            "image": data_url(image_png), "elapsed": round(elapsed, 4)}


def done_frame(re: Any, reason: str, steps: int, seconds: float, result: "StepResult | None",
               error: str | None = None) -> dict[str, Any]:
    """The end of a drag: why, how long, and the final result (handles tracked on the final image)."""
    assert reason in DONE_REASONS, reason
    r = result.to_json() if result is not None else None
    frame: dict[str, Any] = {
        "type": "done",
        "reason": reason,
        "steps": steps,
        "seconds": round(seconds, 3),
        "seconds_per_step": round(seconds / steps, 4) if steps else None,
        "points": r["points"] if r else None,
        "distances": r["distances"] if r else None,
        "arrived": r["arrived"] if r else None,
        "stop_distance": r["stop_distance"] if r else None,
        "reached": r["reached"] if r else False,
    }
    if error:
        frame["error"] = error
    return _re(frame, re)
