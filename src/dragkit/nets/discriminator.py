"""StyleGAN2 discriminator (resnet architecture) in pure PyTorch.

Written from Karras et al., "Analyzing and Improving the Image Quality of
StyleGAN" (CVPR 2020), with module and parameter names of NVIDIA's
``stylegan2-ada-pytorch`` ``networks.py`` (``b64.fromrgb.weight``,
``b64.conv0.weight``, ``b64.conv1.weight``, ``b64.skip.weight``,
``b4.conv.weight``, ``b4.fc.weight``, ``b4.out.weight``, ...), so the
arithmetic matches NVIDIA's ``Discriminator`` with ``architecture='resnet'``:
equalised learning rate, FIR ``[1, 3, 3, 1]`` downsampling, residual blocks
scaled by ``sqrt(0.5)``, a minibatch standard deviation layer and a
4 x 4 epilogue.  Resampling filters are not part of the state dict.

Saving and loading (``NAME.disc.safetensors`` + ``NAME.disc.json``, beside
an exported generator) live in :mod:`dragkit.train.export`, since ``nets``
imports nothing from the rest of dragkit.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from .generator import Conv2dLayer, FullyConnectedLayer

__all__ = ["Discriminator", "minibatch_std"]


def _disc_conv(in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
               activation: str = "linear", down: int = 1, conv_clamp: float | None = None) -> Conv2dLayer:
    """A discriminator layer: :class:`~dragkit.nets.generator.Conv2dLayer` with the FIR
    ``[1, 3, 3, 1]`` for downsampling, the filter not part of the state dict."""
    return Conv2dLayer(in_channels, out_channels, kernel_size, bias=bias, activation=activation, down=down,
                       conv_clamp=conv_clamp, filter_in_state_dict=False)


class DiscriminatorBlock(nn.Module):
    """One resnet block: (fromrgb) -> conv0 -> conv1 (down 2), plus 1x1 skip."""

    def __init__(
        self, in_channels: int, tmp_channels: int, out_channels: int, img_channels: int,
        conv_clamp: float | None,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        if in_channels == 0:
            self.fromrgb = _disc_conv(img_channels, tmp_channels, 1, activation="lrelu", conv_clamp=conv_clamp)
        self.conv0 = _disc_conv(tmp_channels, tmp_channels, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.conv1 = _disc_conv(
            tmp_channels, out_channels, 3, activation="lrelu", down=2, conv_clamp=conv_clamp
        )
        self.skip = _disc_conv(tmp_channels, out_channels, 1, bias=False, down=2)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor) -> torch.Tensor:
        if self.in_channels == 0:
            x = self.fromrgb(img)
        assert x is not None
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv0(x)
        x = self.conv1(x, gain=math.sqrt(0.5))
        return y + x


def minibatch_std(x: torch.Tensor, group_size: int, num_channels: int = 1) -> torch.Tensor:
    """Append the per-group standard deviation as ``num_channels`` feature maps.

    ``x (N, C, H, W)`` -> ``(N, C + num_channels, H, W)``.  ``N`` must be
    divisible by ``min(group_size, N)``.
    """
    n, c, h, w = x.shape
    g = min(group_size, n)
    if n % g != 0:
        raise ValueError(f"batch size {n} is not divisible by the mbstd group size {g}")
    f = num_channels
    y = x.reshape(g, -1, f, c // f, h, w)
    y = y - y.mean(dim=0)
    y = y.square().mean(dim=0)
    y = (y + 1e-8).sqrt()
    y = y.mean(dim=[2, 3, 4])
    y = y.reshape(-1, f, 1, 1)
    y = y.repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(nn.Module):
    """4 x 4 head: minibatch std -> 3x3 conv -> fc -> scalar logit."""

    def __init__(
        self, in_channels: int, resolution: int, mbstd_group_size: int, mbstd_num_channels: int,
        conv_clamp: float | None,
    ) -> None:
        super().__init__()
        self.mbstd_group_size = mbstd_group_size
        self.mbstd_num_channels = mbstd_num_channels
        self.conv = _disc_conv(
            in_channels + mbstd_num_channels, in_channels, 3, activation="lrelu", conv_clamp=conv_clamp
        )
        self.fc = FullyConnectedLayer(in_channels * resolution**2, in_channels, activation="lrelu")
        self.out = FullyConnectedLayer(in_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mbstd_num_channels > 0:
            x = minibatch_std(x, self.mbstd_group_size, self.mbstd_num_channels)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        return self.out(x)


class Discriminator(nn.Module):
    """StyleGAN2 discriminator, resnet architecture, unconditional.

    Args:
        img_resolution: input resolution (power of two >= 8).
        img_channels: input channels (3 for RGB).
        channel_base: channels at resolution ``r`` are
            ``min(channel_base // r, channel_max)``.
        channel_max: cap on the channel count.
        mbstd_group_size: group size of the minibatch std layer (NVIDIA: 4).
        mbstd_num_channels: number of std feature maps (NVIDIA: 1).
        conv_clamp: clamp of conv outputs (NVIDIA: 256), or None.
        c_dim: must be 0 (class-conditional discrimination is not needed
            here); accepted for symmetry with the generator.

    ``D(img (N, C, R, R) in [-1, 1]) -> logits (N, 1)``.
    """

    def __init__(
        self,
        img_resolution: int,
        img_channels: int = 3,
        channel_base: int = 32768,
        channel_max: int = 512,
        mbstd_group_size: int = 4,
        mbstd_num_channels: int = 1,
        conv_clamp: float | None = 256,
        c_dim: int = 0,
        architecture: str = "resnet",
    ) -> None:
        super().__init__()
        log2 = int(np.log2(img_resolution)) if img_resolution > 0 else 0
        if img_resolution < 8 or 2**log2 != img_resolution:
            raise ValueError(f"img_resolution must be a power of two >= 8, got {img_resolution}")
        if c_dim != 0:
            raise ValueError("the dragkit discriminator is unconditional (c_dim must be 0)")
        if architecture != "resnet":
            raise ValueError(f"only architecture='resnet' is implemented, got {architecture!r}")
        self.img_resolution = int(img_resolution)
        self.img_channels = int(img_channels)
        self.c_dim = 0
        self.init_kwargs: dict[str, Any] = {
            "img_resolution": int(img_resolution),
            "img_channels": int(img_channels),
            "channel_base": int(channel_base),
            "channel_max": int(channel_max),
            "mbstd_group_size": int(mbstd_group_size),
            "mbstd_num_channels": int(mbstd_num_channels),
            "conv_clamp": conv_clamp,
            "c_dim": 0,
            "architecture": "resnet",
        }
        self.block_resolutions = [2**i for i in range(log2, 2, -1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions + [4]}
        for res in self.block_resolutions:
            in_channels = channels[res] if res < img_resolution else 0
            block = DiscriminatorBlock(in_channels, channels[res], channels[res // 2], img_channels, conv_clamp)
            setattr(self, f"b{res}", block)
        self.b4 = DiscriminatorEpilogue(channels[4], 4, mbstd_group_size, mbstd_num_channels, conv_clamp)

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None, **_: Any) -> torch.Tensor:
        """``img (N, C, R, R)`` in [-1, 1] -> logits ``(N, 1)`` (real > fake)."""
        if img.ndim != 4 or img.shape[1] != self.img_channels or img.shape[2] != self.img_resolution \
                or img.shape[3] != self.img_resolution:
            raise ValueError(
                f"expected images [N, {self.img_channels}, {self.img_resolution}, {self.img_resolution}], "
                f"got {list(img.shape)}"
            )
        x = None
        for res in self.block_resolutions:
            x = getattr(self, f"b{res}")(x, img)
        return self.b4(x)
