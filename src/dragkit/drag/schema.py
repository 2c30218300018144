"""The session file's schema: every field of a saved :class:`~.session.DragSession`, typed and bounded.

A session file (``*.dragkit.json``) may come from anyone - a download, a
colleague, a web page's upload - so :meth:`DragSession.set_state` reads it
only through :func:`parse_session_state`: unknown keys are refused, every
number has a type and a range, every list a length, every string a size,
before anything is decoded.  What depends on the model (latent shape, mask
size, points inside the image) is checked by the session right after.

The web app's own session store (:mod:`dragkit.server.schema`) builds on
these models.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from ..errors import DragkitError
from .options import MAX_POINTS, MAX_SEED, PSI_RANGE, check_psi
from .points import XY

__all__ = [
    "SESSION_FORMAT",
    "SESSION_VERSION",
    "MAX_SESSION_BYTES",
    "MAX_HISTORY",
    "EncodedTensor",
    "EncodedMask",
    "PointRecord",
    "Snapshot",
    "SessionState",
    "Psi",
    "parse_session_state",
    "validation_message",
]

SESSION_FORMAT = "dragkit-session"
SESSION_VERSION = 1
#: Largest session file read, bytes.
MAX_SESSION_BYTES = 64 * 1024 * 1024
#: Most undo (and most redo) entries a session file may hold.
MAX_HISTORY = 1000
#: Largest base64 text of one encoded latent (64 codes x 8192 values of float32, plus slack).
MAX_TENSOR_CHARS = 4 * 64 * 8192 * 4 // 3 + 64
#: Largest base64 text of one packed mask (4096 x 4096 bits).
MAX_MASK_CHARS = 4096 * 4096 // 8 * 4 // 3 + 64

_Finite = Annotated[float, Field(allow_inf_nan=False)]
#: A seed as the generators take it.
Seed = Annotated[int, Field(strict=True, ge=0, le=MAX_SEED)]


def _check_psi(value: Any) -> float:
    try:
        return check_psi(value)
    except DragkitError:
        raise ValueError(f"must be a number between {PSI_RANGE[0]:g} and {PSI_RANGE[1]:g}") from None


#: A truncation psi: the one rule of the library, the CLI and the app (:func:`~.options.check_psi`).
Psi = Annotated[float, BeforeValidator(_check_psi)]


class Strict(BaseModel):
    """Base of every schema model here: exact types, no unknown keys, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class EncodedTensor(Strict):
    """A float32 tensor as base64 little-endian bytes."""

    shape: Annotated[list[Annotated[int, Field(strict=True, ge=1, le=8192)]], Field(min_length=1, max_length=4)]
    dtype: Literal["float32"] = "float32"
    data: Annotated[str, Field(max_length=MAX_TENSOR_CHARS)]


class EncodedMask(Strict):
    """An ``H x W`` bool mask as base64 ``numpy.packbits``."""

    shape: Annotated[list[Annotated[int, Field(strict=True, ge=1, le=4096)]], Field(min_length=2, max_length=2)]
    packbits: Annotated[str, Field(max_length=MAX_MASK_CHARS)]


class PointRecord(Strict):
    """A handle and its target, ``[x, y]`` pixels (``origin``: the handle when the drag began)."""

    handle: XY
    target: XY
    origin: Optional[XY] = None


class ModelInfo(Strict):
    """The generator a session was made for."""

    name: Optional[Annotated[str, Field(max_length=256)]] = None
    img_resolution: Annotated[int, Field(strict=True, ge=1, le=4096)]
    #: the image width (``img_resolution // 2`` for StyleGAN-Human); absent in files written before
    #: non-square models, which are square
    img_width: Optional[Annotated[int, Field(strict=True, ge=1, le=4096)]] = None
    num_ws: Annotated[int, Field(strict=True, ge=1, le=64)]
    w_dim: Annotated[int, Field(strict=True, ge=1, le=8192)]


Points = Annotated[list[PointRecord], Field(max_length=MAX_POINTS)]


class Snapshot(Strict):
    """What one history entry restores: latent, points, mask."""

    latent: EncodedTensor
    points: Points = []
    mask: Optional[EncodedMask] = None


class HistoryEntry(Strict):
    before: Snapshot
    after: Snapshot


class History(Strict):
    undo: Annotated[list[HistoryEntry], Field(max_length=MAX_HISTORY)] = []
    redo: Annotated[list[HistoryEntry], Field(max_length=MAX_HISTORY)] = []


OptionValue = Union[None, bool, int, _Finite, Annotated[str, Field(max_length=16)]]


class SessionState(Strict):
    """A whole :meth:`DragSession.get_state` snapshot."""

    format: Literal["dragkit-session"]
    version: Annotated[int, Field(strict=True, ge=1, le=SESSION_VERSION)]
    model: ModelInfo
    seed: Optional[Seed] = None
    psi: Psi = 0.7
    latent: EncodedTensor
    w0: EncodedTensor
    points: Points = []
    mask: Optional[EncodedMask] = None
    options: Annotated[dict[Annotated[str, Field(max_length=32)], OptionValue], Field(max_length=32)] = {}
    history: Optional[History] = None
    #: an edit of a photo: the files beside the session (dragkit.invert.edit checks the details)
    inversion: Optional[Annotated[dict[Annotated[str, Field(max_length=32)], Any], Field(max_length=64)]] = None


def validation_message(exc: ValidationError) -> str:
    """The first problem of a pydantic error as one short line: ``where: what (got value)``."""
    err = exc.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in err.get("loc", ())) or "(top level)"
    msg = str(err.get("msg", "invalid"))
    msg = msg[len("Value error, "):] if msg.startswith("Value error, ") else msg  # a rule's own words
    value = repr(err.get("input"))
    if len(value) > 40:
        value = value[:37] + "..."
    return f"{loc}: {msg} (got {value})"


def parse_session_state(state: Any) -> SessionState:
    """Validate a decoded session file against :class:`SessionState`.

    Raises:
        DragkitError: ``not a dragkit-session state`` for other JSON, or
            ``malformed session state: <field>: <problem>`` naming the first
            bad field.  The message never echoes more than 40 characters
            of the offending value.
    """
    if not isinstance(state, dict) or state.get("format") != SESSION_FORMAT:
        raise DragkitError(f"not a {SESSION_FORMAT} state")
    version = state.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version > SESSION_VERSION:
        raise DragkitError(f"session version {version} is newer than this dragkit supports")
    try:
        return SessionState.model_validate(state)
    except ValidationError as exc:
        raise DragkitError(f"malformed session state: {validation_message(exc)}") from None
