"""StyleGAN2 generator in pure PyTorch, with NVIDIA's parameter names.

Written from Karras et al., "Analyzing and Improving the Image Quality of
StyleGAN" (CVPR 2020) and "Training Generative Adversarial Networks with
Limited Data" (NeurIPS 2020).  Module and parameter names follow NVIDIA's
``stylegan2-ada-pytorch`` / ``stylegan3`` ``networks_stylegan2.py`` so that
an NVIDIA ``G_ema.state_dict()`` loads here with ``strict=True``:

    mapping.fc0.weight, mapping.fc0.bias, ..., mapping.embed.*, mapping.w_avg
    synthesis.b4.const, synthesis.b4.conv1.{weight,bias,noise_const,
    noise_strength,affine.weight,affine.bias,resample_filter},
    synthesis.b8.conv0.*, synthesis.b8.torgb.*, synthesis.b8.skip.weight, ...

Extras over NVIDIA (keyword-only, so NVIDIA-style calls behave the same):
:meth:`SynthesisNetwork.run` returns the output of any block and stops after
the last one asked for, and :meth:`SynthesisNetwork.run_window` computes a
block's output on a box only (every block on the box it needs), which are
the hot paths of a drag step.

Windowed runs: the synthesis network is fully convolutional - the const
input, the (const) noise, the modulated 3x3 convolutions (demodulation
rescales whole filters, never mixes pixels) and the FIR up-sampling are all
local - so a block's output on a box depends only on a slightly larger box
of the previous block's output (:meth:`SynthesisBlock.input_box`).  A
windowed layer evaluates the modulated convolution in its "scale the
activations" form (:func:`~.ops.scaled_modulated_conv2d`), whose weight is a
constant: a drag's backward pass then needs no weight gradient.  The result
equals the full synthesis up to float summation order (tests/test_nets.py).
"""
# Why this module is long (~700 lines): one architecture mirroring NVIDIA's networks_stylegan2.py
# (state dicts map name by name), plus the windowed run, which must live beside the layers it re-uses.
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import numpy as np
import torch
from torch import nn

from .base import GeneratorBase, jsonable
from .ops import (
    bias_act,
    cached_on_weight,
    conv2d_resample,
    demodulation_coefs,
    modulated_conv2d,
    normalize_2nd_moment,
    scaled_modulated_conv2d,
    setup_filter,
    upsample2d,
)
from .window import Box, check_box, contains, crop, dilate

NOISE_MODES = ("const", "random", "none")
ARCHITECTURES = ("orig", "skip", "resnet")
# Pixels of the half-size map that an up-sampling layer (3x3 transposed conv
# or the resnet's 1x1, stride 2, then the 4-tap FIR) reads beyond the half of
# its output box, on each side (SynthesisBlock.input_box).
_UP_REACH = 1


class FullyConnectedLayer(nn.Module):
    """Equalised-learning-rate linear layer.

    Weights are stored as ``randn / lr_multiplier`` and scaled at run time by
    ``lr_multiplier / sqrt(in_features)``, as in NVIDIA's code.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "linear",
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_features)`` -> ``(N, out_features)``."""
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)


