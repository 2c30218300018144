"""StyleGAN3 (alias-free) generator in pure PyTorch, with NVIDIA's parameter names.

Written from Karras et al., "Alias-Free Generative Adversarial Networks"
(NeurIPS 2021), configurations T (translation equivariant) and R (rotation
equivariant).  Module, parameter and buffer names follow NVIDIA's
``stylegan3`` code base (``training/networks_stylegan3.py``), so that an
NVIDIA ``G_ema.state_dict()`` loads here with ``strict=True``:

    mapping.fc0.weight, ..., mapping.w_avg
    synthesis.input.{weight, affine.weight, affine.bias, transform, freqs, phases}
    synthesis.L0_36_512.{weight, bias, magnitude_ema, up_filter, down_filter,
                         affine.weight, affine.bias}
    ...
    synthesis.L14_1024_3.{weight, bias, magnitude_ema, affine.*}   (ToRGB)

Layer ``L{i}_{size}_{channels}`` is the i-th synthesis layer; its map is
``size x size`` pixels.  The architecture (sizes, sampling rates, cutoffs,
channel counts, paddings) follows from the constructor arguments as in the
paper; the low-pass filters are *buffers*: a generator built here designs
them (Kaiser-windowed sinc, or the radial jinc of config R) so that it is
usable on its own, but a loaded checkpoint's ``up_filter``/``down_filter``
replace them, so the filters are always the ones the network was trained
with.  A layer whose filter is the identity has no such buffer (as NVIDIA's,
whose buffer is then ``None``).

Geometry (what a drag needs): every map is a grid of samples of one
continuous signal over the image plane.  Layer ``i`` samples it at
``s_i`` samples per image width (its *sampling rate*), on a map of
``S_i = s_i + 2 * margin`` pixels, the image being the central ``s_i x s_i``
part (``margin`` = ``margin_size``, 10 in NVIDIA's configs; the last two
layers have ``S = s = H`` and no margin).  Image pixel ``p`` (``[x, y]``,
centres at integers, image ``H x H``) lies at layer coordinate
``u = (p + 0.5) * s_i / H - 0.5 + (S_i - s_i) / 2``
(:meth:`LayerGeometry.image_to_layer`; tested on each layer's arithmetic).
DragGAN's authors instead resize layer 5's whole map, margin included, to
``H x H`` (``F.interpolate(feat, [H, W], mode='bilinear')``), which stretches
the margin over the image.

Extras over NVIDIA (keyword-only): :meth:`SynthesisNetwork.run` returns the
output of any layers and stops after the last one asked for.
"""
# Why this module is long (~670 lines): one architecture (filters, input, layer, geometry,
# network) mirroring NVIDIA's single networks_stylegan3.py, so state dicts map name by name.
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import GeneratorBase
from .generator import FullyConnectedLayer, MappingNetwork, NOISE_MODES
from .ops import filtered_lrelu, scaled_modulated_conv2d
from .window import Box, check_box, contains, crop

__all__ = [
    "Generator",
    "SynthesisNetwork",
    "SynthesisLayer",
    "SynthesisInput",
    "LayerGeometry",
    "design_lowpass_filter",
    "modulated_conv2d",
]

_MAPPING_KEYS = ("num_layers", "lr_multiplier", "w_avg_beta")
# Keyword arguments of NVIDIA's constructors that do not change inference maths.
_IGNORED_KEYS = ("use_fp16",)


# --------------------------------------------------------------------------
# Filter design (only for generators built here; checkpoints bring theirs).


def _kaiser_beta(atten_db: float) -> float:
    """Kaiser's empirical window parameter for a stopband attenuation in dB."""
    if atten_db > 50:
        return 0.1102 * (atten_db - 8.7)
    if atten_db > 21:
        return 0.5842 * (atten_db - 21) ** 0.4 + 0.07886 * (atten_db - 21)
    return 0.0


