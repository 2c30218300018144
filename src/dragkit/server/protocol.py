"""The websocket protocol: one pydantic model per client message.

Every client message is a JSON object with a ``type`` (one of
:data:`MESSAGE_TYPES`) and an optional ``id`` that the answer carries back as
``re``.  :func:`parse_message` reads a text frame into one of the models
below (a discriminated union on ``type``), or raises :class:`ProtocolError`
with one line for the user naming the field at fault: the schema is the
protocol, and a handler only ever sees a well-formed message.

What the models check is what a message *is* (types, shapes, static
ranges); what depends on the tab - a point inside this model's image, an
option within this model's bounds, the server's own limits - is checked
by the engine (:mod:`dragkit.drag.options`, :mod:`dragkit.drag.points`)
and by :class:`~.settings.Limits` when the message is handled.  Points are
the engine's :data:`~dragkit.drag.points.XY`.  Server-to-client frames
are built by :mod:`.frames`.  ``docs/app.md`` lists both directions.
"""
from __future__ import annotations

import json
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from ..drag.options import MAX_POINTS
from ..drag.points import XY
from ..drag.options import PSI_RANGE as _PSI_RANGE
from ..drag.options import check_psi as _check_psi
from ..drag.options import check_seed as _check_seed
from ..errors import DragkitError, show_value

__all__ = [
    "ProtocolError",
    "LimitError",
    "MESSAGE_TYPES",
    "MESSAGES",
    "Message",
    "parse_message",
    "decode",
    "validate",
    "message_id",
    "explain",
    "PSI_RANGE",
]

#: Truncation psi a browser may ask for: the engine's range (one rule, drag.options).
PSI_RANGE = _PSI_RANGE


class ProtocolError(DragkitError):
    """A websocket message that does not follow the protocol (error code ``bad_request``)."""


class LimitError(DragkitError):
    """A request beyond one of the server's :class:`~.settings.Limits` (error code ``limit``)."""


ModelName = Annotated[str, Field(min_length=1, max_length=256)]
def _engine_rule(check: Any, what: str) -> Any:
    """A pydantic validator that is the engine's rule (``drag.options.check_seed``/``check_psi``),
    so the page gets the library's and the CLI's wording ("seed must be a whole number between ...")."""
    def validate(v: Any) -> Any:
        try:
            return check(v, what)
        except DragkitError as exc:
            raise ValueError(str(exc)[len(what) + 1:]) from None
    return BeforeValidator(validate)


Psi = Annotated[float, _engine_rule(_check_psi, "psi")]
Seed = Annotated[int, _engine_rule(_check_seed, "seed")]
Index = Annotated[int, Field(ge=0, le=MAX_POINTS - 1)]
MaxSteps = int  # bounded by the server's Limits.max_steps when handled (one rule: drag.options.check_steps)


