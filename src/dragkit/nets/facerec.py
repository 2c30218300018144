"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1``) in PyTorch.

The network of dlib's ``examples/dnn_face_recognition_ex.cpp`` (Davis King;
a ResNet-34 variant with 29 convolutions, 128-d metric-learning output),
written here from that definition so that a differentiable face-feature
network exists offline.  Its weights are read from dlib's own file by
:func:`dragkit.invert.facerec.load_face_recognition_net`; with them the
descriptors match ``dlib.face_recognition_model_v1.compute_face_descriptor``
on the same 150 x 150 chip to float32 rounding (tests/test_invert_facerec.py).

dlib's conventions, kept exactly:
- input: an RGB chip ``(N, 3, 150, 150)``, each channel ``(pixel - mean) / 256``
  (means 122.782, 117.001, 104.298 on the 0-255 scale, read from the file);
- strided convolutions and poolings have no padding (dlib's default for a
  stride other than 1), 3x3 stride-1 convolutions pad by 1;
- batch norm was frozen into per-channel ``affine`` layers (``x * gamma + beta``);
- a residual sum of tensors of different sizes (the strided branch is one
  pixel smaller where the size is even, and the shortcut has fewer
  channels) is taken over the larger size with the missing part of the
  smaller tensor read as zeros (dlib's ``add_prev``), placed at the start
  of each axis;
- the descriptor is the raw output of the last (bias-free) linear layer,
  not normalised; dlib calls two faces the same person below a Euclidean
  distance of 0.6.

Shapes (150 px input): stem 7x7/2 -> 72, max-pool 3/2 -> 35 (32 ch);
stages 32@35, 64@17, 128@8, 256@4, 256@2; global mean; 256 -> 128.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FaceRecResNet", "STAGES", "LAYERS", "INPUT_SIZE", "DEFAULT_MEAN_RGB", "SAME_PERSON_DISTANCE"]

INPUT_SIZE = 150
DEFAULT_MEAN_RGB = (122.782, 117.001, 104.298)
SAME_PERSON_DISTANCE = 0.6

# (channels, residual blocks, first block halves the size), input to output.
STAGES: tuple[tuple[int, int, bool], ...] = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))


def _layer_list() -> list[tuple[Any, ...]]:
    """dlib's layer sequence, input to output, derived from :data:`STAGES` (what the file reader walks)."""
    layers: list[tuple[Any, ...]] = [("con", 32, 7, 2), ("affine", 32), ("relu",), ("max_pool", 3, 2)]
    for ch, n, down in STAGES:
        for i in range(n):
            stride = 2 if (down and i == 0) else 1
            layers += [("tag", 1), ("con", ch, 3, stride), ("affine", ch), ("relu",), ("con", ch, 3, 1), ("affine", ch)]
            if stride == 2:  # residual_down: add_prev2<avg_pool<skip1<tag2<block<tag1>>>>>
                layers += [("tag", 2), ("skip", 1), ("avg_pool", 2, 2), ("add_prev", 2)]
            else:  # residual: add_prev1<block<tag1>>
                layers += [("add_prev", 1)]
            layers += [("relu",)]
    layers += [("avg_pool", 0, 1), ("fc", 128)]
    return layers


LAYERS: tuple[tuple[Any, ...], ...] = tuple(_layer_list())


class Affine(nn.Module):
    """Frozen batch norm: ``x * gamma + beta`` per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma[None, :, None, None] + self.beta[None, :, None, None]


def add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev``: ``a + b`` over the larger of each dimension, the smaller one zero-extended at the end."""
    if a.shape == b.shape:
        return a + b
    shape = [max(x, y) for x, y in zip(a.shape, b.shape)]

    def grow(t: torch.Tensor) -> torch.Tensor:
        # F.pad takes (last-dim left, right, ..., ) pairs.
        pads = []
        for have, want in zip(reversed(t.shape), reversed(shape)):
            pads += [0, want - have]
        return F.pad(t, pads)

    return grow(a) + grow(b)


