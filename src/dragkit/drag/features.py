"""Block features for a drag step, computed only where the step reads them.

When no mask is set, a drag step reads the features only near the handles
(:func:`dragkit.drag.core.needed_feature_box`).  This module plans which
box of every synthesis block that needs (:func:`crop_plan`, chaining each
block's :meth:`~dragkit.nets.generator.SynthesisNetwork.input_box`) and
hands the plan to the network's windowed run
(:meth:`~dragkit.nets.generator.SynthesisNetwork.run_window`), which owns
the synthesis maths.  The result is the same numbers as the full synthesis
(up to float summation order), with a fraction of the work in both the
forward and the backward pass.

Boxes are ``(x0, y0, x1, y1)`` in a block's own pixel grid, end exclusive.
A block's map is ``R x R`` pixels, or ``R x R/2`` (height x width) for a
non-square generator (``G.synthesis.block_size(R)``); every bound is taken
per axis.

:func:`feature_source` and :func:`source_features` are what a drag uses:
they pick the map (a StyleGAN2 block, or a StyleGAN3 synthesis layer) and
say where its pixels lie on the image (a
:class:`~dragkit.drag.core.FeatureGeometry`).  A StyleGAN3 layer is always
computed whole (its filtered up/down-sampling reaches far; no crop plan),
then sliced to the box asked for.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..nets.window import Box, check_box, crop
from .core import FeatureGeometry
from .options import feature_channels, feature_choice, image_size
from .protocols import DragGenerator

__all__ = ["block_features", "crop_plan", "can_crop", "Box", "FeatureSource", "feature_source", "source_features",
           "compiled_window"]

# One compiled windowed run per synthesis network (torch.compile caches its
# graphs on the compiled function, per window size and position).
_COMPILED: "weakref.WeakKeyDictionary[Any, Callable[..., torch.Tensor]]" = weakref.WeakKeyDictionary()


def compiled_window(synthesis: Any) -> Callable[..., torch.Tensor]:
    """``torch.compile(synthesis.run_window)`` (static shapes), made once per network.

    The compiled run is the same maths (its result equals the eager run's up
    to float summation order).  Its graphs are specialised on the window's
    size and position, so a drag whose window moves compiles again (torch's
    ``recompile_limit`` caps this, then the eager run is used).
    """
    fn = _COMPILED.get(synthesis)
    if fn is None:
        fn = torch.compile(synthesis.run_window, dynamic=False)
        _COMPILED[synthesis] = fn
    return fn


def crop_plan(synthesis: Any, res: int, box: Box) -> dict[int, Box]:
    """Output box of every block up to ``b{res}`` so that ``b{res}`` is exact on ``box``.

    Args:
        synthesis: a network with ``input_box(res, box) -> (res_in, box_in) | None``
            (``G.synthesis`` of a :class:`dragkit.nets.Generator`).
        res: the feature block.
        box: the box of ``b{res}``'s map the step reads.

    Returns:
        ``{r: box_r}`` for ``b{res}`` and every block it depends on.
    """
    plan = {res: box}
    step = synthesis.input_box(res, box)
    while step is not None:
        r, b = step
        plan[r] = b
        step = synthesis.input_box(r, b)
    return plan


def can_crop(G: DragGenerator, noise_mode: str) -> bool:
    """Whether :func:`block_features` may run the blocks on boxes for ``G`` (else it runs them whole)."""
    syn = G.synthesis
    return hasattr(syn, "run_window") and bool(syn.can_window(noise_mode))


def block_features(
    G: DragGenerator, ws: torch.Tensor, res: int, box: Box | None = None, *, noise_mode: str = "const",
    compiled: bool = False,
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Output of synthesis block ``b{res}``, on ``box`` only when given.

    Args:
        G: a :class:`dragkit.nets.Generator`.
        ws: ``(1, num_ws, w_dim)`` W+ codes.
        res: block resolution (one of ``G.synthesis.block_resolutions``).
        box: ``(x0, y0, x1, y1)`` in ``b{res}`` pixels, end exclusive; None
            for the full map (``res x res``, or ``res x res/2`` when the
            generator is not square).
        noise_mode: ``'const'``, ``'none'`` (windowed) or ``'random'`` (whole maps).
        compiled: run the windowed computation through :func:`compiled_window`.

    Returns:
        ``(feat (1, C, y1 - y0, x1 - x0), origin (x0, y0))``; for the full
        map, ``origin = (0, 0)``.

    Raises:
        ValueError: no block ``b{res}``, or a box outside its map.
    """
    syn = G.synthesis
    if res not in syn.block_resolutions:
        raise ValueError(f"no synthesis block at resolution {res}; blocks: {syn.block_resolutions}")
    height, width = syn.block_size(res)
    full = (0, 0, width, height)
    if box is not None:
        box = check_box(box, (width, height))
    if not can_crop(G, noise_mode):
        _img, feats = syn.run(ws, noise_mode=noise_mode, feature_blocks=[res], return_image=False)
        f = feats[res]
        if box is None:
            return f, (0, 0)
        return crop(f, full, box), (box[0], box[1])
    box = box or full
    run = compiled_window(syn) if compiled else syn.run_window
    return run(ws, res, crop_plan(syn, res, box), noise_mode=noise_mode), (box[0], box[1])


