"""Drag options and every bound on a drag's size, in one place.

:class:`DragOptions` is what a drag is configured with; its
:meth:`~DragOptions.validate` is the one check every path into the engine
goes through (the Python session, ``dragkit drag --spec``, session files
and the web app).  The bounds are:

* each option's type and range (:data:`OPTION_RANGES`), narrowed for a
  given generator by :func:`option_limits` (radii at most half the image's
  larger side - a larger disk or search window covers nothing more -,
  the feature map one the network has:
  ``feature_block`` a StyleGAN2 block resolution, ``feature_layer`` a
  StyleGAN3 synthesis layer, each only on its own kind of network,
  :func:`feature_choice`).  The web app sends :func:`option_limits` to the
  browser, and changes options with :meth:`DragOptions.replace`; the spec
  reader builds them with :meth:`DragOptions.from_dict`; both end in
  :meth:`DragOptions.validate`;
* points: at most :data:`MAX_POINTS` pairs, steps: at most :data:`MAX_STEPS`
  (:func:`check_steps`), seeds in ``0 .. MAX_SEED``;
* per-step work: the feature values one step gathers,
  ``points * (5 * |disk(r1)| + |square(r2)|) * channels``, at most
  :data:`MAX_STEP_SAMPLES` (:func:`step_samples`).  Within the radius
  bounds only large images with many points and large radii reach it.

Why this module is long (~650 lines): it is the one place an option is
declared, bounded, defaulted by measurement (the ``auto_*`` rules) and
checked (issue 12: one validator per rule); splitting the declarations from
their checks would put one rule in two files again.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..errors import SpecError

__all__ = [
    "DragOptions",
    "OptionLimit",
    "OPTION_RANGES",
    "OPTION_NAMES",
    "option_limits",
    "check_steps",
    "MAX_SEED",
    "PSI_RANGE",
    "check_seed",
    "check_psi",
    "MAX_POINTS",
    "MAX_STEPS",
    "MAX_STEP_SAMPLES",
    "check_option",
    "step_samples",
    "auto_r1",
    "auto_r2",
    "auto_lambda_mask",
    "auto_feature_block",
    "auto_feature_layer",
    "feature_choice",
    "feature_channels",
    "image_size",
    "is_stylegan3",
    "SPACES",
    "TRACKING",
    "NOISE_MODES",
    "METHODS",
    "auto_freedrag_step",
    "PRECISIONS",
    "native_bf16",
    "auto_precision",
    "model_device",
]

SPACES = ("w+", "w")
TRACKING = ("l1", "l2")
NOISE_MODES = ("const", "none")
#: Drag methods: ``draggan`` (Pan et al. 2023: motion supervision + nearest-neighbour
#: tracking, :mod:`.core`) and ``freedrag`` (Ling et al., CVPR 2024: adaptive template
#: features + line search, :mod:`.freedrag`).
METHODS = ("draggan", "freedrag")
#: Arithmetic of a drag step's synthesis (forward and backward, up to the feature
#: block): ``fp32``, ``bf16`` (autocast; tracking, losses and the Adam update stay
#: float32), or ``auto`` (:func:`auto_precision`: bf16 only where the hardware has it
#: and, on a CPU, only for a masked drag, where it was measured faster).
PRECISIONS = ("fp32", "bf16", "auto")

#: Most handle/target pairs in one drag (the web app's default limit is 32):
#: all 68 of dlib's face landmarks, which the landmarks evaluation drags at once.
MAX_POINTS = 68
#: Largest step cap of one drag.
MAX_STEPS = 100_000
#: Largest seed (NumPy's ``RandomState`` takes ``0 .. 2^32 - 1``).
MAX_SEED = 2**32 - 1
#: Truncation psi accepted everywhere (library, spec, CLI, web app): -1 mirrors
#: the image through the mean, 0 is the mean image, 1 untruncated, up to 2
#: exaggerated (beyond that the generator leaves its training distribution).
PSI_RANGE = (-1.0, 2.0)
#: Most feature values one step may gather (motion supervision + tracking),
#: 2^25 = 33.5 M (float32 with gradients: a few hundred MB).  The defaults at
#: 1024 px with 68 points need 26 M; 32 points with r1 = r2 = 16 px on the
#: 32 px toy model need 16 M (2.1 s per step, +320 MB, on a loaded 2-core CPU).
MAX_STEP_SAMPLES = 2**25

#: Each option's kind and static range.  Kinds: ``float``, ``int``,
#: ``*_or_none`` (None = the engine's default for the model) and
#: ``choice``.  Model-dependent bounds (radii, feature block) are
#: checked by :meth:`DragOptions.validate` given the generator.
OPTION_RANGES: dict[str, tuple] = {
    "lr": ("float", 1e-5, 1.0),
    "r1": ("float_or_none", 0.5, 2048.0),
    "r2": ("int_or_none", 1, 2048),
    "lambda_mask": ("float_or_none", 0.0, 1000.0),
    "space": ("choice", SPACES),
    "layers": ("int", 1, 64),
    "tracking": ("choice", TRACKING),
    "feature_block": ("int_or_none", 4, 4096),
    "feature_layer": ("int_or_none", 0, 64),
    "stop_distance": ("float_or_none", 0.1, 64.0),
    "noise_mode": ("choice", NOISE_MODES),
    "method": ("choice", METHODS),
    # DragGAN's tracking and supervision variants (method draggan only; docs/drag.md, *Methods*)
    "subpixel": ("bool",),
    "confidence": ("float_or_none", 0.0, 1.0),
    "supervise_original": ("bool",),
    # FreeDrag's constants (method freedrag only)
    "freedrag_loss": ("float", 1e-4, 100.0),
    "freedrag_step": ("float_or_none", 0.25, 2048.0),
    # speed (docs/drag.md, *Speed*): the step's arithmetic and torch.compile of its block computation
    "precision": ("choice", PRECISIONS),
    "compile": ("bool",),
}
OPTION_NAMES = tuple(OPTION_RANGES)


def check_option(name: str, value: Any) -> Any:
    """One option's value checked against :data:`OPTION_RANGES`; returns it cleaned.

    Raises:
        SpecError: an unknown name, a wrong type, or a value out of range
            (``"option lr must be between 1e-05 and 1, got -1"``).
    """
    if name not in OPTION_RANGES:
        _unknown([name], OPTION_NAMES)
    kind = OPTION_RANGES[name]
    if kind[0] == "bool":
        if not isinstance(value, bool):
            raise SpecError(f"option {name} must be true or false, got {value!r:.40}")
        return value
    if kind[0] == "choice":
        if not isinstance(value, str) or value not in kind[1]:
            raise SpecError(f"option {name} must be one of {', '.join(kind[1])}, got {value!r:.40}")
        return value
    if kind[0].endswith("_or_none") and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpecError(f"option {name} must be a finite number, got {value!r:.40}")
    lo, hi = kind[1], kind[2]
    if kind[0].startswith("int"):
        if int(value) != value:
            raise SpecError(f"option {name} must be a whole number, got {value!r}")
        value = int(value)
    if not lo <= value <= hi:
        raise SpecError(f"option {name} must be between {lo:g} and {hi:g}, got {value!r}")
    return value if kind[0].startswith("int") else float(value)


def _unknown(names: Iterable[Any], known: Iterable[str]) -> None:
    shown = ", ".join(repr(str(n)[:40]) for n in names)
    raise SpecError(f"unknown option(s) {shown[:200]}; known: {', '.join(known)}")


def check_steps(value: Any, what: str = "max_steps", lo: int = 0, hi: int = MAX_STEPS) -> int:
    """A step cap: a whole number in ``lo .. hi`` (``hi`` at most :data:`MAX_STEPS`).

    Raises:
        SpecError: ``"<what> must be a whole number between <lo> and <hi>, got <value>"``.
    """
    hi = min(int(hi), MAX_STEPS)
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) \
        and int(value) == value and lo <= int(value) <= hi
    if not ok:
        shown = repr(value) if isinstance(value, (int, float, bool)) else f"{value!r:.40}"
        raise SpecError(f"{what} must be a whole number between {lo} and {hi}, got {shown}")
    return int(value)


def check_seed(value: Any, what: str = "seed") -> int:
    """A seed: a whole number in ``0 .. MAX_SEED`` (a float with no fraction is accepted).

    Raises:
        SpecError: ``"seed must be a whole number between 0 and 4294967295, got -1"``.
    """
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer)) \
        and math.isfinite(value) and int(value) == value and 0 <= int(value) <= MAX_SEED
    if not ok:
        shown = repr(value) if isinstance(value, (int, float, bool, np.integer)) else f"{value!r:.40}"
        raise SpecError(f"{what} must be a whole number between 0 and {MAX_SEED}, got {shown}")
    return int(value)


def check_psi(value: Any, what: str = "psi") -> float:
    """A truncation psi: a finite number in :data:`PSI_RANGE`.

    Raises:
        SpecError: ``"psi must be a number between -1 and 2, got 9"``.
    """
    lo, hi = PSI_RANGE
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.floating, np.integer)) \
        and math.isfinite(value) and lo <= value <= hi
    if not ok:
        shown = repr(value) if isinstance(value, (int, float, bool)) else f"{value!r:.40}"
        raise SpecError(f"{what} must be a number between {lo:g} and {hi:g}, got {shown}")
    return float(value)


@dataclass(frozen=True)
class OptionLimit:
    """The values one option takes, statically or for one generator.

    Attributes:
        kind: ``'float'``, ``'int'``, ``'bool'`` or ``'choice'``.
        optional: None is allowed (the engine's default for the model).
        lo, hi: the range of a number (inclusive).
        choices: the values of a choice (or of ``feature_block`` for a model).
        why: why ``hi`` or ``choices`` is what it is for this model, as
            the error message says it (``" px (half the 32 px image)"``).
    """

    kind: str
    optional: bool = False
    lo: float | None = None
    hi: float | None = None
    choices: tuple[Any, ...] | None = None
    why: str = ""

    def to_json(self) -> dict[str, Any]:
        """``{"kind", "optional", "min", "max"}`` or ``{"kind", "optional", "choices"}`` (what a client shows)."""
        if self.choices is not None:
            return {"kind": self.kind, "optional": self.optional, "choices": list(self.choices)}
        return {"kind": self.kind, "optional": self.optional, "min": self.lo, "max": self.hi}


def _image_side(G: Any) -> tuple[int, str]:
    H, W = image_size(G)
    side = max(H, W)
    return side, (f"half the {side} px image" if H == W else f"half the {W}x{H} image's larger side")


def option_limits(G: Any | None = None) -> dict[str, OptionLimit]:
    """What each option may be: :data:`OPTION_RANGES`, narrowed for generator ``G`` when given.

    With ``G``: ``r1`` and ``r2`` at most half the image's larger side, on
    a StyleGAN2 ``feature_block`` one of ``G.synthesis.block_resolutions``
    (and no ``feature_layer``), on a
    StyleGAN3 ``feature_layer`` one of its synthesis layers (and no
    ``feature_block``).  :meth:`DragOptions.validate` checks these (the
    feature map through :func:`feature_choice`), and the web app shows them.
    """
    out: dict[str, OptionLimit] = {}
    for name, kind in OPTION_RANGES.items():
        optional = kind[0].endswith("_or_none")
        if kind[0] == "choice":
            out[name] = OptionLimit("choice", choices=tuple(kind[1]))
        elif kind[0] == "bool":
            out[name] = OptionLimit("bool", choices=(False, True))
        else:
            out[name] = OptionLimit("int" if kind[0].startswith("int") else "float", optional, kind[1], kind[2])
    if G is None:
        return out
    side, half = _image_side(G)
    out["r1"] = dataclasses.replace(out["r1"], hi=min(out["r1"].hi, side / 2), why=f" px ({half})")
    out["freedrag_step"] = dataclasses.replace(out["freedrag_step"], hi=min(out["freedrag_step"].hi, side / 2),
                                               why=f" px ({half})")
    out["r2"] = dataclasses.replace(out["r2"], hi=min(out["r2"].hi, side // 2), why=f" px ({half})")
    if is_stylegan3(G):
        n = int(G.synthesis.num_layers)  # layers 0 .. n - 1; n is ToRGB
        out["feature_layer"] = OptionLimit("int", True, choices=tuple(range(n)), why=" for this model")
        out["feature_block"] = OptionLimit("int", True, choices=(), why=" (StyleGAN2 models only)")
    else:
        out["feature_block"] = OptionLimit("int", True, choices=tuple(int(r) for r in G.synthesis.block_resolutions),
                                           why=" for this model")
        out["feature_layer"] = OptionLimit("int", True, choices=(), why=" (StyleGAN3 models only)")
    return out


# ----------------------------------------------------------------------------
# Defaults for small models (chosen on the toy world, see docs/drag.md).


def auto_r1(img_resolution: int) -> float:
    """Default motion-supervision radius.

    ``H / 4`` for models of at most 64 px (measured on the 32 px toy world:
    objects there span a few pixels of flat colour, and a disk that covers
    the dragged object moves it far more accurately; docs/drag.md); above
    that the paper's 3 px at 512 px, scaled with ``H``, never below 2 px
    (measured on ``faces128``'s face landmarks: 2 px beat 3 and 5 px at
    128 px; docs/drag.md).
    """
    if img_resolution <= 64:
        return img_resolution / 4.0
    return max(2.0, 3.0 * img_resolution / 512)


def auto_r2(img_resolution: int) -> int:
    """Default tracking half-size: the paper's 12 px at 512 px, never below 6 px."""
    return max(6, round(12 * img_resolution / 512))


def auto_lambda_mask(img_resolution: int) -> float:
    """Default weight of the mask term.

    The paper's 20 above 64 px.  5 for models of at most 64 px: there the
    feature block's halo around a moving object reaches a few pixels into a
    hand-painted fixed region, and lambda = 20 holds the dragged object back
    (toy world, flexible band 3 px wider than the disk: 37 % of drags arrive
    within 300 steps at 20, 87 % at 5; docs/drag.md).
    """
    return 5.0 if img_resolution <= 64 else 20.0


def auto_freedrag_step(img_resolution: int, map_resolution: int) -> float:
    """Default FreeDrag sub-motion length ``d_max`` in image pixels: 3 pixels of the feature map.

    FreeDrag's ``d_max`` is 3 (faces, cats, cars) or 4 feature pixels of a
    128 px map at 512 px, i.e. 12 image pixels there; dragkit keeps "3 map
    pixels" for any map: 6 px on the 32 px toy model (b16), 12 px at 512 px (b128).
    """
    return 3.0 * img_resolution / max(int(map_resolution), 1)


def model_device(G: Any) -> Any:
    """The ``torch.device`` of a generator's parameters (CPU for one without parameters)."""
    import torch

    for p in G.parameters() if hasattr(G, "parameters") else ():
        return p.device
    return torch.device("cpu")


def native_bf16(device: Any) -> bool:
    """Whether ``device`` computes bf16 natively: :func:`dragkit.utils.native_bf16`."""
    from ..utils import native_bf16 as rule

    return rule(device)


def auto_precision(device: Any, masked: bool = False) -> str:
    """``precision='auto'`` on ``device`` for a drag with or without a mask.

    CUDA with native bf16: ``'bf16'`` (the hardware's documented support;
    not measured, no GPU was lent).  A CPU: ``'bf16'`` only where it has
    native bf16 (AVX-512 BF16 / AMX) *and* the drag has a mask, else
    ``'fp32'``.  The rule is the measurement (``dragkit bench``, one thread,
    docs/drag.md): on a 2-core Intel Xeon with AMX a masked step (the whole
    feature map) is 1.35-1.75x faster in bf16 at 32, 128, 256 and 512 px,
    while a step without a mask (the handles' window only) is 1.1-1.6x
    *slower* at 32-256 px and at two threads at 512 px (1.2x faster at one
    thread there): too little work per convolution to pay for the casts.
    On a CPU without native bf16 (AMD EPYC, AVX2) bf16 is emulated and 2-4x
    slower everywhere.
    """
    if not native_bf16(device):
        return "fp32"
    import torch

    return "bf16" if masked or torch.device(device).type == "cuda" else "fp32"


def image_size(G: Any) -> tuple[int, int]:
    """``(H, W)`` of a generator's images in pixels: ``(H, H)``, or ``(H, H/2)`` for StyleGAN-Human.

    Every size check of :mod:`dragkit.drag` (points, masks, session files)
    uses this one rule.
    """
    H = int(G.img_resolution)
    return int(getattr(G, "img_height", H)), int(getattr(G, "img_width", H))


def is_stylegan3(G: Any) -> bool:
    """A StyleGAN3 generator (features come from synthesis layers, not blocks)."""
    return hasattr(G.synthesis, "layer_geometry")


def auto_feature_layer(num_layers: int) -> int:
    """Default StyleGAN3 feature layer: 5 for the standard 14 layers (the authors' choice), the same depth otherwise.

    ``round(5 * num_layers / 14)``, at least 1 and at most ``num_layers - 1``
    (the last index is ToRGB).
    """
    return int(min(max(1, round(5 * num_layers / 14)), max(num_layers - 1, 0)))


def auto_feature_block(block_resolutions: Sequence[int], img_resolution: int) -> int:
    """Default feature block: ``H / 4`` (the paper's b128 at 512 px), at least b16, and at least b64 from 128 px.

    At 128 px, b32 features (4 px a cell) let the tracker slide along a lip
    line while the visible mouth corner lags; b64 moves the corner dlib sees
    on about twice as many inverted photos and is alike on the landmark
    edits (``docs/drag.md``), at 1.3-1.5x the time per step.
    """
    want = max(16, img_resolution // 4, 64 if img_resolution >= 128 else 0)
    cands = [r for r in block_resolutions if r <= want]
    return max(cands) if cands else min(block_resolutions)


def feature_choice(G: Any, feature_block: int | None, feature_layer: int | None) -> tuple[str, int]:
    """The feature map a drag on ``G`` reads: ``(kind, index)``.

    ``kind`` is ``'block'`` (StyleGAN2: ``index`` = block resolution, the
    block's output) or ``'layer'`` (StyleGAN3: ``index`` = synthesis layer,
    its output); None picks the default (:func:`auto_feature_block`,
    :func:`auto_feature_layer`).

    Raises:
        SpecError: the option of the other kind of network, or one this model does not have.
    """
    if is_stylegan3(G):
        n = int(G.synthesis.num_layers)  # layers 0 .. n - 1; n is ToRGB
        if feature_block is not None:
            raise SpecError(f"option feature_block is for StyleGAN2 models; this StyleGAN3 model drags on a "
                            f"synthesis layer: use feature_layer (0..{n - 1})")
        if feature_layer is not None and not 0 <= feature_layer <= n - 1:
            raise SpecError(f"option feature_layer must be between 0 and {n - 1} for this model, got {feature_layer}")
        return "layer", int(feature_layer) if feature_layer is not None else auto_feature_layer(n)
    if feature_layer is not None:
        raise SpecError("option feature_layer is for StyleGAN3 models; this StyleGAN2 model drags on a "
                        "synthesis block: use feature_block")
    blocks = list(G.synthesis.block_resolutions)
    if feature_block is not None and feature_block not in blocks:
        raise SpecError(f"option feature_block must be one of {blocks} for this model, got {feature_block}")
    return "block", int(feature_block) if feature_block is not None else auto_feature_block(blocks, image_size(G)[0])


def _map_resolution(G: Any, kind: str, index: int) -> int:
    """Height of the map :func:`feature_choice` picked, in map pixels (a StyleGAN3 layer: its samples per image)."""
    if kind == "layer":
        return max(1, int(round(float(G.synthesis.layer_geometry(index).sampling_rate))))
    return int(index)


def feature_channels(G: Any, kind: str, index: int) -> int:
    """Channels of the map :func:`feature_choice` picked."""
    if kind == "layer":
        return int(G.synthesis.layer_geometry(index).channels)
    return int(G.synthesis.block_channels(index))


def _disk_size(r1: float) -> int:
    """``|{o : |o| < r1}|`` (the motion-supervision disk of :func:`~.core.disk_offsets`)."""
    k = int(math.ceil(r1))
    return max(1, sum(1 for dy in range(-k, k + 1) for dx in range(-k, k + 1) if dx * dx + dy * dy < r1 * r1))


def step_samples(r1: float, r2: int, num_points: int, channels: int) -> int:
    """Feature values one drag step gathers: ``points * (5 * |disk| + |square|) * channels``.

    The motion loss samples every disk pixel and its four shifted
    neighbours; tracking samples the ``(2 r2 + 1)^2`` search square.
    """
    disk = _disk_size(r1) if r1 < 64 else int(math.pi * r1 * r1) + 1
    return int(num_points) * (5 * disk + (2 * int(r2) + 1) ** 2) * int(channels)


@dataclass
class DragOptions:
    """Settings of a drag (mutable between drags; a change applies to the next drag).

    Attributes:
        lr: Adam learning rate.
        r1: motion-supervision disk radius in pixels (None = :func:`auto_r1`).
        r2: tracking search half-size in pixels (None = :func:`auto_r2`).
        lambda_mask: weight of the mask term (used only when a mask with
            both values is set; None = :func:`auto_lambda_mask`).
        space: ``'w+'`` (one code per layer) or ``'w'`` (one shared code).
        layers: how many of the first codes are optimised; the others are
            held at their values from the start of the drag.  A value above
            the model's ``num_ws`` (the default 6 on a small model) means
            every code: :meth:`resolved` clamps it to ``num_ws``.
        tracking: ``'l1'`` (paper) or ``'l2'`` (authors' code).
        feature_block: StyleGAN2: block resolution whose output is the
            feature map (None = :func:`auto_feature_block`).
        feature_layer: StyleGAN3: synthesis layer index (0 .. num_layers - 1)
            whose output is the feature map (None = :func:`auto_feature_layer`).
        stop_distance: stop when every handle is within this many pixels of
            its target (None = the paper's rule, 1 px for up to 5 points,
            2 px otherwise).
        noise_mode: ``'const'`` or ``'none'``.
        method: ``'draggan'`` (the default) or ``'freedrag'`` (docs/drag.md, *Methods*).
        subpixel: DragGAN tracking refines the best integer match to a
            fractional position (a parabola through its neighbours per axis).
        confidence: DragGAN tracking follows an adaptive template (the last
            match) while the match's cosine similarity to the original
            handle feature is at least this, and falls back to the original
            template below it (None: the original template only, the paper's).
        supervise_original: DragGAN's motion loss compares ``F(q + d)`` with
            the *original* handle patch ``F0(p0 + o)`` instead of ``F(q)``
            (GoodDrag's choice).
        freedrag_loss: FreeDrag's expected initial loss ``l`` of a sub-motion,
            in units of the mean ``|F0|`` of the drag's first feature map (the
            paper's 0.3, there in absolute units of its 512 px models' features).
        freedrag_step: FreeDrag's longest sub-motion ``d_max`` in pixels
            (None = :func:`auto_freedrag_step`, 3 pixels of the feature map).
        precision: the synthesis's arithmetic in a step, forward and backward
            up to the feature block: ``'fp32'`` (the default), ``'bf16'``
            (autocast; tracking distances, the loss and the Adam update stay
            float32) or ``'auto'`` (:func:`auto_precision`: bf16 on a CUDA
            device that has it and, for a masked drag, on a CPU with native
            bf16; fp32 otherwise).
        compile: run the windowed block computation through ``torch.compile``
            (compiled per window size and position: the first steps of a drag
            pay the compilation; docs/drag.md, *Speed*).
    """

    lr: float = 0.004
    r1: float | None = None
    r2: int | None = None
    lambda_mask: float | None = None
    space: str = "w+"
    layers: int = 6
    tracking: str = "l1"
    feature_block: int | None = None
    feature_layer: int | None = None
    stop_distance: float | None = None
    noise_mode: str = "const"
    method: str = "draggan"
    subpixel: bool = False
    confidence: float | None = None
    supervise_original: bool = False
    freedrag_loss: float = 0.3
    freedrag_step: float | None = None
    precision: str = "fp32"
    compile: bool = False

    def validate(self, G: Any | None = None, num_points: int | None = None) -> None:
        """Check every field; with ``G`` also the bounds by its image, and with
        ``num_points`` the work of one step.

        Raises:
            SpecError: naming the first bad field, or saying which limit a
                drag of ``num_points`` pairs would pass and what to change.
        """
        for f in fields(self):
            check_option(f.name, getattr(self, f.name))
        if num_points is not None and num_points > MAX_POINTS:
            raise SpecError(f"at most {MAX_POINTS} point pairs per drag, got {num_points}")
        if G is None:
            return
        kind, index = feature_choice(G, self.feature_block, self.feature_layer)  # its own clear messages
        for name, lim in option_limits(G).items():
            value = getattr(self, name)
            if value is None or name in ("feature_block", "feature_layer"):
                continue
            if lim.choices is not None and value not in lim.choices:
                raise SpecError(f"option {name} must be one of {list(lim.choices)}{lim.why}, got {value!r:.40}")
            if lim.hi is not None and value > lim.hi:
                raise SpecError(f"option {name} must be at most {lim.hi:g}{lim.why}, got {value:g}")
        if num_points:
            r = self.resolved(G)
            need = step_samples(r.r1, r.r2, num_points, feature_channels(G, kind, index))
            if need > MAX_STEP_SAMPLES:
                raise SpecError(
                    f"this drag is too large: {num_points} point pairs with r1 = {r.r1:g} px and r2 = {r.r2} px "
                    f"gather {need / 1e6:.0f} M feature values per step (limit {MAX_STEP_SAMPLES / 1e6:.0f} M); "
                    "use fewer points or smaller radii"
                )

    def stop_distance_at(self, num_points: int) -> float:
        """The stop rule's distance in pixels for a drag of ``num_points`` pairs: the
        ``stop_distance`` option, else the paper's rule (:func:`~.core.stop_distance_for`)."""
        from .core import stop_distance_for

        return float(self.stop_distance) if self.stop_distance is not None else stop_distance_for(num_points)

    def resolved(self, G: Any, masked: bool = False) -> "DragOptions":
        """A copy with every None default replaced by its value for ``G`` (validated).

        On a StyleGAN2 model ``feature_layer`` stays None, on a StyleGAN3
        model ``feature_block`` does.  ``masked``: whether the drag has a
        mask (``precision='auto'`` depends on it, :func:`auto_precision`).
        """
        self.validate(G)
        H = image_size(G)[0]
        kind, index = feature_choice(G, self.feature_block, self.feature_layer)
        return DragOptions(
            lr=float(self.lr),
            r1=float(self.r1) if self.r1 is not None else auto_r1(H),
            r2=int(self.r2) if self.r2 is not None else auto_r2(H),
            lambda_mask=float(self.lambda_mask) if self.lambda_mask is not None else auto_lambda_mask(H),
            space=self.space,
            layers=min(int(self.layers), int(G.num_ws)),
            tracking=self.tracking,
            feature_block=index if kind == "block" else None,
            feature_layer=index if kind == "layer" else None,
            stop_distance=float(self.stop_distance) if self.stop_distance is not None else None,
            noise_mode=self.noise_mode,
            method=self.method,
            subpixel=bool(self.subpixel),
            confidence=float(self.confidence) if self.confidence is not None else None,
            supervise_original=bool(self.supervise_original),
            freedrag_loss=float(self.freedrag_loss),
            freedrag_step=float(self.freedrag_step) if self.freedrag_step is not None
            else auto_freedrag_step(H, _map_resolution(G, kind, index)),
            precision=auto_precision(model_device(G), masked) if self.precision == "auto" else self.precision,
            compile=bool(self.compile),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def replace(self, values: Mapping[str, Any], G: Any | None = None,
                names: Iterable[str] = OPTION_NAMES) -> "DragOptions":
        """A copy with ``values`` changed, every field checked (with ``G``, against its bounds).

        Args:
            values: ``{option: value}``; None sets an optional option back to
                the model's default.
            G: the generator the options are for (None: static ranges only).
            names: the options a caller lets its users set (the web app: all
                but ``noise_mode``).

        Raises:
            SpecError: an unknown name or a bad value (the first one); ``self``
                is unchanged.
        """
        if not isinstance(values, Mapping):
            raise SpecError(f"options must be an object, got {type(values).__name__}")
        known = tuple(names)
        unknown = [k for k in values if k not in known]
        if unknown:
            _unknown(unknown, known)
        new = dataclasses.replace(self, **{k: check_option(k, v) for k, v in values.items()})
        new.validate(G)
        return new

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], G: Any | None = None) -> "DragOptions":
        """Build from a dict (missing keys take their defaults); see :meth:`replace`."""
        return cls().replace(d, G)