class Conv2dLayer(nn.Module):
    """Equalised-learning-rate convolution with optional 2x FIR up- or downsampling (NVIDIA's
    ``Conv2dLayer``): the synthesis network's resnet skip path and every discriminator layer.

    ``filter_in_state_dict``: the ``resample_filter`` buffer is saved with the weights (the
    generator, as NVIDIA's state dicts hold it) or not (dragkit's discriminator files).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",
        up: int = 1,
        resample_filter: Iterable[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        down: int = 1,
        filter_in_state_dict: bool = True,
    ) -> None:
        super().__init__()
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(tuple(resample_filter)),
                             persistent=filter_in_state_dict)
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = self.weight * self.weight_gain
        x = conv2d_resample(x, w.to(x.dtype), f=self.resample_filter, up=self.up, padding=self.padding,
                            down=self.down)
        act_gain = (math.sqrt(2) if self.activation == "lrelu" else 1.0) * gain
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, act=self.activation, gain=act_gain, clamp=act_clamp)


class MappingNetwork(nn.Module):
    """z (and optional class label c) -> w, broadcast to ``num_ws`` codes."""

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int | None,
        num_layers: int = 8,
        embed_features: int | None = None,
        layer_features: int | None = None,
        activation: str = "lrelu",
        lr_multiplier: float = 0.01,
        w_avg_beta: float | None = 0.995,
    ) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(
                features[idx], features[idx + 1], activation=activation, lr_multiplier=lr_multiplier
            )
            setattr(self, f"fc{idx}", layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
        skip_w_avg_update: bool = False,
    ) -> torch.Tensor:
        """``z (N, z_dim)``, ``c (N, c_dim)`` -> ``ws (N, num_ws, w_dim)``."""
        x = None
        if self.z_dim > 0:
            x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            if c is None or c.ndim != 2 or c.shape[1] != self.c_dim:
                raise ValueError(f"this generator is conditional: c must have shape [N, {self.c_dim}]")
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if update_emas and not skip_w_avg_update and self.w_avg_beta is not None:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            if self.num_ws is None or truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                x = x.clone()
                x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv + noise + bias + leaky ReLU (optionally 2x up).

    Output maps are ``resolution x resolution``, or ``resolution x
    resolution // 2`` (height x width) when ``square`` is False
    (StyleGAN-Human's portrait generators).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        kernel_size: int = 3,
        up: int = 1,
        use_noise: bool = True,
        activation: str = "lrelu",
        resample_filter: Iterable[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        square: bool = True,
    ) -> None:
        super().__init__()
        self.resolution = resolution
        self.square = bool(square)
        self.width = resolution if self.square else resolution // 2
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(tuple(resample_filter)))
        self.padding = kernel_size // 2
        self.act_gain = math.sqrt(2) if activation == "lrelu" else 1.0
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, self.width]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random", gain: float = 1.0,
        box: Box | None = None,
    ) -> torch.Tensor:
        """Modulated conv, noise, bias and activation.

        Args:
            x: ``(N, C_in, h, w)``: the whole input map, or (with ``box``) the
                input on the box this call's output covers (half of it when
                ``up`` is 2).
            w: ``(N, w_dim)``.
            noise_mode: ``'random'``, ``'const'`` or ``'none'``; a windowed
                call takes ``'const'`` or ``'none'``.
            box: None for the whole map (NVIDIA's fused form); else the box of
                this layer's output map that the output covers (windowed run:
                "scale the activations" form, the noise cropped to ``box``).

        Returns:
            ``(N, C_out, h * up, w * up)``.
        """
        styles = self.affine(w)
        if box is None:
            noise = None
            if self.use_noise and noise_mode == "random":
                noise = torch.randn([x.shape[0], 1, self.resolution, self.width], device=x.device) * self.noise_strength
            elif self.use_noise and noise_mode == "const":
                noise = self.noise_const * self.noise_strength
            x = modulated_conv2d(
                x, self.weight, styles, noise=noise, up=self.up, padding=self.padding,
                resample_filter=self.resample_filter,
            )
        else:
            if noise_mode == "random":
                raise ValueError("random noise is drawn for the whole map; a windowed run takes 'const' or 'none'")
            x = scaled_modulated_conv2d(x, self.weight, styles, demodulation_coefs(self.weight_sq(), styles),
                                        up=self.up, padding=self.padding, resample_filter=self.resample_filter)
            if self.use_noise and noise_mode == "const":
                x0, y0, x1, y1 = box
                x = x + self.noise_const[y0:y1, x0:x1] * self.noise_strength
        act_gain = self.act_gain * gain
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, act=self.activation, gain=act_gain, clamp=act_clamp)

    def weight_sq(self) -> torch.Tensor:
        """``sum over the kernel of weight^2``, ``(C_out, C_in)`` (for :func:`~.ops.demodulation_coefs`).

        Cached until the weight changes (a drag calls it every step with the
        same weight); computed afresh, with its gradient, while the weight
        itself is being trained.
        """
        return cached_on_weight(self.weight, "_dragkit_weight_sq", lambda t: t.square().sum(dim=[2, 3]))


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv to image channels, no demodulation."""

    def __init__(
        self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network (const or 2x up, two convs)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        is_last: bool,
        architecture: str = "skip",
        resample_filter: Iterable[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        square: bool = True,
        **layer_kwargs: Any,
    ) -> None:
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.resolution = resolution
        self.is_last = is_last
        self.architecture = architecture
        self.square = bool(square)
        self.width = resolution if self.square else resolution // 2
        layer_kwargs["square"] = self.square
        resample_filter = tuple(resample_filter)
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, self.width]))
        else:
            self.conv0 = SynthesisLayer(
                in_channels, out_channels, w_dim, resolution, up=2,
                resample_filter=resample_filter, conv_clamp=conv_clamp, **layer_kwargs,
            )
            self.num_conv += 1
        self.conv1 = SynthesisLayer(
            out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp, **layer_kwargs
        )
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(
                in_channels, out_channels, kernel_size=1, bias=False, up=2, resample_filter=resample_filter
            )

    def forward(
        self,
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        ws: torch.Tensor,
        noise_mode: str = "random",
        want_img: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run the block.

        Args:
            x: ``(N, C_in, R/2, W/2)`` or None for the first block (``W`` = R,
                or R/2 when not square).
            img: running RGB image ``(N, C_img, R/2, W/2)`` or None.
            ws: ``(N, num_conv + num_torgb, w_dim)``.
            want_img: when False, the RGB branch is skipped (feature-only run).

        Returns:
            ``(x (N, C_out, R, W), img (N, C_img, R, W) or None)``.
        """
        w_iter = iter(ws.unbind(dim=1))
        x = self._features(x, w_iter, noise_mode)
        if not want_img:
            return x, None
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter))
            img = img + y if img is not None else y
        return x, img

    def input_box(self, box: Box) -> Box | None:
        """The box of the previous block's output that this block's output on ``box`` depends on.

        ``box`` is in this block's map; the answer is in the previous block's
        (half-size) map, clipped to it; None for the first block (its input
        is the learned constant).  conv1 (3x3) reads one pixel around
        ``box``; conv0 and the resnet skip (3x3 / 1x1 transposed, stride 2,
        then the 4-tap FIR) read one more pixel of the half-size map around
        that box's half.  One is exact: tests check it on random boxes of
        every architecture.
        """
        if self.in_channels == 0:
            return None
        x0, y0, x1, y1 = dilate(box, self.conv1.padding, (self.width, self.resolution))
        m = _UP_REACH
        w, h = self.width // 2, self.resolution // 2
        return max(x0 // 2 - m, 0), max(y0 // 2 - m, 0), min(-(-x1 // 2) + m, w), min(-(-y1 // 2) + m, h)

    def run_window(
        self, x: torch.Tensor | None, in_box: Box | None, ws: torch.Tensor, box: Box, noise_mode: str = "const",
    ) -> torch.Tensor:
        """This block's feature output on ``box`` only (no RGB branch).

        Args:
            x: ``(N, C_in, h, w)``, the previous block's output on ``in_box``
                (None for the first block).
            in_box: a box of the previous block's map that contains
                :meth:`input_box` of ``box``.
            ws: ``(N, num_conv + num_torgb, w_dim)``, as for :meth:`forward`.
            box: ``(x0, y0, x1, y1)`` in this block's map, end exclusive.
            noise_mode: ``'const'`` or ``'none'``.

        Returns:
            ``(N, C_out, y1 - y0, x1 - x0)``: the same numbers as
            :meth:`forward`'s ``x`` on ``box``, up to float summation order.

        Raises:
            ValueError: a box outside its map, or an ``in_box`` that misses
                part of what ``box`` needs.
        """
        box = check_box(box, (self.width, self.resolution))
        need = self.input_box(box)
        if need is not None:
            if in_box is None or x is None or not contains(tuple(in_box), need):
                raise ValueError(f"b{self.resolution} on {box} needs the previous block on {need}, got {in_box}")
            if tuple(x.shape[2:]) != (in_box[3] - in_box[1], in_box[2] - in_box[0]):
                raise ValueError(f"x is {list(x.shape[2:])} (height, width), in_box {in_box} is not")
        return self._features(x, iter(ws.unbind(dim=1)), noise_mode, box, in_box)

    def _features(
        self, x: torch.Tensor | None, w_iter: Any, noise_mode: str, box: Box | None = None,
        in_box: Box | None = None,
    ) -> torch.Tensor:
        """The convolutions: the whole map when ``box`` is None, else the output on ``box``
        (``x`` covering ``in_box``).  Windowed, each layer runs on the box its
        output needs and is cropped to what the next one reads."""
        if box is None:
            mid = up = None
        else:
            mid = dilate(box, self.conv1.padding, (self.width, self.resolution))  # conv1's input
            up = None if in_box is None else tuple(2 * v for v in in_box)  # conv0's output

        def cut(t: torch.Tensor, have: Box | None, want: Box | None) -> torch.Tensor:
            return t if have is None or want is None else crop(t, have, want)

        if self.in_channels == 0:
            c = self.const if mid is None else self.const[:, mid[1] : mid[3], mid[0] : mid[2]]
            w = next(w_iter)
            x = self.conv1(c.unsqueeze(0).expand(w.shape[0], -1, -1, -1), w, noise_mode=noise_mode, box=mid)
            return cut(x, mid, box)
        assert x is not None
        if self.architecture == "resnet":
            y = cut(self.skip(x, gain=math.sqrt(0.5)), up, box)
            h = cut(self.conv0(x, next(w_iter), noise_mode=noise_mode, box=up), up, mid)
            h = self.conv1(h, next(w_iter), noise_mode=noise_mode, gain=math.sqrt(0.5), box=mid)
            return y + cut(h, mid, box)
        h = cut(self.conv0(x, next(w_iter), noise_mode=noise_mode, box=up), up, mid)
        return cut(self.conv1(h, next(w_iter), noise_mode=noise_mode, box=mid), mid, box)


class SynthesisNetwork(nn.Module):
    """W+ codes -> image, block by block (``b4``, ``b8``, ..., ``b{res}``)."""

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        square: bool = True,
        **block_kwargs: Any,
    ) -> None:
        super().__init__()
        log2 = int(np.log2(img_resolution)) if img_resolution > 0 else 0
        if img_resolution < 4 or 2**log2 != img_resolution:
            raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        if not isinstance(square, (bool, np.bool_)):
            raise ValueError(f"square must be True or False, got {square!r}")
        self.square = bool(square)
        # fp16 is a CUDA speed trick of NVIDIA's training; dragkit computes in
        # fp32 everywhere, so the setting is accepted and recorded only.
        self.num_fp16_res = num_fp16_res
        self.block_resolutions = [2**i for i in range(2, log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        # Keyword arguments of NVIDIA's block that do not change the maths.
        for key in ("fp16_channels_last", "use_fp16", "fused_modconv_default"):
            block_kwargs.pop(key, None)
        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = channels[res // 2] if res > 4 else 0
            is_last = res == img_resolution
            block = SynthesisBlock(
                in_channels, channels[res], w_dim=w_dim, resolution=res,
                img_channels=img_channels, is_last=is_last, square=self.square, **block_kwargs,
            )
            self.num_ws += block.num_conv
            if is_last:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)

    def block_channels(self, res: int) -> int:
        """Number of feature channels output by block ``b{res}``."""
        return self.block(res).out_channels

    def block_size(self, res: int) -> tuple[int, int]:
        """``(height, width)`` of block ``b{res}``'s maps: ``(res, res)``, or ``(res, res // 2)`` when not square."""
        return res, (res if self.square else res // 2)

    @property
    def img_width(self) -> int:
        """Output width in pixels (``img_resolution``, or half of it when not square)."""
        return self.block_size(self.img_resolution)[1]

    def block(self, res: int) -> SynthesisBlock:
        """Synthesis block ``b{res}``."""
        if res not in self.block_resolutions:
            raise ValueError(f"no synthesis block at resolution {res}; blocks: {self.block_resolutions}")
        return getattr(self, f"b{res}")

    def split_ws(self, ws: torch.Tensor) -> list[torch.Tensor]:
        """``ws (N, num_ws, w_dim)`` -> the codes of each block, ``(N, num_conv + num_torgb, w_dim)``,
        in ``block_resolutions`` order (a block's ToRGB code is the next block's first)."""
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(
                f"ws must have shape [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}"
            )
        out, idx = [], 0
        for res in self.block_resolutions:
            block = self.block(res)
            out.append(ws.narrow(1, idx, block.num_conv + block.num_torgb))
            idx += block.num_conv
        return out

    # -- windowed runs (see the module docstring) ------------------------------
    def can_window(self, noise_mode: str) -> bool:
        """Whether :meth:`run_window` can run with ``noise_mode`` (random noise is drawn for whole maps)."""
        return noise_mode in ("const", "none")

    def input_box(self, res: int, box: Box) -> tuple[int, Box] | None:
        """``(r, box_r)``: the block ``b{res}`` reads and the box of its output that ``box`` of
        ``b{res}`` depends on; None for the first block.  Chained from a feature block
        down to ``b4``, this plans a :meth:`run_window` (``dragkit.drag.features.crop_plan``)."""
        need = self.block(res).input_box(box)
        return None if need is None else (res // 2, need)

    def run_window(
        self, ws: torch.Tensor, res: int, boxes: Mapping[int, Box], noise_mode: str = "const",
    ) -> torch.Tensor:
        """Output of block ``b{res}`` on ``boxes[res]``, every block up to it computed on its box only.

        Args:
            ws: ``(N, num_ws, w_dim)``.
            res: the block whose output is returned.
            boxes: ``{r: (x0, y0, x1, y1)}`` for every block ``r <= res``, each
                in its own map; ``boxes[r // 2]`` must contain
                ``input_box(r, boxes[r])``.
            noise_mode: ``'const'`` or ``'none'``.

        Returns:
            ``(N, C_res, y1 - y0, x1 - x0)`` for ``boxes[res]``: the full
            synthesis's block output there, up to float summation order.

        Raises:
            ValueError: unknown block, a random ``noise_mode``, or boxes that
                do not fit together.
        """
        self.block(res)
        if not self.can_window(noise_mode):
            raise ValueError(f"a windowed run takes noise_mode 'const' or 'none', got {noise_mode!r}")
        x: torch.Tensor | None = None
        have: Box | None = None
        for r, block_ws in zip(self.block_resolutions, self.split_ws(ws)):
            x = self.block(r).run_window(x, have, block_ws, boxes[r], noise_mode=noise_mode)
            have = boxes[r]
            if r == res:
                break
        assert x is not None
        return x

    def run(
        self,
        ws: torch.Tensor,
        noise_mode: str = "const",
        feature_blocks: Iterable[int] = (),
        return_image: bool = True,
    ) -> tuple[torch.Tensor | None, dict[int, torch.Tensor]]:
        """Synthesise, returning block features and (optionally) the image.

        Args:
            ws: ``(N, num_ws, w_dim)`` W+ codes.
            noise_mode: ``'const'``, ``'random'`` or ``'none'``.
            feature_blocks: resolutions whose block output ``x`` to return
                (e.g. ``[32]`` for ``b32``).
            return_image: when False, synthesis stops after the highest block
                in ``feature_blocks`` and the RGB branch is never evaluated.

        Returns:
            ``(img (N, C_img, H, W) in ~[-1, 1] or None, {res: (N, C_res, *block_size(res))})``
            with ``H = img_resolution`` and ``W = img_width``.
        """
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        wanted = set(int(r) for r in feature_blocks)
        unknown = wanted - set(self.block_resolutions)
        if unknown:
            raise ValueError(f"no synthesis block at resolution(s) {sorted(unknown)}; blocks: {self.block_resolutions}")
        last = self.img_resolution if return_image or not wanted else max(wanted)
        feats: dict[int, torch.Tensor] = {}
        x = img = None
        for res, block_ws in zip(self.block_resolutions, self.split_ws(ws)):
            block = self.block(res)
            x, img = block(x, img, block_ws, noise_mode=noise_mode, want_img=return_image)
            if res in wanted:
                feats[res] = x
            if res == last:
                break
        return (img if return_image else None), feats

    def forward(self, ws: torch.Tensor, noise_mode: str = "const", **_: Any) -> torch.Tensor:
        """``ws (N, num_ws, w_dim)`` -> image ``(N, C_img, H, W)`` in ~[-1, 1]."""
        img, _feats = self.run(ws, noise_mode=noise_mode)
        return img


class Generator(GeneratorBase):
    """StyleGAN2 generator: ``G(z, c) -> image``, a drop-in for NVIDIA's.

    Args:
        z_dim: latent size (0 allowed only with ``c_dim > 0``).
        c_dim: class-label size, 0 for unconditional.
        w_dim: intermediate latent size.
        img_resolution: output resolution, the image height ``H`` (power of
            two, 4..1024+).
        img_channels: output channels (3 for RGB).
        mapping_kwargs: ``num_layers`` (default 8), ``lr_multiplier``
            (0.01), ``embed_features``, ``layer_features``, ``w_avg_beta``.
        synthesis_kwargs: ``channel_base`` (32768), ``channel_max`` (512),
            ``architecture`` ('skip' | 'orig' | 'resnet'), ``conv_clamp``
            (None or e.g. 256), ``num_fp16_res`` (recorded; fp32 compute),
            ``square`` (default True; False gives StyleGAN-Human's
            ``H x H/2`` images: a ``4 x 2`` const and every map ``R x R/2``).
            May also be passed flat as keywords (stylegan3 code base style);
            they are recorded nested in ``init_kwargs["synthesis_kwargs"]``.

    ``img_height``/``img_width`` give the image size (``H x H`` or ``H x H/2``).
    """

    network_name = "stylegan2.Generator"

    def _build(self, mapping_kwargs: dict[str, Any], synthesis_kwargs: dict[str, Any]) -> tuple[nn.Module, nn.Module]:
        synthesis = SynthesisNetwork(w_dim=self.w_dim, img_resolution=self.img_resolution,
                                     img_channels=self.img_channels, **synthesis_kwargs)
        mapping = MappingNetwork(z_dim=self.z_dim, c_dim=self.c_dim, w_dim=self.w_dim, num_ws=synthesis.num_ws,
                                 **mapping_kwargs)
        return synthesis, mapping

    @property
    def img_width(self) -> int:
        """Image width in pixels: ``img_resolution``, or half of it for a non-square generator."""
        return self.synthesis.img_width

