"""The web app's saved tabs (``ROOT/SID/session.json``), as a schema.

:class:`SessionStore` writes these files itself, but the folder may be
tampered with (another local user before it was private, a restored
backup, a bug), so it reads them back only through :func:`parse_app_session`:
every field is typed and bounded, and a blob reference must be exactly the
store's own id format (40 lowercase hex digits), never a path.  The engine
state inside each snapshot is then validated by
:func:`dragkit.drag.schema.parse_session_state` when the tab is rebuilt.

Built on the models of :mod:`dragkit.drag.schema`; the websocket protocol
will move onto models like these.
"""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Optional

from pydantic import Field, ValidationError

from ..drag.options import MAX_STEPS
from ..drag.schema import Psi, Seed, Strict, validation_message
from ..errors import DragkitError

__all__ = ["APP_FORMAT", "APP_VERSION", "BLOB_RE", "AppSnapshot", "AppSessionFile", "blob_id",
           "parse_app_session", "MAX_STORED_HISTORY"]

APP_FORMAT = "dragkit-app-session"
APP_VERSION = 1
#: The store's blob ids: the first 40 hex digits of a SHA-256.
BLOB_RE = re.compile(r"^[0-9a-f]{40}$")
#: Most undo (or redo) snapshots one saved tab may hold.
MAX_STORED_HISTORY = 1000
_SID = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{16,64}$")]
_MODEL = Annotated[str, Field(min_length=1, max_length=256)]


class AppSnapshot(Strict):
    """One picture of a tab: model name, seed, psi and the engine state (blobs not yet resolved)."""

    model: _MODEL
    seed: Optional[Seed] = None
    psi: Psi = 0.7
    engine: Annotated[dict[Annotated[str, Field(max_length=32)], Any], Field(max_length=32)]


class AppSessionFile(Strict):
    """``session.json`` of one saved tab."""

    format: Literal["dragkit-app-session"]
    version: Literal[1]
    sid: _SID
    saved_at: Annotated[float, Field(allow_inf_nan=False)] = 0.0
    options: Annotated[dict[Annotated[str, Field(max_length=32)], Any], Field(max_length=32)] = {}
    max_steps: Annotated[int, Field(strict=True, ge=1, le=MAX_STEPS)] = 300
    current: AppSnapshot
    undo: Annotated[list[AppSnapshot], Field(max_length=MAX_STORED_HISTORY)] = []
    redo: Annotated[list[AppSnapshot], Field(max_length=MAX_STORED_HISTORY)] = []


def blob_id(value: Any) -> str | None:
    """The id of a ``{"$blob": id}`` reference, None for any other value.

    Raises:
        DragkitError: a ``$blob`` reference that is not exactly the store's id
            format (a path, ``..``, extra keys).
    """
    if isinstance(value, dict) and "$blob" in value:
        ref = value.get("$blob")
        if set(value) != {"$blob"} or not isinstance(ref, str) or not BLOB_RE.match(ref):
            raise DragkitError("saved session is damaged (malformed blob reference)")
        return ref
    return None


def parse_app_session(doc: Any, sid: str) -> AppSessionFile:
    """Validate a decoded ``session.json`` for tab ``sid``.

    Raises:
        DragkitError: one line naming the first bad field; never echoes
            paths or more than 40 characters of a value.
    """
    if not isinstance(doc, dict) or doc.get("format") != APP_FORMAT:
        raise DragkitError("saved session is not a dragkit app session")
    try:
        parsed = AppSessionFile.model_validate(doc)
    except ValidationError as exc:
        raise DragkitError(f"saved session is damaged ({validation_message(exc)})") from None
    if parsed.sid != sid:
        raise DragkitError("saved session is damaged (it belongs to another tab)")
    for snap in [parsed.current, *parsed.undo, *parsed.redo]:
        for value in snap.engine.values():
            blob_id(value)
    return parsed