def _kaiser_atten(numtaps: int, width: float) -> float:
    """Kaiser's estimate of the attenuation (dB) of ``numtaps`` taps at transition ``width`` (of Nyquist)."""
    return 2.285 * (numtaps - 1) * math.pi * width + 7.95


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float, radial: bool = False) -> torch.Tensor | None:
    """A Kaiser-windowed low-pass FIR filter, normalised to unit DC gain.

    Args:
        numtaps: filter length; 1 means the identity (returns None).
        cutoff: cutoff frequency (same unit as ``fs``).
        width: transition band width.
        fs: sampling rate.
        radial: a radially symmetric 2-D filter (windowed jinc) instead of a
            separable 1-D windowed sinc.

    Returns:
        ``(numtaps,)`` or ``(numtaps, numtaps)`` float32, or None.
    """
    if numtaps < 1:
        raise ValueError(f"numtaps must be >= 1, got {numtaps}")
    if numtaps == 1:
        return None
    nyq = fs / 2
    beta = _kaiser_beta(_kaiser_atten(numtaps, width / nyq))
    window = np.kaiser(numtaps, beta)
    if not radial:
        m = np.arange(numtaps) - (numtaps - 1) / 2
        h = (cutoff / nyq) * np.sinc((cutoff / nyq) * m) * window
        return torch.as_tensor(h / h.sum(), dtype=torch.float32)
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = torch.as_tensor(np.hypot(*np.meshgrid(x, x)), dtype=torch.float64, device="cpu")
    arg = 2 * cutoff * math.pi * r
    safe = torch.where(r > 0, r, torch.ones_like(r))
    jinc = torch.where(r > 0, torch.special.bessel_j1(arg) / (math.pi * safe), torch.full_like(r, cutoff))
    h = jinc.numpy() * np.outer(window, window)
    return torch.as_tensor(h / h.sum(), dtype=torch.float32)


