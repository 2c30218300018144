"""Variants of the drag settings compared side by side in one report.

A variant is a label, an engine (``dragkit`` or the ``authors`` loop
baseline) and a set of :class:`~dragkit.drag.session.DragOptions`.  They come
from named presets (``--variants``), from one-at-a-time sweeps around a base
(``--sweep key=v1,v2``, as the old ``benchmarks/tune_toy.py`` did), times the
engines (``--engine dragkit,authors``).

Presets, for a model of ``H`` px (``ALGORITHM.md``, *Constants*):

* ``default`` - dragkit's defaults (``DragOptions()``, resolved per model).
* ``paper`` - the paper's constants, its radii defined at 512 px and scaled
  to ``H``: ``r1 = 3 H / 512``, ``r2 = max(1, round(12 H / 512))``,
  ``lambda_mask = 20``, ``lr = 2e-3``, L1 tracking, W+ with 6 codes, the
  paper's stop rule (1 px for up to 5 points, 2 px above).
* ``authors-code`` - the constants of the authors' code: ``r1 =
  round(3 H / 512)``, ``r2 = round(12 H / 512)`` (both at least 1 px here:
  below 171 px the authors' ``round`` gives 0 and their loop has no motion
  term at all, or a 0-px search), ``lambda_mask = 20``, ``lr = 1e-3``, L2
  tracking, stop distance ``max(2, 2 H / 512)``.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable

from ..drag.options import OPTION_RANGES
from ..drag.session import DragOptions
from ..errors import SpecError
from .engines import ENGINES

__all__ = ["Variant", "PRESETS", "build_variants", "parse_assignments", "parse_value"]


def _paper(H: int) -> dict[str, Any]:
    # below 0.5 px (a 85 px model or smaller) the disk is the handle pixel alone
    # at any radius; 0.5 is the smallest radius the engine accepts
    return dict(r1=max(0.5, 3.0 * H / 512), r2=max(1, round(12 * H / 512)), lambda_mask=20.0, lr=0.002, tracking="l1",
                space="w+", layers=6, stop_distance=None, feature_block=None)


def _authors_code(H: int) -> dict[str, Any]:
    return dict(r1=float(max(1, round(3 * H / 512))), r2=max(1, round(12 * H / 512)), lambda_mask=20.0, lr=0.001,
                tracking="l2", space="w+", layers=6, stop_distance=max(2.0, 2.0 * H / 512), feature_block=None)


PRESETS: dict[str, Callable[[int], dict[str, Any]]] = {
    "default": lambda H: {},
    "paper": _paper,
    "authors-code": _authors_code,
}

_FIELDS = {f.name: f for f in fields(DragOptions)}
_DEFAULTS = DragOptions()


@dataclass(frozen=True)
class Variant:
    """One column of a report: a label, an engine and resolved drag options."""

    label: str
    engine: str
    options: dict[str, Any]  # DragOptions fields, resolved for the model

    def drag_options(self) -> DragOptions:
        return DragOptions(**self.options)

    def key(self) -> tuple:
        return (self.engine, tuple(sorted(self.options.items())))

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "engine": self.engine, "options": dict(self.options)}


def parse_value(key: str, text: str) -> Any:
    """A command-line value for option ``key`` (``none``/``auto`` = the default rule; a flag:
    ``true``/``false``, ``on``/``off``, ``1``/``0``); its kind comes from :data:`OPTION_RANGES`."""
    if key not in _FIELDS:
        raise SpecError(f"unknown drag option {key!r}; known: {', '.join(_FIELDS)}")
    t = text.strip()
    if t.lower() in ("none", "auto", "null", ""):
        return None
    spec = OPTION_RANGES[key][0]
    if spec == "bool":
        if t.lower() in ("true", "on", "yes", "1"):
            return True
        if t.lower() in ("false", "off", "no", "0"):
            return False
        raise SpecError(f"option {key}: cannot read {text!r} as true/false")
    if spec == "choice":
        return t
    kind = int if spec.startswith("int") else float
    try:
        if kind is int:
            v = float(t)
            if v != int(v):
                raise ValueError
            return int(v)
        return kind(t)
    except ValueError:
        raise SpecError(f"option {key}: cannot read {text!r} as {kind.__name__}") from None


def parse_assignments(text: str | None) -> dict[str, Any]:
    """``'lr=0.008,r1=4'`` -> ``{'lr': 0.008, 'r1': 4.0}``."""
    out: dict[str, Any] = {}
    for item in filter(None, (text or "").split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise SpecError(f"expected key=value, got {item!r}")
        out[key.strip()] = parse_value(key.strip(), value)
    return out


def _parse_sweep(text: str) -> tuple[str, list[Any]]:
    key, eq, values = text.partition("=")
    key = key.strip()
    if not eq or not values.strip():
        raise SpecError(f"--sweep wants key=v1,v2,..., got {text!r}")
    return key, [parse_value(key, v) for v in values.split(",")]


def _fmt(v: Any) -> str:
    return "auto" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def build_variants(
    G: Any, presets: list[str] | None = None, sweeps: list[str] | None = None, base: str | None = None,
    engines: list[str] | None = None,
) -> list[Variant]:
    """The variants of one evaluation, each validated and resolved for ``G``.

    Presets first (``['default']`` when neither presets nor sweeps are
    given), then each sweep's values one at a time around the base (the
    base itself once, labelled ``base``), all of it for each engine.
    Identical settings appear once.  Raises :class:`SpecError` for an
    unknown preset, option or engine, or an option value the model cannot
    take.
    """
    H = int(G.img_resolution)
    base_over = parse_assignments(base)
    engines = engines or ["dragkit"]
    for e in engines:
        if e not in ENGINES:
            raise SpecError(f"unknown engine {e!r}; one of {', '.join(ENGINES)}")
    raw: list[tuple[str, dict[str, Any]]] = []
    for name in presets or ([] if sweeps else ["default"]):
        if name not in PRESETS:
            raise SpecError(f"unknown variant {name!r}; presets: {', '.join(PRESETS)} (or use --sweep key=v1,v2)")
        label = name if not base_over or name != "default" else "base"
        raw.append((label, {**base_over, **PRESETS[name](H)} if name != "default" else dict(base_over)))
    if sweeps:
        if not presets:
            raw.append(("base", dict(base_over)))
        for text in sweeps:
            key, values = _parse_sweep(text)
            for v in values:
                raw.append((f"{key}={_fmt(v)}", {**base_over, key: v}))
    out: list[Variant] = []
    seen: dict[tuple, int] = {}
    for engine in engines:
        for label, over in raw:
            opts = DragOptions(**{**_DEFAULTS.to_dict(), **over})
            try:
                resolved = opts.resolved(G).to_dict()
            except SpecError as exc:
                raise SpecError(f"variant {label}: {exc}") from None
            full = label if engine == "dragkit" else f"{label} [{engine}]"
            v = Variant(full, engine, resolved)
            if v.key() in seen:
                continue
            seen[v.key()] = len(out)
            out.append(v)
    return out
