"""Read the weights of dlib's face-recognition ResNet from dlib's own serialized file.

``dlib_face_recognition_resnet_model_v1.dat`` (shipped by
``face_recognition_models``) is ``dlib::serialize(anet_type)`` of the
network in dlib's ``examples/dnn_face_recognition_ex.cpp``.  dlib's format
is not self-describing: a network is written outer layer first, and each
``add_layer`` writes its version, then its whole sub-network, then its own
layer details (so the input layer's details come first after the chain of
versions).  This reader walks the known architecture
(:data:`dragkit.nets.facerec.LAYERS`) and checks every tag, shape, stride
and padding it meets against it, so a file of another network is refused
instead of misread.  Written from dlib's serialization code
(``dlib/serialize.h``, ``dlib/dnn/core.h``, ``layers.h``, ``input.h``,
``loss.h``, ``cuda/tensor.h``; Boost licence), not copied.

Encodings (dlib/serialize.h):
- integers: one control byte (low 4 bits: byte count n >= 1, bit 7:
  negative), then n bytes little-endian of the magnitude;
- bool: the ASCII byte ``'0'`` or ``'1'``;
- string: its length as an integer, then the bytes;
- float/double: mantissa (int64) then exponent (int16), value m * 2^e
  (exponents 32000-32002 mean inf, -inf, NaN);
- tensor: version 2, then num_samples, k, nr, nc, then the values as
  little-endian float32;
- alias_tensor (a shape only): version 1, num_samples, k, nr, nc.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DragkitError

__all__ = ["DlibFormatError", "read_face_recognition_weights", "DlibFaceRecWeights"]


class DlibFormatError(DragkitError):
    """A dlib network file is truncated, corrupt, or not the expected network."""


class _Reader:
    def __init__(self, data: bytes, source: str) -> None:
        self.data = data
        self.pos = 0
        self.source = source

    def fail(self, what: str) -> None:
        raise DlibFormatError(f"{self.source}: {what} (at byte {self.pos}); not dlib's face-recognition ResNet v1")

    def byte(self) -> int:
        if self.pos >= len(self.data):
            self.fail("unexpected end of file")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def raw(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            self.fail("unexpected end of file")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def int(self) -> int:
        ctrl = self.byte()
        n = ctrl & 0x0F
        if n == 0 or n > 8 or ctrl & 0x70:
            self.fail(f"bad integer control byte 0x{ctrl:02x}")
        v = int.from_bytes(self.raw(n), "little")
        return -v if ctrl & 0x80 else v

    def bool(self) -> bool:
        b = self.byte()
        if b not in (ord("0"), ord("1")):
            self.fail(f"bad bool byte 0x{b:02x}")
        return b == ord("1")

    def string(self) -> str:
        n = self.int()
        if n < 0 or n > 1 << 16:
            self.fail(f"implausible string length {n}")
        try:
            return self.raw(n).decode("ascii")
        except UnicodeDecodeError:
            self.fail("non-ASCII layer tag")
            raise  # pragma: no cover

    def float(self) -> float:
        mantissa = self.int()
        exponent = self.int()
        if exponent == 32000:
            return math.inf
        if exponent == 32001:
            return -math.inf
        if exponent == 32002:
            return math.nan
        return math.ldexp(float(mantissa), exponent)

    def expect_string(self, *allowed: str) -> str:
        s = self.string()
        if s not in allowed:
            self.fail(f"expected {' or '.join(allowed)}, found {s!r}")
        return s

    def expect_int(self, want: int, what: str) -> None:
        v = self.int()
        if v != want:
            self.fail(f"{what} is {v}, expected {want}")

    def version(self, allowed: tuple[int, ...], what: str) -> int:
        v = self.int()
        if v not in allowed:
            self.fail(f"{what} version {v}, expected one of {allowed}")
        return v

    def tensor(self) -> np.ndarray:
        self.version((2,), "tensor")
        shape = [self.int() for _ in range(4)]
        if any(s < 0 for s in shape):
            self.fail(f"negative tensor shape {shape}")
        n = int(np.prod(shape))
        if n * 4 > len(self.data) - self.pos:
            self.fail(f"tensor of shape {shape} runs past the end of the file")
        a = np.frombuffer(self.raw(4 * n), dtype="<f4").reshape(shape).astype(np.float32)
        return a

    def alias(self) -> list[int]:
        self.version((1,), "alias_tensor")
        return [self.int() for _ in range(4)]


@dataclass
class DlibFaceRecWeights:
    """What the file holds: per-layer weights in the order of :data:`dragkit.nets.facerec.LAYERS` (input first).

    Attributes:
        mean_rgb: the input layer's per-channel means ``(avg_red, avg_green, avg_blue)`` (0-255 scale).
        size: the input size (150).
        params: one entry per parametrised layer, input to output: ``('con', weight (O, I, kh, kw),
            bias (O,) or None, stride, padding)``, ``('affine', gamma (C,), beta (C,))``, ``('fc', weight (out, in))``.
        loss: ``margin, dist_thresh`` of the metric loss (informational).
    """

    mean_rgb: tuple[float, float, float]
    size: int
    params: list[tuple[Any, ...]] = field(default_factory=list)
    loss: dict[str, float] = field(default_factory=dict)


def _layer_details(r: _Reader, spec: tuple[Any, ...], out: DlibFaceRecWeights) -> None:
    kind = spec[0]
    if kind == "con":
        _, n_out, k, stride = spec
        tag = r.expect_string("con_4", "con_5", "con_6")
        params = r.tensor().reshape(-1)
        num_filters = r.int()
        nr, nc, sy, sx, py, px = (r.int() for _ in range(6))
        filt = r.alias()
        bias = r.alias()
        for _ in range(4):  # learning-rate and weight-decay multipliers
            r.float()
        use_bias = True
        if tag in ("con_5", "con_6"):
            use_bias = r.bool()
        if tag == "con_6":
            r.bool()  # use_relu (a fused-activation flag; never set in this file)
        if num_filters != n_out or (nr, nc) != (k, k) or (sy, sx) != (stride, stride):
            r.fail(f"conv layer is {num_filters} filters {nr}x{nc} stride {sy}, expected {n_out} {k}x{k} stride {stride}")
        n_in = filt[1]
        if filt != [n_out, n_in, k, k] or (use_bias and bias != [1, n_out, 1, 1]):
            r.fail(f"conv filter/bias shapes {filt} {bias} do not fit")
        n_w = n_out * n_in * k * k
        want = n_w + (n_out if use_bias else 0)
        if params.size != want:
            r.fail(f"conv params hold {params.size} values, expected {want}")
        w = params[:n_w].reshape(n_out, n_in, k, k)
        b = params[n_w:n_w + n_out] if use_bias else None
        out.params.append(("con", w, b, stride, (py, px)))
    elif kind == "affine":
        _, n = spec
        tag = r.expect_string("affine_", "affine_2")
        params = r.tensor().reshape(-1)
        gamma = r.alias()
        beta = r.alias()
        mode = r.int()
        if tag == "affine_2":
            r.bool()  # disabled
        if mode != 0:  # CONV_MODE (0): one gamma/beta per channel; FC_MODE (1) is per element
            r.fail(f"affine layer mode {mode}, expected 0 (per channel)")
        if gamma != [1, n, 1, 1] or beta != [1, n, 1, 1] or params.size != 2 * n:
            r.fail(f"affine layer shapes {gamma} {beta} ({params.size} values), expected {n} channels")
        out.params.append(("affine", params[:n].copy(), params[n:].copy()))
    elif kind == "relu":
        tag = r.expect_string("relu_", "relu_2")
        if tag == "relu_2":
            r.bool()
    elif kind in ("max_pool", "avg_pool"):
        _, k, stride = spec
        r.expect_string(f"{kind}_2")
        nr, nc, sy, sx, py, px = (r.int() for _ in range(6))
        if (nr, nc, sy, sx, py, px) != (k, k, stride, stride, 0, 0):
            r.fail(f"{kind} is {nr}x{nc} stride {sy} padding {py}, expected {k}x{k} stride {stride} padding 0")
    elif kind == "add_prev":
        r.expect_string("add_prev_")
    elif kind == "fc":
        _, n_out = spec
        tag = r.expect_string("fc_2", "fc_3")
        num_outputs = r.int()
        num_inputs = r.int()
        params = r.tensor().reshape(-1)
        weights = r.alias()
        r.alias()  # biases
        bias_mode = r.int()
        for _ in range(4):
            r.float()
        if tag == "fc_3":
            r.bool()
        if num_outputs != n_out or bias_mode != 1 or weights != [num_inputs, num_outputs, 1, 1] \
                or params.size != num_inputs * num_outputs:
            r.fail(f"fc layer {num_inputs}->{num_outputs} (bias mode {bias_mode}), expected ->{n_out} without bias")
        # dlib computes x @ W with W (num_inputs, num_outputs); torch's Linear wants (out, in).
        out.params.append(("fc", params.reshape(num_inputs, num_outputs).T.copy()))
    else:  # pragma: no cover - LAYERS only holds the kinds above
        raise AssertionError(kind)


def read_face_recognition_weights(path: str | os.PathLike[str]) -> DlibFaceRecWeights:
    """Parse ``dlib_face_recognition_resnet_model_v1.dat``.

    Raises:
        DlibFormatError: missing, truncated, corrupt, or another network.
    """
    from ..nets.facerec import INPUT_SIZE, LAYERS

    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise DlibFormatError(f"{p}: cannot read ({exc.strerror})") from None
    r = _Reader(data, str(p))
    r.version((1,), "add_loss_layer")
    tag = r.expect_string("loss_metric_", "loss_metric_2")
    loss = {}
    if tag == "loss_metric_2":
        loss = {"margin": r.float(), "dist_thresh": r.float()}
    # LAYERS runs input -> output; the file nests output -> input.
    chain = list(reversed(LAYERS))
    versions = []
    for depth, spec in enumerate(chain):
        if spec[0] in ("tag", "skip"):
            versions.append(r.version((1,), spec[0]))
        else:
            # add_layer: version 1-2 around a network, 2-3 directly around the input layer.
            innermost = depth == len(chain) - 1
            versions.append(r.version((2, 3) if innermost else (1, 2), f"layer {spec[0]}"))
    r.expect_string("input_rgb_image_sized")
    mean = (r.float(), r.float(), r.float())
    nr, nc = r.int(), r.int()
    if (nr, nc) != (INPUT_SIZE, INPUT_SIZE):
        r.fail(f"input size {nr}x{nc}, expected {INPUT_SIZE}x{INPUT_SIZE}")
    out = DlibFaceRecWeights(mean_rgb=mean, size=nr, loss=loss)
    for i, (spec, version) in enumerate(zip(reversed(chain), reversed(versions))):
        if spec[0] in ("tag", "skip"):
            continue
        _layer_details(r, spec, out)
        for _ in range(3):  # setup called, gradient stale, output disabled
            r.bool()
        r.tensor()  # x_grad
        r.tensor()  # cached_output
        if i == 0:  # the layer directly on the input
            r.tensor()  # grad_final
            if version >= 3:
                r.int()  # sample expansion factor
        elif version == 2:
            r.tensor()  # params_grad
    if r.pos != len(data):
        r.fail(f"{len(data) - r.pos} bytes left after the network")
    return out