# --------------------------------------------------------------------------
# Layers.


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    padding: int = 0,
    demodulate: bool = True,
    input_gain: torch.Tensor | None = None,
) -> torch.Tensor:
    """StyleGAN3's modulated convolution.

    With ``demodulate``, the weight is first normalised per output filter to
    unit mean square and each sample's styles to unit mean square (these
    rescalings cancel in the demodulation up to its ``1e-8``; NVIDIA does
    them for fp16 range), then modulated and demodulated as in StyleGAN2.
    ``input_gain`` (a scalar tensor) scales the input channels last.

    Args:
        x: ``(N, C_in, H, W)``.
        weight: ``(C_out, C_in, k, k)``.
        styles: ``(N, C_in)``.
        padding: zero padding on each side (StyleGAN3 uses ``k - 1``: the map grows).

    Returns:
        ``(N, C_out, H + 2 * padding - k + 1, W + ...)``.
    """
    n = x.shape[0]
    c_out, c_in, kh, kw = weight.shape
    w = weight
    s = styles
    if demodulate:
        w = w * w.square().mean(dim=[1, 2, 3], keepdim=True).rsqrt()
        s = s * s.square().mean(dim=1, keepdim=True).rsqrt()
    wm = w.unsqueeze(0) * s.reshape(n, 1, c_in, 1, 1)  # (N, O, I, k, k)
    dcoefs = (wm.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt() if demodulate else None  # (N, O)
    if n > 1:
        # Batched form: scale the activations instead of building N weight sets.
        return scaled_modulated_conv2d(x, w, s if input_gain is None else s * input_gain, dcoefs, padding=padding)
    if dcoefs is not None:
        wm = wm * dcoefs.reshape(n, c_out, 1, 1, 1)
    if input_gain is not None:
        wm = wm * input_gain
    x = F.conv2d(x, wm.reshape(c_out, c_in, kh, kw).to(x.dtype), padding=padding)
    return x


class SynthesisInput(nn.Module):
    """Fourier features: ``channels`` sinusoids of random frequency, rotated and translated by w.

    Each sample's first code ``w`` gives, through ``affine``, a rotation
    ``(cos, sin)`` and a translation ``(t_x, t_y)`` (in image widths) of the
    input signal; ``transform`` is a further, user-set inverse transform of
    the output image (identity by default).  The map covers
    ``size / sampling_rate`` image widths, centred on the image.

    Buffers ``freqs (C, 2)`` (cycles per image width) and ``phases (C,)`` are
    random at construction and come from the checkpoint when loaded.
    """

    def __init__(self, w_dim: int, channels: int, size: int, sampling_rate: float, bandwidth: float) -> None:
        super().__init__()
        self.w_dim = int(w_dim)
        self.channels = int(channels)
        self.size = int(size)
        self.sampling_rate = float(sampling_rate)
        self.bandwidth = float(bandwidth)
        # Frequencies uniform in the disc of radius `bandwidth`.
        freqs = torch.randn([self.channels, 2])
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * self.bandwidth
        phases = torch.rand([self.channels]) - 0.5
        self.weight = nn.Parameter(torch.randn([self.channels, self.channels]))
        self.affine = FullyConnectedLayer(self.w_dim, 4)
        with torch.no_grad():  # starts as the identity transform
            self.affine.weight.zero_()
            self.affine.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        self.register_buffer("transform", torch.eye(3, 3))
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", phases)

    def forward(self, w: torch.Tensor, box: Box | None = None) -> torch.Tensor:
        """``w (N, w_dim)`` -> ``(N, channels, size, size)``, or only the part ``box`` of it
        (``(x0, y0, x1, y1)``, end exclusive: ``(N, channels, y1 - y0, x1 - x0)``)."""
        n = w.shape[0]
        t = self.affine(w)  # (N, 4): cos, sin, t_x, t_y (unnormalised)
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        eye = torch.eye(3, device=w.device, dtype=t.dtype)
        m_r = eye.unsqueeze(0).repeat([n, 1, 1])  # inverse rotation of the image
        m_r[:, 0, 0] = t[:, 0]
        m_r[:, 0, 1] = -t[:, 1]
        m_r[:, 1, 0] = t[:, 1]
        m_r[:, 1, 1] = t[:, 0]
        m_t = eye.unsqueeze(0).repeat([n, 1, 1])  # inverse translation of the image
        m_t[:, 0, 2] = -t[:, 2]
        m_t[:, 1, 2] = -t[:, 3]
        transforms = m_r @ m_t @ self.transform.unsqueeze(0)  # rotate, then translate, then the user's
        freqs = self.freqs.unsqueeze(0)  # (1, C, 2)
        phases = self.phases.unsqueeze(0) + (freqs @ transforms[:, :2, 2:]).squeeze(2)  # (N, C)
        freqs = freqs @ transforms[:, :2, :2]  # (N, C, 2)
        # Fade out frequencies that a user transform pushed beyond the band.
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)
        # Sample positions in image widths, centred: pixel j at (j + 0.5 - size/2) / sampling_rate.
        coords = (torch.arange(self.size, device=w.device, dtype=t.dtype) + 0.5 - self.size / 2) / self.sampling_rate
        x0, y0, x1, y1 = box if box is not None else (0, 0, self.size, self.size)
        gy, gx = torch.meshgrid(coords[y0:y1], coords[x0:x1], indexing="ij")
        grid = torch.stack([gx, gy], dim=-1)  # (S, S, 2) [x, y]
        x = torch.einsum("hwk,nck->nhwc", grid, freqs) + phases[:, None, None, :]  # (N, S, S, C)
        x = torch.sin(x * (2 * math.pi)) * amplitudes[:, None, None, :]
        x = x @ (self.weight / math.sqrt(self.channels)).t()
        return x.permute(0, 3, 1, 2).contiguous()