class ResBlock(nn.Module):
    """dlib's ``ares`` / ``ares_down``: conv-affine-relu-conv-affine, plus the (pooled) input, relu."""

    def __init__(self, in_channels: int, channels: int, down: bool) -> None:
        super().__init__()
        self.down = down
        stride = 2 if down else 1
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=0 if down else 1)
        self.aff1 = Affine(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.aff2 = Affine(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.aff2(self.conv2(F.relu(self.aff1(self.conv1(x)))))
        skip = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(add_padded(y, skip))


class FaceRecResNet(nn.Module):
    """The 128-d face descriptor network.

    ``forward(x)``: ``x (N, 3, 150, 150)`` float RGB on the 0-255 scale (a
    dlib face chip) -> descriptors ``(N, 128)``.  Differentiable in ``x``.
    :meth:`features` also returns the stage outputs, for perceptual losses.
    Parameters and the mean buffer are filled by
    :func:`dragkit.invert.facerec.load_face_recognition_net`; a fresh module
    holds random weights.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean_rgb", torch.tensor(DEFAULT_MEAN_RGB, dtype=torch.float32))
        self.conv0 = nn.Conv2d(3, 32, 7, stride=2, padding=0)
        self.aff0 = Affine(32)
        blocks = []
        c_in = 32
        for ch, n, down in STAGES:
            stage = [ResBlock(c_in, ch, down)] + [ResBlock(ch, ch, False) for _ in range(n - 1)]
            blocks.append(nn.Sequential(*stage))
            c_in = ch
        self.stages = nn.ModuleList(blocks)
        self.fc = nn.Linear(c_in, 128, bias=False)

    def ordered_params(self) -> list[tuple[str, nn.Module]]:
        """Parametrised layers in dlib's file order (input to output): ``('con'|'affine'|'fc', module)``."""
        out: list[tuple[str, nn.Module]] = [("con", self.conv0), ("affine", self.aff0)]
        for stage in self.stages:
            for blk in stage:
                out += [("con", blk.conv1), ("affine", blk.aff1), ("con", blk.conv2), ("affine", blk.aff2)]
        out.append(("fc", self.fc))
        return out

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != INPUT_SIZE or x.shape[3] != INPUT_SIZE:
            raise ValueError(f"expected face chips [N, 3, {INPUT_SIZE}, {INPUT_SIZE}], got {list(x.shape)}")

    def features(self, x: torch.Tensor, stages: Iterable[int] = ()) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(descriptors (N, 128), [output of stage i for i in stages])``; stage 0 = the 32-channel stage."""
        self._check(x)
        want = sorted(set(int(s) for s in stages))
        x = (x - self.mean_rgb[None, :, None, None]) / 256.0
        x = F.max_pool2d(F.relu(self.aff0(self.conv0(x))), 3, 2)  # (N, 32, 35, 35)
        feats = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in want:
                feats.append(x)
        return self.fc(x.mean(dim=(2, 3))), feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)[0]


def descriptor_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distance between descriptors ``(..., 128)`` (dlib's same-person test: < 0.6)."""
    return (a - b).norm(dim=-1)


def load_params(net: FaceRecResNet, params: Sequence[tuple[Any, ...]], mean_rgb: Sequence[float]) -> None:
    """Copy parsed dlib parameters (see ``ordered_params``) into ``net``; any mismatch is a ValueError."""
    slots = net.ordered_params()
    if len(params) != len(slots):
        raise ValueError(f"{len(params)} parametrised layers given, the network has {len(slots)}")
    with torch.no_grad():
        for i, ((kind, mod), p) in enumerate(zip(slots, params)):
            if p[0] != kind:
                raise ValueError(f"layer {i}: expected {kind}, got {p[0]}")
            if kind == "con":
                _, w, b, stride, pad = p
                if tuple(w.shape) != tuple(mod.weight.shape) or b is None or mod.stride != (stride, stride) \
                        or mod.padding != tuple(pad):
                    raise ValueError(f"layer {i}: conv {list(w.shape)} stride {stride} padding {pad} does not fit "
                                     f"{list(mod.weight.shape)} stride {mod.stride} padding {mod.padding}")
                mod.weight.copy_(torch.from_numpy(w))
                mod.bias.copy_(torch.from_numpy(b))
            elif kind == "affine":
                _, g, bt = p
                if g.shape[0] != mod.gamma.shape[0]:
                    raise ValueError(f"layer {i}: affine of {g.shape[0]} channels, expected {mod.gamma.shape[0]}")
                mod.gamma.copy_(torch.from_numpy(g))
                mod.beta.copy_(torch.from_numpy(bt))
            else:
                _, w = p
                if tuple(w.shape) != tuple(mod.weight.shape):
                    raise ValueError(f"layer {i}: fc {list(w.shape)}, expected {list(mod.weight.shape)}")
                mod.weight.copy_(torch.from_numpy(w))
        net.mean_rgb.copy_(torch.tensor([float(v) for v in mean_rgb], dtype=torch.float32))
