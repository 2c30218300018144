"""``[x, y]`` points: the one parser and the one inside-the-image check.

Every way a point enters dragkit goes through :func:`parse_xy` - the
Python session, the edit spec, session files (:data:`XY` in their schema)
and the web app's messages (the same :data:`XY` in
:mod:`dragkit.server.protocol`) - and every check against an image goes
through :func:`check_inside`.  Coordinates are pixels of the generator's
output image, x to the right, y down, pixel centres at integers.
"""
from __future__ import annotations

import math
from typing import Annotated, Any

import numpy as np
from pydantic import PlainSerializer, PlainValidator

from ..errors import SpecError, show_value

__all__ = ["parse_xy", "check_inside", "XY"]


def parse_xy(value: Any, what: str = "point") -> tuple[float, float]:
    """``value`` as an ``(x, y)`` pair of floats, pixels.

    Accepts any sequence of two real numbers (a list, a tuple, a NumPy
    array; JSON gives lists); not strings, booleans or other shapes.

    Raises:
        SpecError: ``"<what> must be [x, y] ..."`` naming the value (at most
            60 characters of it); a NaN or infinite coordinate is refused
            the same way ("... two finite numbers").
    """
    try:
        if isinstance(value, (str, bytes, dict)):
            raise TypeError
        vals = list(value)
        if len(vals) != 2 or any(isinstance(v, (bool, np.bool_, str, bytes)) for v in vals):
            raise TypeError
        x, y = float(vals[0]), float(vals[1])
    except (TypeError, ValueError):
        raise SpecError(f"{what} must be [x, y] in pixels (two finite numbers), got {show_value(value)}") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise SpecError(f"{what} must be [x, y] in pixels (two finite numbers), got {show_value(value)}")
    return x, y


def check_inside(xy: tuple[float, float], width: int, height: int, what: str = "point") -> None:
    """Raise :class:`SpecError` unless ``0 <= x <= width - 1`` and ``0 <= y <= height - 1``."""
    x, y = xy
    if not (0 <= x <= width - 1 and 0 <= y <= height - 1):
        raise SpecError(f"{what} [{x:g}, {y:g}] lies outside the {width}x{height} (width x height) image "
                        f"(x 0..{width - 1}, y 0..{height - 1})")


def _validate(value: Any) -> tuple[float, float]:
    try:
        return parse_xy(value)
    except SpecError as exc:  # pydantic reports ValueErrors with their location
        raise ValueError(str(exc).replace("point must be", "must be", 1)) from None


#: A pydantic field type for ``[x, y]`` (validated by :func:`parse_xy`; dumped as a list).
XY = Annotated[tuple[float, float], PlainValidator(_validate), PlainSerializer(list, return_type=list)]
