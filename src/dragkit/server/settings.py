"""What one server accepts: :class:`Limits`, the one settings class.

``dragkit serve`` takes its flags and their defaults from here
(:func:`add_cli_flags`, :func:`limits_from_args`), the app enforces them,
and the browser gets them in ``welcome``.  Hitting a limit gives a clear
error frame (code ``limit``).
"""
from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..drag.options import MAX_POINTS, MAX_STEPS
from ..errors import DragkitError

__all__ = ["Limits", "add_cli_flags", "limits_from_args"]


def _flag(help: str) -> dict[str, Any]:
    return {"cli": help}


@dataclass(frozen=True)
class Limits:
    """What one server accepts (fields with a ``cli`` help text are ``dragkit serve`` flags).

    Raises:
        DragkitError: a value out of its range (``max_points`` above the
            engine's :data:`~dragkit.drag.options.MAX_POINTS`, ...).
    """

    max_points: int = field(default=32, metadata=_flag("point pairs per image"))
    max_steps: int = field(default=2000, metadata=_flag("largest step cap a user may set"))
    default_max_steps: int = 300  # a new tab's step cap (at most max_steps)
    max_upload_bytes: int = 8 * 1024 * 1024  # a session file opened from disk
    max_sessions: int = field(default=16, metadata=_flag("editor tabs open at once"))
    history: int = 100  # undo levels per tab
    max_video_frames: int = 600
    max_video_bytes: int = 128 * 1024 * 1024  # frames kept per tab for its progress video, at most
    max_fps: float = 30.0  # frames per second sent to one tab, at most
    max_pending: int = 8  # websockets connected but not yet past "hello"
    hello_timeout: float = 10.0  # seconds a new websocket has to say hello
    max_saved: int = 256  # tabs kept on disk (least recently saved go first)
    max_photo_bytes: int = 32 * 1024 * 1024  # a photo uploaded for inversion
    max_invert_steps: int = 1000  # optimisation steps of one inversion phase (W, W+, PTI) a request may ask for
    max_photos: int = 8  # inverted photos kept per tab (their files; the oldest unused go first)
    keep_days: float = field(default=30.0, metadata=_flag(
        "delete saved edits untouched for this many days, at start and hourly (0 keeps all)"))

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            whole = isinstance(f.default, int)
            if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)):
                raise DragkitError(f"{_name(f.name)} must be a {'whole ' if whole else ''}number, got {value!r:.40}")
            if whole and value < 1:
                raise DragkitError(f"{_name(f.name)} must be at least 1")
            if not whole and (value < 0 or value == 0 and f.name != "keep_days"):
                raise DragkitError(f"{_name(f.name)} must be {'>= 0' if f.name == 'keep_days' else 'positive'}")
        if self.max_points > MAX_POINTS:
            raise DragkitError(f"{_name('max_points')} must be at most {MAX_POINTS} (the engine's limit)")
        if self.max_steps > MAX_STEPS:
            raise DragkitError(f"{_name('max_steps')} must be at most {MAX_STEPS} (the engine's limit)")
        object.__setattr__(self, "default_max_steps", min(self.default_max_steps, self.max_steps))

    @property
    def max_message_chars(self) -> int:
        """Largest websocket message: a session file upload in JSON, with room for the rest."""
        return self.max_upload_bytes * 4 // 3 + 65536

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-") if field_name in _CLI else field_name


_CLI = {f.name for f in fields(Limits) if "cli" in f.metadata}


def add_cli_flags(parser: argparse.ArgumentParser) -> None:
    """``--max-points``, ``--max-steps``, ... with :class:`Limits`' defaults and help."""
    defaults = Limits()
    for f in fields(Limits):
        if "cli" in f.metadata:
            default = getattr(defaults, f.name)
            parser.add_argument(_name(f.name), type=type(default), default=default,
                                help=f"{f.metadata['cli']} (default {default:g})")


def limits_from_args(args: argparse.Namespace) -> Limits:
    """The :class:`Limits` the flags of :func:`add_cli_flags` ask for (validated)."""
    return Limits(**{name: getattr(args, name) for name in _CLI})