class _Msg(BaseModel):
    """Fields every message has; unknown fields are refused, types are exact."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    id: Any = None

    @field_validator("id")
    @classmethod
    def _id(cls, v: Any) -> Any:
        if v is None or message_id({"id": v}) is not None and len(str(v)) <= 100:
            return v
        raise ValueError("must be a number or a string of at most 100 characters")


class Hello(_Msg):
    """The first message of a connection: resume tab ``session`` if it exists, else start one."""

    type: Literal["hello"]
    session: Optional[Annotated[str, Field(max_length=100)]] = None
    model: Optional[ModelName] = None
    seed: Seed = 0
    psi: Psi = 0.7


class Ping(_Msg):
    type: Literal["ping"]


class New(_Msg):
    """A new image: this model, seed and psi (each defaulting to the tab's current one)."""

    type: Literal["new"]
    model: Optional[ModelName] = None
    seed: Optional[Seed] = None
    psi: Optional[Psi] = None


class Options(_Msg):
    """Change drag options (``DragOptions`` names; null = the model's default) and/or the step cap."""

    type: Literal["options"]
    options: Annotated[dict[Annotated[str, Field(max_length=40)], Any], Field(max_length=32)] = {}
    max_steps: Optional[MaxSteps] = None


class AddPoint(_Msg):
    type: Literal["add_point"]
    handle: XY
    target: XY


class MovePoint(_Msg):
    type: Literal["move_point"]
    index: Index
    handle: Optional[XY] = None
    target: Optional[XY] = None

    @model_validator(mode="after")
    def _moves_something(self) -> "MovePoint":
        if self.handle is None and self.target is None:
            raise ValueError("move_point needs a handle or a target")
        return self


class RemovePoint(_Msg):
    type: Literal["remove_point"]
    index: Index


class ClearPoints(_Msg):
    type: Literal["clear_points"]


class SetMask(_Msg):
    """The flexible region: a base64 PNG (or a ``data:`` URL of one), white = flexible; null clears it."""

    type: Literal["set_mask"]
    mask: Optional[str]


class Start(_Msg):
    type: Literal["start"]
    max_steps: Optional[MaxSteps] = None


class Stop(_Msg):
    type: Literal["stop"]


class Ack(_Msg):
    """Flow control: the page drew a frame."""

    type: Literal["ack"]


class Undo(_Msg):
    type: Literal["undo"]


class Redo(_Msg):
    type: Literal["redo"]


class Open(_Msg):
    """Open a session file (its text); ``model`` overrides the one it names."""

    type: Literal["open"]
    data: str
    model: Optional[ModelName] = None


class CancelInvert(_Msg):
    """Stop the photo inversion running in this tab (before its next step; the open edit stays)."""

    type: Literal["cancel_invert"]


class State(_Msg):
    """Ask for the tab's whole state, image included."""

    type: Literal["state"]


#: Every client message model, in the order of docs/app.md's table.
MESSAGES: tuple[type[_Msg], ...] = (
    Hello, New, AddPoint, MovePoint, RemovePoint, ClearPoints, SetMask, Options, Start, Stop, Ack, Undo, Redo,
    Open, CancelInvert, State, Ping,
)
MESSAGE_TYPES: tuple[str, ...] = tuple(m.model_fields["type"].annotation.__args__[0] for m in MESSAGES)
Message = Annotated[Union[MESSAGES], Field(discriminator="type")]  # type: ignore[valid-type]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(Message)


def decode(text: str, max_chars: int) -> dict[str, Any]:
    """A text frame -> the JSON object it holds (not yet validated).

    Raises:
        LimitError: the text is longer than ``max_chars``.
        ProtocolError: not JSON, or not an object with a string ``type``.
    """
    if len(text) > max_chars:
        raise LimitError(f"message too large ({len(text)} characters; limit {max_chars})")
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError("message is not valid JSON") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        raise ProtocolError('message must be a JSON object with a "type"')
    return raw


def message_id(raw: dict[str, Any]) -> int | str | None:
    """The ``id`` an answer to ``raw`` carries as ``re`` (None unless a number or a string)."""
    i = raw.get("id")
    return i if isinstance(i, (int, str)) and not isinstance(i, bool) else None


def validate(raw: dict[str, Any]) -> Any:
    """A decoded message -> its model (one of :data:`MESSAGES`).

    Raises:
        ProtocolError: an unknown ``type`` or a field that does not fit its
            schema; one line naming the field (:func:`explain`).
    """
    try:
        return _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        raise ProtocolError(explain(exc, raw["type"])) from None


def parse_message(text: str, max_chars: int) -> Any:
    """:func:`decode` then :func:`validate`."""
    return validate(decode(text, max_chars))


def explain(exc: ValidationError, kind: str) -> str:
    """One line for the user from a message's validation errors (the first one, or every unknown field)."""
    errors = exc.errors(include_url=False)
    if errors and errors[0]["type"] == "union_tag_invalid":
        return f"unknown message type {kind[:40]!r}; known: {', '.join(sorted(MESSAGE_TYPES))}"
    errors = [{**e, "loc": tuple(e["loc"])[1:]} for e in errors]  # drop the union's tag
    extra = sorted(str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden" and e["loc"])
    if extra:
        return f"message {kind!r} has unknown field(s): {', '.join(extra)[:200]}"
    e = errors[0]
    where = ".".join(str(p) for p in e["loc"])
    got = show_value(e.get("input"), 40)
    t = e["type"]
    if t == "missing":
        return f"message {kind!r} needs {where!r}"
    if t == "value_error":
        text = str(e.get("ctx", {}).get("error", e["msg"]))
        return f"{where} {text}" if where else text
    if t.startswith("int_"):
        return f"{where} must be a whole number, got {got}"
    if t.startswith("float_") or t == "finite_number":
        return f"{where} must be a finite number, got {got}"
    if t.startswith("string_type"):
        return f"{where} must be a string, got {got}"
    if t == "dict_type":
        return f"{where} must be an object, got {got}"
    bounds = {"greater_than_equal": ("at least", "ge"), "less_than_equal": ("at most", "le")}
    if t in bounds:
        word, key = bounds[t]
        return f"{where} must be {word} {e['ctx'][key]}, got {got}"
    if t in ("string_too_long", "too_long"):
        return f"{where} is too long, got {got}"
    return f"{where or 'message'}: {e['msg']} (got {got})"
