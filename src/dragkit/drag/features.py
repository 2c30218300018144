"""Block features for a drag step, computed only where the step reads them.

StyleGAN2's synthesis network is fully convolutional: the const input, the
(const) noise, the modulated 3x3 convolutions (demodulation rescales whole
filters, never mixes pixels) and the FIR up-sampling are all local.  The
output of block ``b{R}`` inside a box therefore depends only on a slightly
larger box of block ``b{R/2}``, and so on down to ``b4``.  When no mask is
set, a drag step reads the features only near the handles
(:func:`dragkit.drag.core.needed_feature_box`), so :func:`block_features`
computes every block on the box it needs and nothing else.  The result is
the same numbers as the full synthesis (up to float summation order), with
a fraction of the work in both the forward and the backward pass.

Boxes are ``(x0, y0, x1, y1)`` in a block's own pixel grid, end exclusive.
A block's map is ``R x R`` pixels, or ``R x R/2`` (height x width) for a
non-square generator (``G.synthesis.block_size(R)``); every bound below is
taken per axis.

:func:`feature_source` and :func:`source_features` are what a drag uses:
they pick the map (a StyleGAN2 block, or a StyleGAN3 synthesis layer) and
say where its pixels lie on the image (a
:class:`~dragkit.drag.core.FeatureGeometry`).  A StyleGAN3 layer is always
computed whole (its filtered up/down-sampling reaches far; no crop plan),
then sliced to the box asked for.
"""
from __future__ import annotations

import math
import weakref
from typing import Any, Callable

import torch

from dataclasses import dataclass

from ..nets.ops import bias_act, conv2d_resample
from .core import FeatureGeometry
from .options import feature_channels, feature_choice, image_size

__all__ = ["block_features", "crop_plan", "can_crop", "FeatureSource", "feature_source", "source_features"]

Box = tuple[int, int, int, int]
Size = tuple[int, int]  # (width, height) of a block's map

# Input pixels an up-sampling layer (3x3 transposed conv, stride 2, then the
# 4-tap FIR) reads beyond the half-size box on each side.  One is exact;
# tests/test_drag.py checks it on random boxes of every architecture.
_UP_MARGIN = 1


def _dilate(box: Box, r: int, size: Size) -> Box:
    x0, y0, x1, y1 = box
    return max(x0 - r, 0), max(y0 - r, 0), min(x1 + r, size[0]), min(y1 + r, size[1])