@dataclass(frozen=True)
class FeatureSource:
    """The feature map a drag reads and its placement on the image.

    Attributes:
        kind: ``'block'`` (StyleGAN2 block output) or ``'layer'`` (StyleGAN3 layer output).
        index: the block resolution or the layer index.
        name: ``b128`` or the layer's module name (``L5_84_512``).
        channels: feature channels.
        geometry: where the map's pixels lie on the ``H x W`` image: the
            paper's resize for a block (``R x R`` or ``R x R/2`` map), the
            layer's centred embedding for StyleGAN3 (``S x S`` map with
            ``(S - s) / 2`` pixels of margin outside the image).
    """

    kind: str
    index: int
    name: str
    channels: int
    geometry: FeatureGeometry


def feature_source(G: Any, feature_block: int | None = None, feature_layer: int | None = None) -> FeatureSource:
    """The map a drag on ``G`` reads (``None`` = the default for the model).

    Raises:
        SpecError: as :func:`dragkit.drag.options.feature_choice`.
    """
    kind, index = feature_choice(G, feature_block, feature_layer)
    channels = feature_channels(G, kind, index)
    hw = image_size(G)
    if kind == "layer":
        lg = G.synthesis.layer_geometry(index)
        return FeatureSource(kind, index, lg.name, channels,
                             FeatureGeometry.embedded(hw, (lg.size, lg.size), lg.sampling_rate))
    return FeatureSource(kind, index, f"b{index}", channels, FeatureGeometry.resized(hw, G.synthesis.block_size(index)))


def source_features(
    G: Any, ws: torch.Tensor, src: FeatureSource, box: Box | None = None, *, noise_mode: str = "const",
    precision: str = "fp32", compiled: bool = False,
) -> tuple[torch.Tensor, tuple[int, int]]:
    """The map of ``src`` for codes ``ws`` ``(1, num_ws, w_dim)``, on ``box`` (map pixels, end exclusive) if given.

    Args:
        precision: ``'fp32'``, or ``'bf16'``: the synthesis up to the map runs
            under ``torch.autocast`` (bf16 convolutions and linear layers;
            the backward pass follows the same casts) and the map is returned
            as float32, so whatever reads it (tracking, losses) is float32.
        compiled: a StyleGAN2 block's windowed run through :func:`compiled_window`.

    Returns:
        ``(feat (1, C, y1 - y0, x1 - x0), origin (x0, y0))``, as :func:`block_features`;
        float32 for either precision.

    Raises:
        ValueError: a box outside the map, or a precision other than fp32/bf16
            (``'auto'`` is resolved by :meth:`~.options.DragOptions.resolved`).
    """
    if precision == "bf16":
        with torch.autocast(device_type=ws.device.type, dtype=torch.bfloat16):
            feat, origin = _source_features(G, ws, src, box, noise_mode, compiled)
        return feat.float(), origin
    if precision != "fp32":
        raise ValueError(f"precision must be 'fp32' or 'bf16' here, got {precision!r}")
    return _source_features(G, ws, src, box, noise_mode, compiled)


def _source_features(
    G: Any, ws: torch.Tensor, src: FeatureSource, box: Box | None, noise_mode: str, compiled: bool,
) -> tuple[torch.Tensor, tuple[int, int]]:
    if src.kind == "block":
        return block_features(G, ws, src.index, box, noise_mode=noise_mode, compiled=compiled)
    if box is not None and hasattr(G.synthesis, "window_plan"):  # StyleGAN3: each layer on what its successor reads
        return G.synthesis.run_window(ws, src.index, box, noise_mode=noise_mode), (box[0], box[1])
    _img, feats = G.synthesis.run(ws, noise_mode=noise_mode, feature_layers=[src.index], return_image=False)
    f = feats[src.index]
    if box is None:
        return f, (0, 0)
    height, width = f.shape[2], f.shape[3]
    box = check_box(box, (width, height))
    return crop(f, (0, 0, width, height), box), (box[0], box[1])
