"""Exceptions that the CLI and the server turn into one clear message."""
from __future__ import annotations


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