def _half(box: Box, size_half: Size) -> Box:
    x0, y0, x1, y1 = box
    m = _UP_MARGIN
    return (
        max(x0 // 2 - m, 0), max(y0 // 2 - m, 0),
        min(-(-x1 // 2) + m, size_half[0]), min(-(-y1 // 2) + m, size_half[1]),
    )


def _square(res: int) -> tuple[int, int]:
    return res, res


def _slice(x: torch.Tensor, have: Box, want: Box) -> torch.Tensor:
    return x[:, :, want[1] - have[1] : want[3] - have[1], want[0] - have[0] : want[2] - have[0]]


def crop_plan(
    block_resolutions: list[int], res: int, box: Box,
    block_size: Callable[[int], tuple[int, int]] = _square,
) -> dict[int, Box]:
    """Output box of every block up to ``res`` so that ``b{res}`` is exact on ``box``.

    ``block_size(r)`` is ``(height, width)`` of block ``b{r}`` (square by
    default; pass ``G.synthesis.block_size`` for a non-square generator).
    """
    plan = {res: box}
    r = res
    while r > block_resolutions[0]:
        h, w = block_size(r)
        hh, wh = block_size(r // 2)
        mid = _dilate(plan[r], 1, (w, h))  # conv1 (3x3) input
        plan[r // 2] = _half(mid, (wh, hh))  # conv0 / skip (2x up) input
        r //= 2
    return plan


def can_crop(G: Any, noise_mode: str) -> bool:
    """Whether :func:`block_features` may crop for this generator (else it runs the full blocks)."""
    if noise_mode == "random":
        return False  # random noise is drawn for the full map; a crop would differ
    syn = G.synthesis
    for res in syn.block_resolutions:
        block = getattr(syn, f"b{res}", None)
        if block is None or getattr(block, "architecture", None) not in ("orig", "skip", "resnet"):
            return False
    return True


_SQ_CACHE: "weakref.WeakKeyDictionary[Any, tuple[int, int, torch.Tensor]]" = weakref.WeakKeyDictionary()


def _weight_sq(layer: Any) -> torch.Tensor:
    """``sum_{k,k} weight^2``, ``(C_out, C_in)``, cached per layer until its weight changes."""
    w = layer.weight
    key = (w.data_ptr(), w._version)
    hit = _SQ_CACHE.get(layer)
    if hit is None or hit[:2] != key:
        with torch.no_grad():
            sq = w.detach().square().sum(dim=[2, 3])
        _SQ_CACHE[layer] = (key[0], key[1], sq)
        return sq
    return hit[2]


def _layer(layer: Any, x: torch.Tensor, w: torch.Tensor, out_box: Box, noise_mode: str, gain: float = 1.0) -> torch.Tensor:
    """``SynthesisLayer.forward`` on a crop whose output covers ``out_box``.

    The modulated convolution is evaluated in its "scale the activations"
    form: ``conv(x * s, W) * d`` with ``d = rsqrt((W^2 summed over the
    kernel) @ s^2 + 1e-8)``, the same maths as building the modulated
    weights ``W * s`` and demodulating them, but the convolution weight is
    then a constant, so the backward pass needs no weight gradient and no
    per-step ``C_out x C_in x k x k`` tensors are made.
    """
    styles = layer.affine(w)  # (1, C_in)
    x = x * styles.to(x.dtype).reshape(1, -1, 1, 1)
    x = conv2d_resample(x, layer.weight.detach().to(x.dtype), f=layer.resample_filter, up=layer.up,
                        padding=layer.padding)
    dcoefs = (styles.square() @ _weight_sq(layer).t() + 1e-8).rsqrt()  # (1, C_out)
    x = x * dcoefs.to(x.dtype).reshape(1, -1, 1, 1)
    if layer.use_noise and noise_mode == "const":
        x0, y0, x1, y1 = out_box
        x = x + layer.noise_const[y0:y1, x0:x1] * layer.noise_strength
    act_gain = layer.act_gain * gain
    act_clamp = layer.conv_clamp * gain if layer.conv_clamp is not None else None
    return bias_act(x, layer.bias, act=layer.activation, gain=act_gain, clamp=act_clamp)


def block_features(
    G: Any, ws: torch.Tensor, res: int, box: Box | None = None, *, noise_mode: str = "const",
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Output of synthesis block ``b{res}``, on ``box`` only when given.

    Args:
        G: a :class:`dragkit.nets.Generator`.
        ws: ``(1, num_ws, w_dim)`` W+ codes.
        res: block resolution (one of ``G.synthesis.block_resolutions``).
        box: ``(x0, y0, x1, y1)`` in ``b{res}`` pixels, end exclusive; None
            for the full map (``res x res``, or ``res x res/2`` when the
            generator is not square).

    Returns:
        ``(feat (1, C, y1 - y0, x1 - x0), origin (x0, y0))``; for the full
        map, ``origin = (0, 0)``.
    """
    syn = G.synthesis
    if res not in syn.block_resolutions:
        raise ValueError(f"no synthesis block at resolution {res}; blocks: {syn.block_resolutions}")
    block_size = getattr(syn, "block_size", _square)
    height, width = block_size(res)
    full = (0, 0, width, height)
    if box is not None:
        x0, y0, x1, y1 = box
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise ValueError(f"box {box} is not inside the {width}x{height} (width x height) map")
    if not can_crop(G, noise_mode):
        _img, feats = syn.run(ws, noise_mode=noise_mode, feature_blocks=[res], return_image=False)
        f = feats[res]
        if box is None:
            return f, (0, 0)
        return _slice(f, full, box), (box[0], box[1])
    if box is None:
        box = full
    plan = crop_plan(syn.block_resolutions, res, box, block_size)
    x = None
    have: Box | None = None
    for r, block_ws in zip(syn.block_resolutions, syn._split_ws(ws)):
        block = getattr(syn, f"b{r}")
        w_iter = iter(block_ws.unbind(dim=1))
        out_box = plan[r]
        bh, bw = block_size(r)
        mid = _dilate(out_box, 1, (bw, bh))
        if block.in_channels == 0:
            c = block.const[:, mid[1] : mid[3], mid[0] : mid[2]].unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
            x = _layer(block.conv1, c, next(w_iter), mid, noise_mode)
            x = _slice(x, mid, out_box)
        else:
            assert have is not None
            up_box = (2 * have[0], 2 * have[1], 2 * have[2], 2 * have[3])
            if block.architecture == "resnet":
                y = block.skip(x, gain=math.sqrt(0.5))
                y = _slice(y, up_box, out_box)
                h = _layer(block.conv0, x, next(w_iter), up_box, noise_mode)
                h = _slice(h, up_box, mid)
                h = _layer(block.conv1, h, next(w_iter), mid, noise_mode, gain=math.sqrt(0.5))
                x = y + _slice(h, mid, out_box)
            else:
                h = _layer(block.conv0, x, next(w_iter), up_box, noise_mode)
                h = _slice(h, up_box, mid)
                h = _layer(block.conv1, h, next(w_iter), mid, noise_mode)
                x = _slice(h, mid, out_box)
        have = out_box
        if r == res:
            break
    assert x is not None
    return x, (box[0], box[1])


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
    block_size = getattr(G.synthesis, "block_size", _square)
    return FeatureSource(kind, index, f"b{index}", channels, FeatureGeometry.resized(hw, block_size(index)))


def source_features(
    G: Any, ws: torch.Tensor, src: FeatureSource, box: Box | None = None, *, noise_mode: str = "const",
) -> tuple[torch.Tensor, tuple[int, int]]:
    """The map of ``src`` for codes ``ws`` ``(1, num_ws, w_dim)``, on ``box`` (map pixels, end exclusive) if given.

    Returns:
        ``(feat (1, C, y1 - y0, x1 - x0), origin (x0, y0))``, as :func:`block_features`.
    """
    if src.kind == "block":
        return block_features(G, ws, src.index, box, noise_mode=noise_mode)
    _img, feats = G.synthesis.run(ws, noise_mode=noise_mode, feature_layers=[src.index], return_image=False)
    f = feats[src.index]
    if box is None:
        return f, (0, 0)
    height, width = f.shape[2], f.shape[3]
    x0, y0, x1, y1 = box
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise ValueError(f"box {box} is not inside the {width}x{height} (width x height) map")
    return _slice(f, (0, 0, width, height), box), (x0, y0)
