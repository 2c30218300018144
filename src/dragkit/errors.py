"""Exceptions that the CLI and the server turn into one clear message."""
from __future__ import annotations

import json
from typing import Any


class DragkitError(Exception):
    """Base class for user-facing errors (bad input, bad file, bad spec).

    The CLI prints ``str(err)`` on one line of stderr and exits non-zero;
    no traceback unless ``--debug``.
    """


class CheckpointError(DragkitError):
    """A checkpoint is missing, corrupt, hostile or does not fit the network."""


class SpecError(DragkitError):
    """An edit spec, point, mask or option is malformed."""


class ModelNotFoundError(DragkitError):
    """A model name is neither bundled, cached, nor an existing path."""


class ImageError(SpecError):
    """An image (mask, photo) is unreadable, too large, or not the size it must be."""


def show_value(value: Any, width: int = 60) -> str:
    """A value as an error message quotes it: JSON (else ``repr``), cut to ``width`` characters."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."