class SynthesisLayer(nn.Module):
    """Modulated conv + filtered leaky ReLU (up, activate, low-pass, down), or the final ToRGB.

    Args:
        w_dim: size of the code this layer reads.
        is_torgb: the last layer (1x1 conv, no demodulation, linear, no filters).
        is_critically_sampled: cutoff at Nyquist (the last layers): no radial filter.
        in_channels, out_channels: channel counts.
        in_size, out_size: map sizes in pixels (square maps).
        in_sampling_rate, out_sampling_rate: samples per image width.
        in_cutoff, out_cutoff: cutoff frequencies of the input/output signals.
        in_half_width, out_half_width: half widths of the transition bands.
        conv_kernel: 3 (config T) or 1 (config R); ToRGB always 1.
        filter_size: filter taps relative to the lower rate (6).
        lrelu_upsampling: the activation runs at this multiple of the higher rate (2).
        use_radial_filters: radial down filter for non-critical layers (config R).
        conv_clamp: clamp of the activations, or None.
        magnitude_ema_beta: decay of the input-magnitude average (training only).
    """

    def __init__(
        self,
        w_dim: int,
        is_torgb: bool,
        is_critically_sampled: bool,
        in_channels: int,
        out_channels: int,
        in_size: int,
        out_size: int,
        in_sampling_rate: int,
        out_sampling_rate: int,
        in_cutoff: float,
        out_cutoff: float,
        in_half_width: float,
        out_half_width: float,
        conv_kernel: int = 3,
        filter_size: int = 6,
        lrelu_upsampling: int = 2,
        use_radial_filters: bool = False,
        conv_clamp: float | None = 256,
        magnitude_ema_beta: float = 0.999,
    ) -> None:
        super().__init__()
        self.w_dim = int(w_dim)
        self.is_torgb = bool(is_torgb)
        self.is_critically_sampled = bool(is_critically_sampled)
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.in_size = int(in_size)
        self.out_size = int(out_size)
        self.in_sampling_rate = int(in_sampling_rate)
        self.out_sampling_rate = int(out_sampling_rate)
        self.tmp_sampling_rate = max(self.in_sampling_rate, self.out_sampling_rate) * (1 if is_torgb else int(lrelu_upsampling))
        self.in_cutoff = float(in_cutoff)
        self.out_cutoff = float(out_cutoff)
        self.in_half_width = float(in_half_width)
        self.out_half_width = float(out_half_width)
        self.conv_kernel = 1 if is_torgb else int(conv_kernel)
        self.conv_clamp = conv_clamp
        self.magnitude_ema_beta = float(magnitude_ema_beta)

        self.affine = FullyConnectedLayer(self.w_dim, self.in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([self.out_channels, self.in_channels, self.conv_kernel, self.conv_kernel]))
        self.bias = nn.Parameter(torch.zeros([self.out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))

        self.up_factor = self.tmp_sampling_rate // self.in_sampling_rate
        self.down_factor = self.tmp_sampling_rate // self.out_sampling_rate
        if self.up_factor * self.in_sampling_rate != self.tmp_sampling_rate or \
                self.down_factor * self.out_sampling_rate != self.tmp_sampling_rate:
            raise ValueError("sampling rates must divide the activation's sampling rate")
        self.up_taps = filter_size * self.up_factor if self.up_factor > 1 and not self.is_torgb else 1
        self.down_taps = filter_size * self.down_factor if self.down_factor > 1 and not self.is_torgb else 1
        self.down_radial = bool(use_radial_filters) and not self.is_critically_sampled
        self.register_buffer("up_filter", design_lowpass_filter(
            self.up_taps, self.in_cutoff, self.in_half_width * 2, self.tmp_sampling_rate))
        self.register_buffer("down_filter", design_lowpass_filter(
            self.down_taps, self.out_cutoff, self.out_half_width * 2, self.tmp_sampling_rate, radial=self.down_radial))

        # Padding of the upsampled map, so that sample centres stay where the
        # symmetric interpretation of a sampled signal puts them (paper, App. C.3).
        pad_total = (self.out_size - 1) * self.down_factor + 1
        pad_total -= (self.in_size + self.conv_kernel - 1) * self.up_factor
        pad_total += self.up_taps + self.down_taps - 2
        pad_lo = (pad_total + self.up_factor) // 2
        pad_hi = pad_total - pad_lo
        self.padding = [int(pad_lo), int(pad_hi), int(pad_lo), int(pad_hi)]

    def _interval(self, a: int, b: int) -> tuple[int, int, int, int]:
        """One axis: output samples ``[a, b)`` -> ``(ja, jb, xa, xb)``: the convolution's output
        samples ``[ja, jb)`` they read and the input samples ``[xa, xb)`` those read, both clipped
        to what exists (zeros lie beyond: the convolution's and the upsampling's zero padding)."""
        ku = 1 if self.up_filter is None else int(self.up_filter.shape[0])
        kd = 1 if self.down_filter is None else int(self.down_filter.shape[0])
        u, d, k = self.up_factor, self.down_factor, self.conv_kernel
        ua, ub = a * d, (b - 1) * d + kd  # upsampled samples the down filter reads
        # upsampled sample n reads the zero-inserted signal at n - pad_lo .. n - pad_lo + ku - 1,
        # conv output j sits at j * up there
        ja = max(-(-(ua - self.padding[0]) // u), 0)
        jb = min((ub - 2 + ku - self.padding[0]) // u + 1, self.in_size + k - 1)
        return ja, jb, max(ja - k + 1, 0), min(jb, self.in_size)

    def input_box(self, box: Box) -> Box:
        """The part of the input map that the output ``box`` (``(x0, y0, x1, y1)``) depends on."""
        _, _, xa, xb = self._interval(box[0], box[2])
        _, _, ya, yb = self._interval(box[1], box[3])
        return xa, ya, xb, yb

    def run_window(self, x: torch.Tensor, have: Box, w: torch.Tensor, box: Box) -> torch.Tensor:
        """The output on ``box`` only, from the input on ``have`` (a box that contains
        :meth:`input_box` of ``box``): the same numbers as :meth:`forward` cropped to ``box``
        (float summation order aside).

        Args:
            x: ``(N, C_in, have_h, have_w)``, the input map on ``have``.
            have, box: ``(x0, y0, x1, y1)``, end exclusive, in the input and output maps.
            w: ``(N, w_dim)``.

        Returns:
            ``(N, C_out, y1 - y0, x1 - x0)``.
        """
        k = self.conv_kernel
        jxa, jxb, xa, xb = self._interval(box[0], box[2])
        jya, jyb, ya, yb = self._interval(box[1], box[3])
        if not contains(have, (xa, ya, xb, yb)):
            raise ValueError(f"input box {have} does not contain the {(xa, ya, xb, yb)} that {box} needs")
        x = crop(x, have, (xa, ya, xb, yb))
        # the convolution's zero padding where the window reaches past the map
        x = F.pad(x, [xa - (jxa - k + 1), jxb - xb, ya - (jya - k + 1), jyb - yb])
        x = modulated_conv2d(x, self.weight, self._styles(w), padding=0, demodulate=not self.is_torgb,
                             input_gain=self.magnitude_ema.rsqrt())  # conv output on [ja, jb) per axis
        ku = 1 if self.up_filter is None else int(self.up_filter.shape[0])
        kd = 1 if self.down_filter is None else int(self.down_filter.shape[0])
        u, d = self.up_factor, self.down_factor

        def pads(a: int, b: int, ja: int, jb: int) -> list[int]:
            # the upsampling's padding for this window: its first sample is upsampled sample a * d
            lo = ja * u - (a * d - self.padding[0])
            return [lo, (b - 1) * d + kd - a * d + ku - 1 - (jb - ja) * u - lo]

        gain = 1.0 if self.is_torgb else math.sqrt(2)
        slope = 1.0 if self.is_torgb else 0.2
        return filtered_lrelu(x, self.up_filter, self.down_filter, self.bias, up=u, down=d,
                              padding=pads(box[0], box[2], jxa, jxb) + pads(box[1], box[3], jya, jyb),
                              gain=gain, slope=slope, clamp=self.conv_clamp)

    def _styles(self, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w)
        if self.is_torgb:
            styles = styles * (1 / math.sqrt(self.in_channels * self.conv_kernel**2))
        return styles

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "const", update_emas: bool = False,
                **_: Any) -> torch.Tensor:
        """``x (N, C_in, in_size, in_size)``, ``w (N, w_dim)`` -> ``(N, C_out, out_size, out_size)``.

        ``noise_mode`` is accepted for interface compatibility; StyleGAN3 has no noise inputs.
        """
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[2] != self.in_size or x.shape[3] != self.in_size:
            raise ValueError(f"expected input [N, {self.in_channels}, {self.in_size}, {self.in_size}], got {list(x.shape)}")
        if update_emas:
            with torch.no_grad():
                cur = x.detach().to(torch.float32).square().mean()
                self.magnitude_ema.copy_(cur.lerp(self.magnitude_ema, self.magnitude_ema_beta))
        input_gain = self.magnitude_ema.rsqrt()
        x = modulated_conv2d(x, self.weight, self._styles(w), padding=self.conv_kernel - 1,
                             demodulate=not self.is_torgb, input_gain=input_gain)
        gain = 1.0 if self.is_torgb else math.sqrt(2)
        slope = 1.0 if self.is_torgb else 0.2
        return filtered_lrelu(x, self.up_filter, self.down_filter, self.bias, up=self.up_factor,
                              down=self.down_factor, padding=self.padding, gain=gain, slope=slope,
                              clamp=self.conv_clamp)


@dataclass(frozen=True)
class LayerGeometry:
    """Where a synthesis layer's samples lie on the image.

    Attributes:
        index: layer index ``i`` (``L{i}_...``; ``num_layers`` is ToRGB).
        name: the layer's module name.
        size: ``S``, map size in pixels (square).
        sampling_rate: ``s``, samples per image width.
        channels: feature channels.
        img_resolution: ``H``, image size in pixels.
    """

    index: int
    name: str
    size: int
    sampling_rate: int
    channels: int
    img_resolution: int

    @property
    def margin(self) -> float:
        """Pixels of the map outside the image on each side, ``(S - s) / 2``."""
        return (self.size - self.sampling_rate) / 2

    def image_to_layer(self, p: torch.Tensor | float) -> torch.Tensor | float:
        """Image pixel coordinate(s) -> layer map coordinate(s): ``(p + 0.5) s / H - 0.5 + margin``."""
        return (p + 0.5) * (self.sampling_rate / self.img_resolution) - 0.5 + self.margin

    def layer_to_image(self, u: torch.Tensor | float) -> torch.Tensor | float:
        """Layer map coordinate(s) -> image pixel coordinate(s) (inverse of :meth:`image_to_layer`)."""
        return (u - self.margin + 0.5) * (self.img_resolution / self.sampling_rate) - 0.5


class SynthesisNetwork(nn.Module):
    """W+ codes -> image: Fourier input, ``num_layers`` filtered layers, ToRGB.

    Args:
        w_dim: code size.
        img_resolution: output size ``H`` (the image is ``H x H``).
        img_channels: output channels.
        channel_base, channel_max: channels are ``min(channel_base / 2 / cutoff, channel_max)``.
        num_layers: layers excluding the input and ToRGB (14).
        num_critical: critically sampled layers at the end (2).
        first_cutoff, first_stopband: of the first layer (2, 2**2.1).
        last_stopband_rel: last stopband relative to its cutoff (2**0.3).
        margin_size: extra pixels on each side of the maps (10).
        output_scale: image scale (0.25).
        num_fp16_res: recorded only (dragkit computes in fp32).
        **layer_kwargs: :class:`SynthesisLayer` hyper-parameters
            (``conv_kernel``, ``filter_size``, ``lrelu_upsampling``,
            ``use_radial_filters``, ``conv_clamp``, ``magnitude_ema_beta``).

    Codes: ``ws[:, 0]`` drives the input, ``ws[:, i + 1]`` layer ``i``;
    ``num_ws = num_layers + 2``.
    """

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_layers: int = 14,
        num_critical: int = 2,
        first_cutoff: float = 2,
        first_stopband: float = 2**2.1,
        last_stopband_rel: float = 2**0.3,
        margin_size: int = 10,
        output_scale: float = 0.25,
        num_fp16_res: int = 4,
        **layer_kwargs: Any,
    ) -> None:
        super().__init__()
        for key in _IGNORED_KEYS:
            layer_kwargs.pop(key, None)
        if int(img_resolution) < 4:
            raise ValueError(f"img_resolution must be >= 4, got {img_resolution}")
        if num_layers <= num_critical:
            raise ValueError("num_layers must exceed num_critical")
        self.w_dim = int(w_dim)
        self.img_resolution = int(img_resolution)
        self.img_channels = int(img_channels)
        self.num_layers = int(num_layers)
        self.num_critical = int(num_critical)
        self.margin_size = int(margin_size)
        self.output_scale = float(output_scale)
        self.num_fp16_res = int(num_fp16_res)
        self.num_ws = self.num_layers + 2

        # Cutoffs and stopbands grow geometrically to the last layer's.
        last_cutoff = self.img_resolution / 2
        last_stopband = last_cutoff * last_stopband_rel
        exponents = np.minimum(np.arange(self.num_layers + 1) / (self.num_layers - self.num_critical), 1)
        cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
        stopbands = first_stopband * (last_stopband / first_stopband) ** exponents
        sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, self.img_resolution))))
        half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs
        sizes = sampling_rates + self.margin_size * 2
        sizes[-2:] = self.img_resolution
        channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
        channels[-1] = self.img_channels

        self.input = SynthesisInput(self.w_dim, int(channels[0]), int(sizes[0]), sampling_rates[0], cutoffs[0])
        self.layer_names: list[str] = []
        for idx in range(self.num_layers + 1):
            prev = max(idx - 1, 0)
            layer = SynthesisLayer(
                w_dim=self.w_dim, is_torgb=idx == self.num_layers,
                is_critically_sampled=idx >= self.num_layers - self.num_critical,
                in_channels=int(channels[prev]), out_channels=int(channels[idx]),
                in_size=int(sizes[prev]), out_size=int(sizes[idx]),
                in_sampling_rate=int(sampling_rates[prev]), out_sampling_rate=int(sampling_rates[idx]),
                in_cutoff=float(cutoffs[prev]), out_cutoff=float(cutoffs[idx]),
                in_half_width=float(half_widths[prev]), out_half_width=float(half_widths[idx]),
                **layer_kwargs,
            )
            name = f"L{idx}_{layer.out_size}_{layer.out_channels}"
            setattr(self, name, layer)
            self.layer_names.append(name)

    def layer(self, idx: int) -> SynthesisLayer:
        """Synthesis layer ``idx`` (0..num_layers; ``num_layers`` is ToRGB)."""
        return getattr(self, self.layer_names[idx])

    def layer_geometry(self, idx: int) -> LayerGeometry:
        """Size, sampling rate and margin of layer ``idx``'s map (see the module docstring)."""
        if not 0 <= int(idx) <= self.num_layers:
            raise ValueError(f"no synthesis layer {idx}; layers: 0..{self.num_layers}")
        layer = self.layer(int(idx))
        return LayerGeometry(int(idx), self.layer_names[int(idx)], layer.out_size, layer.out_sampling_rate,
                             layer.out_channels, self.img_resolution)

    def _check_ws(self, ws: torch.Tensor) -> None:
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"ws must have shape [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")

    def run(
        self,
        ws: torch.Tensor,
        noise_mode: str = "const",
        feature_layers: Iterable[int] = (),
        return_image: bool = True,
        update_emas: bool = False,
    ) -> tuple[torch.Tensor | None, dict[int, torch.Tensor]]:
        """Synthesise, returning layer outputs and (optionally) the image.

        Args:
            ws: ``(N, num_ws, w_dim)``.
            noise_mode: accepted for compatibility (StyleGAN3 has no noise).
            feature_layers: layer indices whose output to return (DragGAN's
                authors use 5); see :meth:`layer_geometry` for how a map's
                pixels lie on the image.
            return_image: when False, synthesis stops after the highest layer asked for.

        Returns:
            ``(img (N, C_img, H, H) or None, {i: (N, C_i, S_i, S_i)})``.
        """
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        self._check_ws(ws)
        wanted = set(int(i) for i in feature_layers)
        unknown = sorted(i for i in wanted if not 0 <= i <= self.num_layers)
        if unknown:
            raise ValueError(f"no synthesis layer(s) {unknown}; layers: 0..{self.num_layers}")
        last = self.num_layers if return_image or not wanted else max(wanted)
        codes = ws.to(torch.float32).unbind(dim=1)
        x = self.input(codes[0])
        feats: dict[int, torch.Tensor] = {}
        for idx, (name, w) in enumerate(zip(self.layer_names, codes[1:])):
            x = getattr(self, name)(x, w, update_emas=update_emas)
            if idx in wanted:
                feats[idx] = x
            if idx == last:
                break
        if not return_image:
            return None, feats
        if self.output_scale != 1:
            x = x * self.output_scale
        return x.to(torch.float32), feats

    def window_plan(self, idx: int, box: Box) -> list[Box]:
        """Output box of the input and of every layer up to ``idx`` so that layer ``idx`` is exact on ``box``.

        Returns ``[box_input, box_0, ..., box_idx]`` (``box_idx = box``), each in its own map.
        Raises ValueError for no such layer or a box outside its map.
        """
        size = self.layer_geometry(idx).size
        plan = [check_box(box, (size, size))]
        for i in range(int(idx), -1, -1):
            plan.append(self.layer(i).input_box(plan[-1]))
        return plan[::-1]

    def run_window(self, ws: torch.Tensor, idx: int, box: Box, noise_mode: str = "const") -> torch.Tensor:
        """Output of layer ``idx`` on ``box`` only: each earlier layer (and the Fourier input)
        is computed on the part its successor reads (:meth:`window_plan`).

        The same numbers as :meth:`run`'s ``feature_layers=[idx]`` cropped to ``box`` (float
        summation order aside; tested to 1e-5).  A drag's step reads layer ``idx`` near its
        handles only, so early layers' windows are most of their (small) maps and the late,
        large ones shrink to the handles' neighbourhood.

        Args:
            ws: ``(N, num_ws, w_dim)``.
            idx: the layer (``0 .. num_layers``).
            box: ``(x0, y0, x1, y1)`` in layer ``idx``'s ``S x S`` map, end exclusive.
            noise_mode: accepted for compatibility (StyleGAN3 has no noise).

        Returns:
            ``(N, C_idx, y1 - y0, x1 - x0)``.
        """
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        self._check_ws(ws)
        plan = self.window_plan(idx, box)
        codes = ws.to(torch.float32).unbind(dim=1)
        x = self.input(codes[0], box=plan[0])
        for i in range(int(idx) + 1):
            x = self.layer(i).run_window(x, plan[i], codes[i + 1], plan[i + 1])
        return x

    def can_window(self, noise_mode: str) -> bool:
        """Whether :meth:`run_window` serves ``noise_mode`` (StyleGAN3 has no noise: every mode)."""
        return noise_mode in NOISE_MODES

    def forward(self, ws: torch.Tensor, noise_mode: str = "const", update_emas: bool = False, **_: Any) -> torch.Tensor:
        """``ws (N, num_ws, w_dim)`` -> image ``(N, C_img, H, H)`` in ~[-1, 1]."""
        img, _feats = self.run(ws, noise_mode=noise_mode, update_emas=update_emas)
        return img


class Generator(GeneratorBase):
    """StyleGAN3 generator: ``G(z, c) -> image``, a drop-in for NVIDIA's (and dragkit's StyleGAN2).

    Args:
        z_dim, c_dim, w_dim: latent, label and code sizes.
        img_resolution: output size ``H`` (``H x H`` images).
        img_channels: output channels.
        mapping_kwargs: ``num_layers`` (default 2), ``lr_multiplier`` (0.01),
            ``w_avg_beta`` (0.998).
        synthesis_kwargs: :class:`SynthesisNetwork` arguments (may also be
            passed flat as keywords, as NVIDIA's ``train.py`` does; they are
            recorded nested in ``init_kwargs``).
    """

    network_name = "stylegan3.Generator"

    def _build(self, mapping_kwargs: dict[str, Any], synthesis_kwargs: dict[str, Any]) -> tuple[nn.Module, nn.Module]:
        unknown = sorted(set(mapping_kwargs) - set(_MAPPING_KEYS))
        if unknown:
            raise ValueError(f"unknown StyleGAN3 mapping argument(s) {unknown}; allowed: {list(_MAPPING_KEYS)}")
        synthesis = SynthesisNetwork(w_dim=self.w_dim, img_resolution=self.img_resolution,
                                     img_channels=self.img_channels, **synthesis_kwargs)
        mapping = MappingNetwork(z_dim=self.z_dim, c_dim=self.c_dim, w_dim=self.w_dim, num_ws=synthesis.num_ws,
                                 **{"num_layers": 2, "w_avg_beta": 0.998, **mapping_kwargs})
        return synthesis, mapping
